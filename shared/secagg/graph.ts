/**
 * Neighbour graph and threshold rules (SecAgg+, Bell et al. 2020 §3; full graph = Bonawitz et al.
 * 2017).
 *
 * Every party derives the same graph from public data only: the sorted roster, the degree k and a
 * public 32-byte round seed. Construction (a Harary graph on a random cycle, as in Bell et al.):
 * the roster is shuffled by Fisher-Yates driven by ChaCha20 keyed with
 * H("graph", seed, roster, k) (uniform, by rejection sampling), and each party is linked to the
 * k/2 parties before and after it on that cycle. The graph is k-regular and symmetric.
 * k = 0 or k >= n-1 means the full graph (everyone is everyone's neighbour). Otherwise k must be
 * even and >= 2.
 *
 * Terms: N(u) are u's neighbours (without u); the closed neighbourhood N[u] = N(u) + {u} holds
 * the Shamir shares of u's secrets (u keeps one share itself), so its size s = k+1 (full graph:
 * n) is the number of share holders.
 *
 * Threshold t: 2 <= t <= s and 2t > s (a strict majority of every neighbourhood). The majority
 * rule means two disjoint groups of share holders can never both reach t, so a coordinator that
 * tells different parties different stories cannot collect both kinds of share of one secret.
 */
import { abytes, aint } from '../util/check';
import { hashFields } from '../crypto/hash';
import { chacha20Keystream } from '../crypto/prg';

export const MAX_PARTIES = 255; // Shamir over GF(2^8): share points 1..255

export interface SecAggParams {
  /** Shamir threshold t */
  threshold: number;
  /** neighbour-graph degree k; 0 (or >= n-1) = full graph */
  degree: number;
  /** modulus 2^bits of the aggregated vectors, 8..32 */
  bits: number;
}

export function isFullGraph(n: number, k: number): boolean {
  return k === 0 || k >= n - 1;
}

/** Number of share holders per party: k+1, or n for the full graph. */
export function neighbourhoodSize(n: number, k: number): number {
  return isFullGraph(n, k) ? n : k + 1;
}

/** Validates (n, t, k, bits) together; throws RangeError naming the failing rule. */
export function validateParams(n: number, params: SecAggParams): void {
  if (typeof params !== 'object' || params === null) throw new TypeError('"params" expected an object');
  aint('n (number of parties)', n, 2, MAX_PARTIES);
  aint('params.bits', params.bits, 8, 32);
  aint('params.degree', params.degree, 0, MAX_PARTIES);
  aint('params.threshold', params.threshold, 2, MAX_PARTIES);
  const k = params.degree;
  if (!isFullGraph(n, k) && (k < 2 || k % 2 !== 0)) {
    throw new RangeError(`"params.degree" must be 0 (full graph), >= n-1, or an even number >= 2; got k=${k} with n=${n}`);
  }
  const s = neighbourhoodSize(n, k);
  const t = params.threshold;
  if (t > s) throw new RangeError(`"params.threshold" t=${t} exceeds the ${s} share holders per party (n=${n}, k=${k})`);
  if (2 * t <= s) {
    throw new RangeError(`"params.threshold" t=${t} must be a strict majority of the ${s} share holders per party (need t >= ${Math.floor(s / 2) + 1}; n=${n}, k=${k})`);
  }
}

/** Validates a roster (unique ids of 1..128 printable ASCII characters, any order); returns it sorted. */
export function sortedRoster(ids: readonly string[]): string[] {
  if (!Array.isArray(ids)) throw new TypeError('"roster" expected an array of party ids');
  const seen = new Set<string>();
  for (const id of ids) assertPartyId('party id', id);
  for (const id of ids) {
    if (seen.has(id)) throw new RangeError(`"roster" has duplicate party id ${JSON.stringify(id)}`);
    seen.add(id);
  }
  return [...ids].sort(compareIds);
}

/** Party ids are compared by UTF-16 code units; ids are restricted to printable ASCII so this is byte order. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const ID_RE = /^[\x21-\x7e]{1,128}$/;
export function assertPartyId(name: string, id: unknown): string {
  if (typeof id !== 'string') throw new TypeError(`"${name}" expected string, got ${typeof id}`);
  if (!ID_RE.test(id)) throw new RangeError(`"${name}" expected 1..128 printable ASCII characters without spaces, got ${JSON.stringify(id.slice(0, 40))}`);
  return id;
}

/** Uniform integer in [0, bound) from a word stream, by rejection sampling. */
function uniform(next: () => number, bound: number): number {
  const limit = Math.floor(0x100000000 / bound) * bound;
  for (;;) {
    const w = next();
    if (w < limit) return w % bound;
  }
}

/**
 * The neighbour sets N(u) (without u), sorted, for every party of `roster` (any order; it is
 * sorted first). Deterministic in (roster, k, seed).
 */
export function neighbourGraph(roster: readonly string[], k: number, seed: Uint8Array): Map<string, string[]> {
  const ids = sortedRoster(roster);
  const n = ids.length;
  aint('k', k, 0);
  abytes('seed', seed, 32);
  const out = new Map<string, string[]>();
  if (isFullGraph(n, k)) {
    for (const u of ids) out.set(u, ids.filter((v) => v !== u));
    return out;
  }
  if (k < 2 || k % 2 !== 0) throw new RangeError(`"k" must be even and >= 2 for a sparse graph, got ${k}`);
  const key = hashFields('fedbridge/secagg/v1/graph', seed, ids, k);
  let buf = new Uint32Array(0);
  let pos = 0;
  let counter = 0;
  const next = (): number => {
    if (pos >= buf.length) {
      const ks = chacha20Keystream(key, new Uint8Array(12), counter, 1024);
      counter += 16;
      const dv = new DataView(ks.buffer);
      buf = new Uint32Array(256);
      for (let i = 0; i < 256; i++) buf[i] = dv.getUint32(4 * i, true);
      pos = 0;
    }
    return buf[pos++];
  };
  const perm = [...ids];
  for (let i = n - 1; i > 0; i--) {
    const j = uniform(next, i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const half = k / 2;
  for (let i = 0; i < n; i++) {
    const nb = new Set<string>();
    for (let d = 1; d <= half; d++) {
      nb.add(perm[(i + d) % n]);
      nb.add(perm[(i - d + n) % n]);
    }
    out.set(perm[i], [...nb].sort(compareIds));
  }
  return out;
}

/**
 * True iff the subgraph induced on `set` is connected (empty and single-party sets count as
 * connected). Pair masks cancel inside each connected component of the survivors, so with a
 * disconnected survivor set the coordinator would learn the sum of every component separately.
 */
export function isConnectedWithin(neighbours: ReadonlyMap<string, readonly string[]>, set: ReadonlySet<string>): boolean {
  const first = set.values().next();
  if (first.done) return true;
  const seen = new Set<string>([first.value]);
  const stack = [first.value];
  while (stack.length) {
    const u = stack.pop()!;
    for (const v of neighbours.get(u) ?? []) {
      if (set.has(v) && !seen.has(v)) {
        seen.add(v);
        stack.push(v);
      }
    }
  }
  return seen.size === set.size;
}
