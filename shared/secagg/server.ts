/**
 * Coordinator side of one secure-aggregation round — a state machine with no I/O and no timers.
 *
 * Phases (string-literal union; every change goes through `transitionTo`):
 *
 *   advertise -> share -> mask -> consistency -> unmask -> done
 *   any phase except done -> aborted
 *
 * In each phase the server collects one message per eligible party with `receive` (which returns
 * `complete: true` once every eligible party has sent), and the transport calls `deadlinePassed()`
 * when the phase's deadline expires (or early, once complete). That closes the phase: parties that
 * did not send are dropped, the threshold rule is checked, and the result is either the messages
 * to send (`kind: 'send'`), the final sum (`kind: 'done'`) or an abort with its reason.
 * Deadlines may instead come from an injected clock: `tick()` closes the phase once
 * `clock.now()` passes the phase's start plus `phaseTimeoutMs`.
 *
 * Surviving sets: U1 advertised keys, U2 shared keys, U3 sent masked input, U4 signed the survivor
 * list, U5 sent unmask shares (U1 ⊇ U2 ⊇ U3 ⊇ U4 ⊇ U5). N[u] is u's closed neighbourhood (graph.ts).
 * Threshold rule (checked when each phase closes; the round aborts at the first failure):
 *   R1  |U1| >= t and every u in U1 has |N[u] ∩ U1| >= t
 *   R2  |U2| >= t and every u in U2 has |N[u] ∩ U2| >= t
 *   R3  |U3| >= t and every u in U3 has |N[u] ∩ U3| >= t, and U3 is connected in the graph
 *       (else the pair masks would cancel per component and reveal each component's sum)
 *   R4  |U4| >= t
 *   R5  every u in U3 has |N[u] ∩ U5| >= t, and every dropped v in U2 \ U3 that has a neighbour
 *       in U3 has |N(v) ∩ U5| >= t.
 * With the full graph this is simply |U1|, |U2|, |U3|, |U4|, |U5| >= t. R1-R3 mirror the checks an
 * honest client makes itself (it would refuse otherwise); R5 is what reconstruction needs.
 *
 * Unmasking (Bonawitz et al. 2017 §4): from each w in U4 the server asks shares of b_u for
 * u in N[w] ∩ U3 and shares of s_sk_v for dropped v in N(w) ∩ (U2 \ U3) that have a neighbour in
 * U3 — never both for one party. It reconstructs, checks every b_u against the signed commitment
 * H(b_u) and every s_sk_v against s_pk_v (a wrong share is detected, never used), and removes
 *   sum_{u in U3} PRG(b_u)  and, for each dropped v and survivor w in N(v), sign(w,v)·PRG(s_wv).
 * The masked inputs are summed as they arrive (memory O(m), no per-party copies).
 *
 * Wrong shares (a faulty or malicious share holder). For each secret, with its m revealed shares
 * (holders in U5, in sorted order) and threshold t:
 *   1. fast path: s = shamirCombine(first t shares); if s passes the commitment AND every one of
 *      the m shares lies on the polynomials through the first t (shamirDisagreeing), s is used;
 *   2. otherwise (the commitment fails, or some share disagrees, even one the fast path did not
 *      use): s = shamirDecode(all m shares), Reed-Solomon decoding that corrects and locates up to
 *      e = floor((m - t)/2) wrong shares; if it succeeds AND s passes the commitment, s is used and
 *      the holders of the shares that disagree with the decoded polynomials are reported;
 *   2'. self-mask seeds only: H(b_u) fixes b_u exactly, so once a candidate passes it (the fast
 *      path, or — when m - t is odd, decoding failed and m <= ERASURE_SEARCH_MAX_SHARES — decoding
 *      with one share left out at a time) the shares are decoded with b_u known, which locates
 *      floor((m - t + 1)/2) wrong shares (n = 5, t = 3 with a dropout: 1 instead of 0). Mask keys
 *      never take this step: s_pk_v fixes s_sk_v only up to the bits X25519 clamps;
 *   3. otherwise the secret cannot be recovered: more than that many shares are wrong (or, when
 *      decoding succeeded but failed the commitment, so many that the shares lie near another
 *      sharing). A seed that passed its commitment but whose wrong shares cannot be located also
 *      aborts: the coordinator does not complete a round while it cannot say who sent what.
 * Every secret is handled this way before the round decides, so the decision names everyone it
 * can. If all secrets are recovered the round completes: `done` carries `wrongShares`
 * ({holder, owner, kind}: holder sent a wrong share of owner's self-mask seed or mask key) and the
 * sum is exact (each secret used passed its commitment). Otherwise it aborts with a reason naming
 * the secrets that could not be recovered and the holders identified for the others.
 * Blame is exact when at most e (2': floor((m - t + 1)/2)) of a secret's shares are wrong: the
 * right shares then fix the decoded polynomials uniquely.
 * With more than e wrong shares a coalition could make the decoder land on another sharing of the
 * same secret and blame honest holders; the sum is still exact (commitment), the blame is not
 * (H(b_u) fixes b_u; the public key fixes s_sk_v up to the 5 bits X25519 clamps, which yield the
 * same pair seeds).
 *
 * Bad messages throw SecAggError and change no state.
 */
import { abytes, aint } from '../util/check';
import { equalBytes, wipe } from '../crypto/hash';
import { MaskAccumulator, type MaskTerm } from '../crypto/prg';
import { shamirCombine, shamirDecode, shamirDisagreeing, type Share } from '../crypto/shamir';
import { ED25519_SECRET_KEY_LENGTH } from '../crypto/sign';
import { x25519PublicKey } from '../crypto/x25519';
import { SecAggError } from './errors';
import {
  signMessage,
  validateShape,
  verifyMessage,
  type AdvertiseKeys,
  type ClientMessage,
  type ConsistencyRequest,
  type EncryptedShare,
  type ServerKeys,
  type ServerMessage,
  type ServerShares,
  type UnmaskRequest,
  type UnmaskShares,
} from './messages';
import { isConnectedWithin } from './graph';
import { RoundContext, type RoundInfo } from './round';
import { droppedWithNeighbours, unmaskTerms, type ServerView } from './unmask';

/**
 * Largest number of revealed shares of one self-mask seed for which, when m - t is odd and
 * decoding cannot locate the wrong shares, the seed is searched for by leaving out one share at a
 * time (m decodings of m - 1 shares, each O(m^2) per byte column: under 1 ms each at m = 16).
 * It gains one locatable share — for n = 5, t = 3 with one dropout (m = 4) the difference between
 * naming a faulty holder and aborting — and is bounded so that holders cannot make the coordinator
 * spend O(m^3) per secret on large federations.
 */
export const ERASURE_SEARCH_MAX_SHARES = 16;

export type ServerPhase = 'advertise' | 'share' | 'mask' | 'consistency' | 'unmask' | 'done' | 'aborted';

export interface Clock {
  /** milliseconds, monotonic */
  now(): number;
}

export interface SecAggServerOptions extends RoundInfo {
  /** the coordinator's Ed25519 secret key (64-byte libsodium format); signs every server message */
  identity: { secretKey: Uint8Array };
  /** optional clock for `tick()`; without it the transport calls `deadlinePassed()` itself */
  clock?: Clock;
  /** per-phase deadline used by `tick()` */
  phaseTimeoutMs?: number;
  log?: (line: string) => void;
  /**
   * keep a copy of every accepted masked input and hand the server's view (masked inputs,
   * reconstructed self-mask seeds and dropped parties' mask keys) out with `done`, for an auditor
   * to recompute the aggregate (unmask.ts). Memory: one vector per party instead of one in all.
   */
  keepServerView?: boolean;
}

/** `holder` revealed a share of `owner`'s self-mask seed b_u (`self`) or mask key s_sk_v (`key`) that was wrong. */
export interface WrongShare {
  holder: string;
  owner: string;
  kind: 'self' | 'key';
}

export type ServerStep =
  | { kind: 'send'; phase: ServerPhase; messages: { to: string; message: ServerMessage }[] }
  /**
   * wrongShares: sorted by holder, owner, kind; empty when every revealed share was right. view:
   * the server's view of the round (unmask.ts), with `keepServerView` only
   */
  | { kind: 'done'; sum: Uint32Array; survivors: string[]; wrongShares: WrongShare[]; view?: ServerView }
  | { kind: 'aborted'; reason: string };

const PHASE_OF: Record<ClientMessage['type'], ServerPhase> = {
  'advertise-keys': 'advertise',
  'share-keys': 'share',
  'masked-input': 'mask',
  'consistency-signature': 'consistency',
  'unmask-shares': 'unmask',
};

export class SecAggServer {
  readonly ctx: RoundContext;
  private phaseValue: ServerPhase = 'advertise';
  private readonly sk: Uint8Array;
  private readonly log: (line: string) => void;
  private readonly clock?: Clock;
  private readonly timeoutMs?: number;
  private phaseStart = 0;
  private abortReason: string | undefined;

  /** parties allowed to send in the current phase */
  private eligible: Set<string>;
  private readonly ads = new Map<string, AdvertiseKeys>(); // U1
  private readonly inbox = new Map<string, EncryptedShare[]>(); // recipient -> ciphertexts
  private readonly shared = new Set<string>(); // U2
  private readonly masked = new Set<string>(); // U3
  private sum: MaskAccumulator | undefined;
  /** copies of the accepted masked inputs (keepServerView) */
  private keptInputs: Map<string, Uint32Array> | undefined;
  private survivorList: string[] = [];
  private readonly consistency = new Map<string, Uint8Array>(); // U4: signer -> signature
  private readonly requests = new Map<string, { self: string[]; key: string[] }>();
  private readonly unmask = new Map<string, UnmaskShares>(); // U5
  private readonly setsByPhase: Partial<Record<'U1' | 'U2' | 'U3' | 'U4' | 'U5', string[]>> = {};

  constructor(opts: SecAggServerOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
    this.ctx = new RoundContext(opts);
    if (typeof opts.identity !== 'object' || opts.identity === null) throw new TypeError('"identity" expected {secretKey}');
    this.sk = abytes('identity.secretKey', opts.identity.secretKey, ED25519_SECRET_KEY_LENGTH);
    this.log = opts.log ?? (() => undefined);
    this.clock = opts.clock;
    if (opts.phaseTimeoutMs !== undefined) this.timeoutMs = aint('phaseTimeoutMs', opts.phaseTimeoutMs, 1);
    if (this.clock && this.timeoutMs === undefined) throw new RangeError('"phaseTimeoutMs" is required with "clock"');
    this.phaseStart = this.clock?.now() ?? 0;
    this.eligible = new Set(this.ctx.roster);
    if (opts.keepServerView) this.keptInputs = new Map();
  }

  get phase(): ServerPhase {
    return this.phaseValue;
  }

  get abortedBecause(): string | undefined {
    return this.abortReason;
  }

  /** The surviving sets U1..U5 closed so far (for the audit log). */
  get survivorsByPhase(): Readonly<Partial<Record<'U1' | 'U2' | 'U3' | 'U4' | 'U5', readonly string[]>>> {
    return this.setsByPhase;
  }

  /** Parties that may still send in the current phase and have not yet. */
  get waitingFor(): string[] {
    const have = this.receivedSet();
    return [...this.eligible].filter((u) => !have.has(u)).sort();
  }

  private receivedSet(): ReadonlySet<string> {
    switch (this.phaseValue) {
      case 'advertise':
        return new Set(this.ads.keys());
      case 'share':
        return this.shared;
      case 'mask':
        return this.masked;
      case 'consistency':
        return new Set(this.consistency.keys());
      case 'unmask':
        return new Set(this.unmask.keys());
      default:
        return new Set();
    }
  }

  private transitionTo(from: readonly ServerPhase[], to: ServerPhase): void {
    if (!from.includes(this.phaseValue)) {
      throw new SecAggError('FAILED_PRECONDITION', `round ${this.ctx.round}: cannot go ${this.phaseValue} -> ${to} (allowed from ${from.join(', ')})`);
    }
    this.log(`secagg server round ${this.ctx.round}: ${this.phaseValue} -> ${to}`);
    this.phaseValue = to;
    this.phaseStart = this.clock?.now() ?? 0;
  }

  /**
   * Accepts one party message for the current phase. Throws SecAggError (state unchanged) on a
   * malformed, out-of-phase, duplicate, replayed, unsigned or unknown-sender message. Returns
   * `complete: true` when every party eligible in this phase has now sent.
   */
  receive(m: ClientMessage): { complete: boolean } {
    validateShape(m);
    const phase = PHASE_OF[m.type as ClientMessage['type']];
    if (!phase) throw new SecAggError('INVALID_ARGUMENT', `the coordinator does not accept ${m.type} messages`);
    if (m.federationId !== this.ctx.federationId || m.round !== this.ctx.round) {
      throw new SecAggError('UNAUTHENTICATED', `${m.type} is for federation ${JSON.stringify(m.federationId)} round ${m.round}, this is ${JSON.stringify(this.ctx.federationId)} round ${this.ctx.round} (replayed or misrouted)`);
    }
    const sender = (m as ClientMessage).sender;
    const pk = this.ctx.peers.get(sender);
    if (!pk) throw new SecAggError('PERMISSION_DENIED', `${m.type} from unknown party ${JSON.stringify(sender)}`);
    if (phase !== this.phaseValue) {
      throw new SecAggError('FAILED_PRECONDITION', `${m.type} from ${sender} arrived in phase ${this.phaseValue}; it belongs to phase ${phase}`);
    }
    if (!this.eligible.has(sender)) {
      throw new SecAggError('PERMISSION_DENIED', `${sender} dropped out of round ${this.ctx.round} before phase ${phase}`);
    }
    if (this.receivedSet().has(sender)) throw new SecAggError('FAILED_PRECONDITION', `duplicate ${m.type} from ${sender}`);
    if (!verifyMessage(m, pk, this.ctx.runId)) throw new SecAggError('UNAUTHENTICATED', `${m.type} from ${sender}: signature does not verify`);
    const bad = (msg: string): never => {
      throw new SecAggError('INVALID_ARGUMENT', `${m.type} from ${sender}: ${msg}`);
    };
    switch (m.type) {
      case 'advertise-keys': {
        for (const [v, a] of this.ads) {
          for (const k of [a.cPk, a.sPk]) if (equalBytes(k, m.cPk) || equalBytes(k, m.sPk)) bad(`reuses a public key advertised by ${v}`);
        }
        if (equalBytes(m.cPk, m.sPk)) bad('cPk and sPk must differ');
        this.ads.set(sender, m);
        break;
      }
      case 'share-keys': {
        const want = this.ctx.neighbours.get(sender)!.filter((v) => this.ads.has(v));
        const got = m.shares.map((s) => s.party);
        if (got.length !== want.length || new Set(got).size !== got.length || got.some((v) => !want.includes(v))) {
          bad(`expected one ciphertext for each advertising neighbour (${want.join(', ')}), got (${got.join(', ')})`);
        }
        for (const s of m.shares) {
          if (s.ciphertext.length > 1024) bad(`ciphertext for ${s.party} is ${s.ciphertext.length} bytes, more than 1024`);
        }
        this.shared.add(sender);
        for (const s of m.shares) {
          const list = this.inbox.get(s.party) ?? [];
          list.push({ party: sender, ciphertext: s.ciphertext });
          this.inbox.set(s.party, list);
        }
        break;
      }
      case 'masked-input': {
        if (m.bits !== this.ctx.params.bits) bad(`bits=${m.bits}, the round uses ${this.ctx.params.bits}`);
        if (m.vector.length !== this.ctx.vectorLength) bad(`vector has ${m.vector.length} entries, expected ${this.ctx.vectorLength}`);
        const v = m.vector;
        const bits = this.ctx.params.bits;
        if (bits < 32) {
          const lim = 2 ** bits;
          for (let i = 0; i < v.length; i++) if (v[i] >= lim) bad(`entry ${i} = ${v[i]} is not below 2^${bits}`);
        }
        (this.sum ??= new MaskAccumulator(this.ctx.vectorLength, bits)).addVector(v);
        this.keptInputs?.set(sender, v.slice());
        this.masked.add(sender);
        break;
      }
      case 'consistency-signature': {
        const l = this.survivorList;
        if (m.survivors.length !== l.length || m.survivors.some((v, i) => v !== l[i])) bad('signed a survivor list different from the one sent');
        this.consistency.set(sender, m.signature);
        break;
      }
      case 'unmask-shares': {
        const req = this.requests.get(sender)!;
        const same = (a: { owner: string }[], b: string[]) => a.length === b.length && a.every((s, i) => s.owner === b[i]);
        if (!same(m.selfMaskShares, req.self)) bad(`self-mask shares must be exactly for (${req.self.join(', ')})`);
        if (!same(m.keyShares, req.key)) bad(`key shares must be exactly for (${req.key.join(', ')})`);
        this.unmask.set(sender, m);
        break;
      }
    }
    return { complete: this.receivedSet().size === this.eligible.size };
  }

  /** Closes the current phase if the injected clock says its deadline passed; else null. */
  tick(): ServerStep | null {
    if (!this.clock || this.timeoutMs === undefined) throw new SecAggError('FAILED_PRECONDITION', 'tick() needs "clock" and "phaseTimeoutMs"');
    if (this.phaseValue === 'done' || this.phaseValue === 'aborted') return null;
    if (this.clock.now() - this.phaseStart < this.timeoutMs) return null;
    return this.deadlinePassed();
  }

  /** Aborts the round (e.g. operator request). Idempotent after abort; refused after done. */
  abort(reason: string): ServerStep {
    if (this.phaseValue !== 'aborted') {
      this.transitionTo(['advertise', 'share', 'mask', 'consistency', 'unmask'], 'aborted');
      this.abortReason = reason;
      this.log(`secagg server round ${this.ctx.round}: aborted: ${reason}`);
      this.sum?.wipe();
      for (const v of this.keptInputs?.values() ?? []) v.fill(0);
      this.keptInputs = undefined;
    }
    return { kind: 'aborted', reason: this.abortReason! };
  }

  private sign<M extends ServerMessage>(m: Omit<M, 'signature' | 'federationId' | 'round'>): M {
    return signMessage<M>({ ...m, federationId: this.ctx.federationId, round: this.ctx.round } as Omit<M, 'signature'>, this.sk, this.ctx.runId);
  }

  /** Checks "|set| >= t and every u in set has >= t of N[u] in alive"; returns the abort reason or null. */
  private holdersRule(rule: string, set: Iterable<string>, alive: ReadonlySet<string>): string | null {
    const t = this.ctx.params.threshold;
    const members = [...set];
    if (members.length < t) return `${rule}: ${members.length} parties remain, fewer than t=${t}`;
    for (const u of members) {
      const c = this.ctx.closed(u).filter((v) => alive.has(v)).length;
      if (c < t) return `${rule}: party ${u} keeps ${c} surviving share holders (itself and neighbours), fewer than t=${t}`;
    }
    return null;
  }

  /** The current phase's deadline passed (or all messages arrived): close it and move on. */
  deadlinePassed(): ServerStep {
    const t = this.ctx.params.threshold;
    switch (this.phaseValue) {
      case 'advertise': {
        const U1 = new Set(this.ads.keys());
        this.setsByPhase.U1 = [...U1].sort();
        const why = this.holdersRule('R1 after advertise-keys', U1, U1);
        if (why) return this.abort(why);
        const msg = this.sign<ServerKeys>({ type: 'server-keys', advertisements: this.setsByPhase.U1.map((u) => this.ads.get(u)!) });
        this.transitionTo(['advertise'], 'share');
        this.eligible = U1;
        return { kind: 'send', phase: 'share', messages: this.setsByPhase.U1.map((u) => ({ to: u, message: msg })) };
      }
      case 'share': {
        const U2 = this.shared;
        this.setsByPhase.U2 = [...U2].sort();
        const why = this.holdersRule('R2 after share-keys', U2, U2);
        if (why) return this.abort(why);
        const messages = this.setsByPhase.U2.map((u) => ({
          to: u,
          message: this.sign<ServerShares>({
            type: 'server-shares',
            recipient: u,
            shares: (this.inbox.get(u) ?? []).filter((s) => U2.has(s.party)).sort((a, b) => (a.party < b.party ? -1 : 1)),
          }) as ServerMessage,
        }));
        this.transitionTo(['share'], 'mask');
        this.eligible = new Set(U2);
        return { kind: 'send', phase: 'mask', messages };
      }
      case 'mask': {
        const U3 = this.masked;
        this.setsByPhase.U3 = [...U3].sort();
        const why = this.holdersRule('R3 after masked-input', U3, U3);
        if (why) return this.abort(why);
        if (!isConnectedWithin(this.ctx.neighbours, U3)) {
          return this.abort('R3 after masked-input: the surviving parties are not connected in the neighbour graph, so the sum would split into partial sums');
        }
        this.survivorList = this.setsByPhase.U3;
        const msg = this.sign<ConsistencyRequest>({ type: 'consistency-request', survivors: this.survivorList });
        this.transitionTo(['mask'], 'consistency');
        this.eligible = new Set(U3);
        return { kind: 'send', phase: 'consistency', messages: this.survivorList.map((u) => ({ to: u, message: msg })) };
      }
      case 'consistency': {
        const U4 = [...this.consistency.keys()].sort();
        this.setsByPhase.U4 = U4;
        if (U4.length < t) return this.abort(`R4 after consistency-signature: ${U4.length} survivors signed the survivor list, fewer than t=${t}`);
        const U3 = this.masked;
        const dropped = new Set([...this.shared].filter((v) => !U3.has(v)));
        const signatures = U4.map((signer) => ({ signer, signature: this.consistency.get(signer)! }));
        const needKey = (v: string) => dropped.has(v) && this.ctx.neighbours.get(v)!.some((w) => U3.has(w));
        const messages = U4.map((w) => {
          const self = this.ctx.closed(w).filter((u) => U3.has(u));
          const key = this.ctx.neighbours.get(w)!.filter(needKey);
          this.requests.set(w, { self, key });
          return {
            to: w,
            message: this.sign<UnmaskRequest>({ type: 'unmask-request', recipient: w, survivors: this.survivorList, signatures, selfMaskSharesOf: self, keySharesOf: key }) as ServerMessage,
          };
        });
        this.transitionTo(['consistency'], 'unmask');
        this.eligible = new Set(U4);
        return { kind: 'send', phase: 'unmask', messages };
      }
      case 'unmask':
        return this.finish();
      default:
        throw new SecAggError('FAILED_PRECONDITION', `round ${this.ctx.round} is ${this.phaseValue}; no deadline applies`);
    }
  }

  private finish(): ServerStep {
    const t = this.ctx.params.threshold;
    const U5 = new Set(this.unmask.keys());
    this.setsByPhase.U5 = [...U5].sort();
    const U3 = this.masked;
    const why = this.holdersRule('R5 after unmask-shares', U3, U5);
    if (why) return this.abort(why);
    const affected = droppedWithNeighbours(this.ctx, this.shared, U3);
    for (const v of affected) {
      const c = this.ctx.neighbours.get(v)!.filter((w) => U5.has(w)).length;
      if (c < t) return this.abort(`R5 after unmask-shares: dropped party ${v} has ${c} surviving share holders, fewer than t=${t}`);
    }
    const collect = (owner: string, kind: 'self' | 'key'): { holders: string[]; shares: Share[] } => {
      const holders: string[] = [];
      const shares: Share[] = [];
      for (const w of this.setsByPhase.U5!) {
        const msg = this.unmask.get(w)!;
        const list = kind === 'self' ? msg.selfMaskShares : msg.keyShares;
        const s = list.find((x) => x.owner === owner);
        if (s) {
          holders.push(w);
          shares.push({ x: this.ctx.sharePoint(w), y: s.share });
        }
      }
      return { holders, shares };
    };
    const sum = (this.sum ??= new MaskAccumulator(this.ctx.vectorLength, this.ctx.params.bits));
    // Reconstruct and verify every secret before touching the sum, so a bad share aborts cleanly.
    const selfSeeds: [string, Uint8Array][] = [];
    const keys: [string, Uint8Array][] = [];
    const cleanup = () => {
      for (const [, s] of selfSeeds) wipe(s);
      for (const [, s] of keys) wipe(s);
    };
    const wrongShares: WrongShare[] = [];
    const unrecovered: string[] = [];
    /** The secret (fast path, else decoded), or null after recording why it cannot be recovered. */
    const recover = (owner: string, kind: 'self' | 'key', matches: (s: Uint8Array) => boolean): Uint8Array | null => {
      const { holders, shares } = collect(owner, kind);
      const m = shares.length;
      const blame = (wrong: number[]) => {
        for (const x of wrong) wrongShares.push({ holder: holders[shares.findIndex((s) => s.x === x)], owner, kind });
      };
      // A self-mask seed that passed H(b_u) is THE seed: decoding with it known locates
      // floor((m - t + 1)/2) wrong shares. Found by the fast path, else (m - t odd, m small) by leaving
      // out one share at a time. A key is fixed by s_pk only up to X25519's clamped bits: never "known".
      const withKnown = kind === 'self' && (m - t) % 2 === 1;
      const fast = shamirCombine(shares, t);
      const fastOk = matches(fast);
      if (fastOk && shamirDisagreeing(shares, t).length === 0) return fast;
      let known: Uint8Array | null = fastOk && kind === 'self' ? fast : null;
      if (!known) {
        wipe(fast);
        const dec = shamirDecode(shares, t);
        if (dec.ok && matches(dec.secret)) {
          blame(dec.wrong);
          return dec.secret;
        }
        if (dec.ok) wipe(dec.secret);
        if (withKnown && m <= ERASURE_SEARCH_MAX_SHARES) {
          for (let j = 0; j < m && !known; j++) {
            const d = shamirDecode([...shares.slice(0, j), ...shares.slice(j + 1)], t);
            if (d.ok && matches(d.secret)) known = d.secret;
            else if (d.ok) wipe(d.secret);
          }
        }
        if (!known) {
          const e = Math.floor((m - t) / 2);
          const bound = withKnown && m <= ERASURE_SEARCH_MAX_SHARES ? `floor((m - t + 1)/2) = ${(m - t + 1) / 2}` : `floor((m - t)/2) = ${e}`;
          const what = kind === 'self' ? `the self-mask seed of ${owner}` : `the mask key of dropped party ${owner}`;
          const spare = m - t;
          const hint = bound.endsWith('= 0') ? ` (with ${spare} spare share${spare === 1 ? '' : 's'} beyond t, a wrong share can at most be detected, not located)` : '';
          unrecovered.push(
            dec.ok
              ? `${what}: its ${m} shares decode to a value that does not match ${kind === 'self' ? 'its signed commitment' : 'its advertised public key'}, so more than ${bound} of them are wrong (t = ${t}) and none can be identified`
              : `${what}: more than ${bound} of the m = ${m} shares are wrong (t = ${t}), so they cannot be located${hint}`,
          );
          return null;
        }
      }
      const dec = shamirDecode(shares, t, known);
      if (dec.ok) {
        wipe(dec.secret);
        blame(dec.wrong);
        return known;
      }
      wipe(known);
      unrecovered.push(`the self-mask seed of ${owner} (it matches its commitment, but the shares disagree): ${dec.reason}`);
      return null;
    };
    for (const u of this.setsByPhase.U3!) {
      const commitment = this.ads.get(u)!.selfMaskCommitment;
      const b = recover(u, 'self', (s) => equalBytes(this.ctx.selfMaskCommitment(u, s), commitment));
      if (b) selfSeeds.push([u, b]);
    }
    for (const v of affected) {
      const sPk = this.ads.get(v)!.sPk;
      const sSk = recover(v, 'key', (s) => equalBytes(x25519PublicKey(s), sPk));
      if (sSk) keys.push([v, sSk]);
    }
    const by = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    wrongShares.sort((a, b) => by(a.holder, b.holder) || by(a.owner, b.owner) || by(a.kind, b.kind));
    const named = wrongShares.map((w) => `${w.holder} (${w.kind === 'self' ? 'self-mask' : 'key'} share of ${w.owner})`);
    if (unrecovered.length > 0) {
      cleanup();
      return this.abort(
        `wrong unmask shares: cannot recover ${unrecovered.join('; ')}. ` +
          (named.length > 0 ? `Holders that revealed wrong shares (altered by them, or dealt wrong by the secret's owner): ${named.join(', ')}` : 'No holder could be identified'),
      );
    }
    // Every mask to remove (unmask.ts, the same code an auditor recomputes with), then one
    // cache-blocked pass over the sum.
    // the server's view for the audit (copies; only when asked for: audit.auditorServerView)
    const view: ServerView | undefined = this.keptInputs
      ? { maskedInputs: this.keptInputs, selfMaskSeeds: new Map(selfSeeds.map(([u, b]) => [u, b.slice()])), maskKeys: new Map(keys.map(([v, k]) => [v, k.slice()])) }
      : undefined;
    let pairTerms: MaskTerm[] = [];
    try {
      const { terms, pairSeeds } = unmaskTerms(this.ctx, U3, selfSeeds, keys, (w) => this.ads.get(w)!.sPk);
      pairTerms = pairSeeds;
      sum.addMasks([...terms, ...pairTerms]);
    } finally {
      for (const t of pairTerms) wipe(t.seed);
      cleanup();
    }
    this.transitionTo(['unmask'], 'done');
    const out = sum.read();
    sum.wipe();
    this.sum = undefined;
    this.keptInputs = undefined;
    return { kind: 'done', sum: out, survivors: [...this.setsByPhase.U3!], wrongShares, ...(view ? { view } : {}) };
  }
}
