/**
 * Issue #5 wire canary test with REAL participant nodes: the NestJS coordinator (secure
 * aggregation) and three `joinFederation` nodes over mutual TLS on loopback run 2 rounds of DP
 * training; every byte each node's gRPC client sends and receives is recorded below the
 * serializer (tests/integration/wire-tap.ts: the node's own channel, wrapped through
 * JoinOptions.grpcClient.channelFactoryOverride), plus request metadata, response headers,
 * trailers and status details. An interceptor counts the messages the node's code sent and
 * received; the counts must match the tap's.
 *
 * Canaries: distinctive random 16-byte values (libsodium randombytes), planted before the run:
 *  - user ids: three users per party are renamed (users.csv and interactions.csv) to the hex of a
 *    canary, then imported by `node import`;
 *  - feature values: the user and item feature vocabularies are closed (import rejects an unknown
 *    value) and the catalogue is shared public data, so the only party-controlled values are the
 *    interaction timestamps (non-negative whole seconds up to 253402300799). One interaction of
 *    each renamed user gets a random timestamp in [10^11, 253402300799] (12 digits, about 37 random
 *    bits); searched as that text, its uint64, the float64 the node stores (both byte orders) and
 *    its JS text;
 *  - private embedding rows e_u: the model `joinFederation` builds (TwoTowerModel.forPolicy; the
 *    node does not read a saved model at join, so a spy on that factory is the hook, no product
 *    change) gets canary rows for the renamed users and the first and last user: each 16-byte half
 *    of a row is a canary whose float32 exponents are fixed so the values stay small (~0.03-0.06)
 *    and trainable (100 random bits per canary). Training moves e_u rows, so every e_u row is
 *    snapshotted when each phase starts (before and after local training) and after the run (=
 *    the saved user_embedding.f32), and EVERY 16-byte window (4-byte steps) of every row of every
 *    snapshot is searched (raw and hex).
 *  - unmasked update: each node's encoded input of each round (the Uint32Array it masks, from the
 *    round report) -- every 32-byte window at 4-byte steps must be absent.
 * Every needle is searched in raw bytes, hex (lower/upper) and base64/base64url at all 3
 * alignments where that applies, at every byte offset of every captured message, the reassembled
 * uploads and model downloads, metadata values and status details.
 * Allow-lists: every field of every message (signed bodies, secagg payloads, reassembled uploads
 * walked too) is declared in federation.proto / secagg.proto with its declared wire type; only
 * ParticipantService methods are called; metadata keys are only gRPC's own (listed below).
 * Negative controls: the same search finds each kind of needle planted into a copy of a captured
 * message; the walk rejects an undeclared field and a wrong wire type; the masked vector differs
 * from the encoded input almost everywhere; the canaries are really in the imported data and model.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'csv-parse/sync';
import { stringify as csvStringify } from 'csv-stringify/sync';
import { stringify } from 'yaml';
import { generateSynthetic } from '../../participant-node/data/generate';
import { initNode, loadIdentity } from '../../participant-node/identity';
import { importCsv } from '../../participant-node/data/import';
import { loadDataset } from '../../participant-node/data/store';
import { joinFederation, type JoinSummary, type RoundReport } from '../../participant-node/federation/client';
import { TwoTowerModel } from '../../participant-node/model/twotower';
import { nodeConnection, smallPolicy } from './policy';
import { policyHash } from '../../shared/policy/schema';
import { signPolicyHash } from '../../shared/policy/sign';
import { sharedParameterLayout } from '../../shared/model/layout';
import { initSharedParams } from '../../shared/model/init';
import { randomBytes } from '../../shared/crypto/sodium';
import { randomInt } from 'node:crypto';
import { operator, startRun, unary } from '../coordinator/helpers/harness';
import { realCoordinator } from '../coordinator/helpers/fixture';
import { BODY_OF, countingInterceptor, encodingsOf, NeedleSearch, protoRoot, tapChannelFactory, walkFields, type WireLog } from './wire-tap';

const PARTIES = ['platform', 'insurer', 'insurer2'];
const SERVICE = 'fedbridge.v1.ParticipantService';
/** CSV rows (0-based, generated order) of the users renamed to canaries, per party */
const CANARY_ROWS = [1, 7, 13];
/**
 * gRPC's own metadata keys (response headers/trailers; compression negotiation; user agent). The
 * product adds none: a run shows only content-type and date, and the nodes' requests carry none.
 */
const ALLOWED_METADATA = new Set(['content-type', 'date', 'grpc-accept-encoding', 'grpc-encoding', 'user-agent']);

const nestedFor =
  (rpc: string) =>
  (f: string): string | null =>
    ({ 'SignedRequest.body': BODY_OF[rpc], 'SignedEvent.body': 'PhaseEvent', 'PhaseMessageBody.payload': 'SecAggClientMessage', 'PhaseEvent.payload': 'SecAggServerMessage' })[f] ?? null;

/** A 16-byte canary that is also 4 small finite float32 values: exponent fixed at 2^-5, sign and mantissa random. */
function floatCanary(): Uint8Array {
  const b = randomBytes(16);
  for (let k = 0; k < 16; k += 4) {
    b[k + 3] = (b[k + 3] & 0x80) | 0x3d;
    b[k + 2] &= 0x7f;
  }
  return b;
}

interface PartyCanaries {
  ids: { row: number; id: string; canary: Uint8Array; oldId: string }[];
  timestamps: { decimal: string; canary: Uint8Array }[];
  /** user row -> the float32 bytes planted into it */
  euRows: Map<number, Uint8Array>;
}

function rewriteCsv(dir: string, c: PartyCanaries): void {
  const usersFile = path.join(dir, 'users.csv');
  const interFile = path.join(dir, 'interactions.csv');
  const users = parse(fs.readFileSync(usersFile)) as string[][];
  const inter = parse(fs.readFileSync(interFile)) as string[][];
  const rename = new Map<string, string>();
  for (const row of CANARY_ROWS) {
    const canary = randomBytes(16);
    const id = Buffer.from(canary).toString('hex');
    const oldId = users[row + 1][0];
    rename.set(oldId, id);
    users[row + 1][0] = id;
    c.ids.push({ row, id, canary, oldId });
  }
  const stamped = new Set<string>();
  for (const r of inter.slice(1)) {
    const id = rename.get(r[0]);
    if (!id) continue;
    r[0] = id;
    if (!stamped.has(id)) {
      stamped.add(id);
      // the import takes timestamps up to 253402300799 (9999-12-31 in unix seconds): a random one
      // in [10^11, that bound] (about 37 random bits, 12 digits), its raw form the uint64 big-endian
      const value = 100_000_000_000 + randomInt(0, 253_402_300_799 - 100_000_000_000 + 1);
      const canary = Buffer.alloc(8);
      canary.writeBigUInt64BE(BigInt(value));
      const decimal = String(value);
      r[2] = decimal;
      c.timestamps.push({ decimal, canary });
    }
  }
  expect(stamped.size).toBe(CANARY_ROWS.length);
  fs.writeFileSync(usersFile, csvStringify(users));
  fs.writeFileSync(interFile, csvStringify(inter));
}

function f64(n: number, le: boolean): Buffer {
  const b = Buffer.alloc(8);
  if (le) b.writeDoubleLE(n);
  else b.writeDoubleBE(n);
  return b;
}

describe('wire canaries with real nodes', () => {
  const fx = realCoordinator(PARTIES);
  let spy: jest.SpyInstance | undefined;
  afterAll(() => spy?.mockRestore());

  test('2 rounds, 3 nodes: only declared fields and gRPC metadata; no canary, e_u window or unmasked update on the wire', async () => {
    const { env, coord } = fx;
    // ---- data with canaries
    const gen = path.join(env.dir, 'gen');
    await generateSynthetic({ out: gen, seed: 5, scale: 'small', parties: PARTIES, usersPerParty: 40, itemsPerParty: 20 });
    const canaries: Record<string, PartyCanaries> = {};
    const dirs: Record<string, string> = {};
    const keys: Record<string, Uint8Array> = {};
    for (const p of PARTIES) {
      canaries[p] = { ids: [], timestamps: [], euRows: new Map() };
      rewriteCsv(path.join(gen, p), canaries[p]);
      dirs[p] = path.join(env.dir, 'nodes', p);
      await initNode(dirs[p], p);
      await importCsv({ dataDir: dirs[p], users: path.join(gen, p, 'users.csv'), items: path.join(gen, p, 'items.csv'), interactions: path.join(gen, p, 'interactions.csv') });
      keys[p] = (await loadIdentity(dirs[p])).publicKey;
      // the canaries are in the data the node trains on
      const ds = loadDataset(dirs[p]);
      for (const c of canaries[p].ids) expect(ds.users.findIndex((u) => u.id === c.id)).toBeGreaterThanOrEqual(0);
      for (const t of canaries[p].timestamps) expect(Array.from(ds.interactions.timestamp)).toContain(Number(t.decimal));
      const rows = [0, ds.users.length - 1, ...canaries[p].ids.map((c) => ds.users.findIndex((u) => u.id === c.id))];
      for (const r of rows) canaries[p].euRows.set(r, Buffer.concat([floatCanary(), floatCanary()]));
    }
    const ds0 = loadDataset(dirs.platform);
    const policy = smallPolicy({ ds: ds0, parties: PARTIES, coordinatorKey: coord.publicKey, keys, samplingRate: 0.5, phaseSeconds: 30 });
    const d = policy.model.embeddingDim;
    expect((d * 4) % 16).toBe(0); // a row is a whole number of 16-byte canaries
    const policyFile = path.join(env.dir, 'policy.yaml');
    fs.writeFileSync(policyFile, stringify(policy));
    const hash = policyHash(policy);
    const op = operator(env, coord.grpcPort);
    for (const p of PARTIES) await unary(op.client.enroll.bind(op.client), { name: p, publicKey: keys[p], certSha256: env.certs.clients[p].sha256 }, op.metadata);

    // ---- the model hook: plant e_u canary rows in the model each node builds at join
    const models: Record<string, TwoTowerModel> = {};
    let building: string | null = null;
    let built: (() => void) | null = null;
    const original = TwoTowerModel.forPolicy.bind(TwoTowerModel);
    spy = jest.spyOn(TwoTowerModel, 'forPolicy').mockImplementation((...args: Parameters<typeof TwoTowerModel.forPolicy>) => {
      const m = original(...args);
      const p = building;
      if (!p) throw new Error('wire test: a model was built outside a join');
      building = null;
      for (const [row, bytes] of canaries[p].euRows) new Uint8Array(m.userEmbedding.buffer, m.userEmbedding.byteOffset + row * d * 4, d * 4).set(bytes);
      models[p] = m;
      built?.();
      return m;
    });

    // ---- capture, e_u snapshots, and the nodes
    const log: WireLog = { messages: [], metadata: [], statuses: [] };
    const counted = new Map<string, number>();
    const snapshots: Record<string, { at: string; eu: Float32Array }[]> = Object.fromEntries(PARTIES.map((p) => [p, []]));
    const reports: Record<string, RoundReport[]> = Object.fromEntries(PARTIES.map((p) => [p, []]));
    const joins: Promise<JoinSummary>[] = [];
    for (const p of PARTIES) {
      building = p; // the joins are started one at a time, so each model is attributed to its party
      const ready = new Promise<void>((r) => (built = r));
      const join = joinFederation({
        ...nodeConnection(env, coord.grpcPort, dirs[p], p, policyFile),
        holdout: 'none',
        grpcClient: { interceptors: [countingInterceptor(p, counted)], channelFactoryOverride: tapChannelFactory(p, log) },
        onPhase: (round, phase) => snapshots[p].push({ at: `r${round} ${phase}`, eu: models[p].userEmbedding.slice() }),
        onRound: (r) => reports[p].push(r),
      });
      joins.push(join);
      await Promise.race([ready, join.then(() => Promise.reject(new Error(`${p} returned before building its model`)))]);
    }
    // each node's subscription is open once it received the coordinator's HELLO event
    const subscribed = () => PARTIES.every((p) => log.messages.some((m) => m.party === p && m.dir === 'in' && m.method.endsWith('/Subscribe')));
    for (let waited = 0; !subscribed(); waited += 20) {
      if (waited > 20_000) throw new Error('the nodes did not subscribe within 20 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    const layout = sharedParameterLayout(policy.model, policy.vocabularies);
    const initial = initSharedParams(layout, 3);
    const run = await startRun(op.client, op.metadata, { policyYaml: stringify(policy), signatures: PARTIES.map((p) => ({ party: p, signature: signPolicyHash(hash, secretOf(dirs[p])) })) }, new Uint8Array(initial.buffer.slice(0)));
    expect(run.state).toBe('running');
    const summaries = await Promise.all(joins);
    op.client.close();
    for (const s of summaries) expect(s.rounds.map((r) => [r.round, r.outcome])).toEqual([[1, 'completed'], [2, 'completed']]);
    for (const p of PARTIES) {
      const final = models[p].userEmbedding.slice();
      snapshots[p].push({ at: 'final', eu: final });
      // the spied model is the one the node used and saved
      const saved = fs.readFileSync(path.join(dirs[p], 'model', 'user_embedding.f32'));
      expect(Buffer.compare(saved, Buffer.from(final.buffer))).toBe(0);
      // the first phase snapshot (round 1 advertise, before training) still holds the planted rows
      expect(snapshots[p][0].at).toBe('r1 advertise');
      for (const [row, bytes] of canaries[p].euRows) expect(Buffer.from(snapshots[p][0].eu.buffer, row * d * 4, d * 4).equals(Buffer.from(bytes))).toBe(true);
    }
    // training moved some planted rows, so the later snapshots carry e_u values the plant did not choose
    const moved = PARTIES.flatMap((p) => [...canaries[p].euRows].filter(([row, bytes]) => !Buffer.from(models[p].userEmbedding.buffer, row * d * 4, d * 4).equals(Buffer.from(bytes))));
    expect(moved.length).toBeGreaterThan(0);

    // ---- the tap saw every message the nodes' code sent and received
    const tapped = new Map<string, number>();
    for (const m of log.messages) tapped.set(`${m.party} ${m.dir} ${m.method}`, (tapped.get(`${m.party} ${m.dir} ${m.method}`) ?? 0) + 1);
    expect(Object.fromEntries([...tapped].sort())).toEqual(Object.fromEntries([...counted].sort()));

    // ---- allow-list of fields: every message, nested bodies and payloads, reassembled uploads
    const service = protoRoot.lookupService(SERVICE);
    const seen = new Set<string>();
    const uploads = new Map<string, Buffer[]>();
    const downloads = new Map<string, Buffer[]>();
    for (const [i, c] of log.messages.entries()) {
      const [, svc, rpc] = c.method.split('/');
      expect(svc).toBe(SERVICE);
      const method = service.methods[rpc];
      expect(method).toBeDefined();
      const typeName = (c.dir === 'out' ? method.resolvedRequestType : method.resolvedResponseType)!.name;
      walkFields(c.bytes, typeName, `${c.party} ${rpc} ${c.dir} #${i}`, seen, nestedFor(rpc));
      const key = `${c.party} call ${c.call}`;
      if (rpc === 'UploadMaskedInput' && c.dir === 'out') {
        const chunk = protoRoot.lookupType('fedbridge.v1.UploadChunk').decode(c.bytes) as unknown as { data: Uint8Array; open?: unknown };
        if (!chunk.open) uploads.set(key, [...(uploads.get(key) ?? []), Buffer.from(chunk.data)]);
      }
      if (rpc === 'DownloadModel' && c.dir === 'in') {
        const chunk = protoRoot.lookupType('fedbridge.v1.ModelChunk').decode(c.bytes) as unknown as { data: Uint8Array; info?: unknown };
        if (!chunk.info) downloads.set(key, [...(downloads.get(key) ?? []), Buffer.from(chunk.data)]);
      }
    }
    const reassembled = [...uploads].map(([k, parts]) => ({ name: `${k} reassembled upload`, bytes: Buffer.concat(parts) }));
    for (const u of reassembled) walkFields(u.bytes, 'SecAggClientMessage', u.name, seen, () => null);
    expect(reassembled).toHaveLength(PARTIES.length * 2); // one masked input per party per round
    for (const f of ['SignedRequest.body', 'PartyHeader.nonce', 'SignedEvent.body', 'PhaseEvent.payload', 'SecAggServerMessage.serverKeys', 'SecAggServerMessage.serverShares', 'SecAggServerMessage.unmaskRequest', 'SecAggClientMessage.advertiseKeys', 'SecAggClientMessage.shareKeys', 'SecAggClientMessage.maskedInput', 'MaskedInput.vectorChunks', 'UnmaskShares.selfMaskShares', 'UploadChunk.open', 'ModelChunk.info', 'ModelChunk.data', 'ReceiptBody.receiptSignature']) {
      expect(seen).toContain(f);
    }

    // ---- metadata: only gRPC's own keys, in both directions
    const offList = (sets: typeof log.metadata) => sets.flatMap((m) => m.entries.filter(([k]) => !ALLOWED_METADATA.has(k)).map(([k]) => `${m.party} ${m.method} ${m.kind}: ${k}`));
    expect(offList(log.metadata)).toEqual([]);
    expect(offList([{ party: 'control', method: 'm', kind: 'request', entries: [['x-user-id', 'u1']] }])).toEqual(['control m request: x-user-id']);
    expect(log.metadata.filter((m) => m.kind === 'request' && m.entries.length > 0)).toEqual([]); // the nodes add no metadata of their own
    expect(log.metadata.filter((m) => m.kind === 'request')).toHaveLength(new Set(log.messages.map((m) => `${m.party} ${m.call}`)).size);

    // ---- the masked vectors are masked: the encoded input, word by word, almost nowhere
    const maskedInput = protoRoot.lookupType('fedbridge.v1.SecAggClientMessage');
    for (const p of PARTIES) {
      const mine = reassembled.filter((u) => u.name.startsWith(`${p} `));
      for (const [k, u] of mine.entries()) {
        const msg = maskedInput.decode(u.bytes) as unknown as { maskedInput: { vectorChunks: Uint8Array[] } };
        const masked = Buffer.concat(msg.maskedInput.vectorChunks.map((c) => Buffer.from(c)));
        const enc = reports[p][k].encoded!;
        expect(masked.length).toBe(enc.length * 4);
        const words = new Uint32Array(new Uint8Array(masked).buffer);
        let same = 0;
        for (let i = 0; i < enc.length; i++) if (words[i] === enc[i]) same++;
        expect(same).toBeLessThan(Math.max(2, enc.length / 1000));
      }
    }

    // ---- needles
    const search = new NeedleSearch();
    const counts: Record<string, number> = {};
    const add = (kind: string, list: [string, Uint8Array][]) => {
      const before = search.size;
      for (const [n, b] of list) search.add(n, b);
      counts[kind] = (counts[kind] ?? 0) + search.size - before;
    };
    for (const p of PARTIES) {
      for (const c of canaries[p].ids) add('user id', [...encodingsOf(`${p} user id ${c.id}`, c.canary), [`${p} user id ${c.id} (utf16)`, Buffer.from(c.id, 'utf16le')]]);
      for (const t of canaries[p].timestamps) {
        const n = Number(t.decimal);
        add('timestamp', [
          ...encodingsOf(`${p} timestamp ${t.decimal}`, t.canary),
          [`${p} timestamp ${t.decimal} (text)`, Buffer.from(t.decimal)],
          [`${p} timestamp ${t.decimal} (float64 LE)`, f64(n, true)],
          [`${p} timestamp ${t.decimal} (float64 BE)`, f64(n, false)],
          [`${p} timestamp ${t.decimal} (JS text)`, Buffer.from(String(n))],
        ]);
      }
      for (const [row, bytes] of canaries[p].euRows) {
        for (let h = 0; h < bytes.length; h += 16) add('e_u canary', encodingsOf(`${p} e_u canary row ${row}+${h}`, bytes.subarray(h, h + 16)));
      }
      for (const s of snapshots[p]) {
        const raw = Buffer.from(s.eu.buffer);
        for (let row = 0; row * d * 4 < raw.length; row++) {
          for (let w = 0; w + 16 <= d * 4; w += 4) {
            const win = raw.subarray(row * d * 4 + w, row * d * 4 + w + 16);
            add('e_u window', [
              [`${p} e_u ${s.at} row ${row}+${w}`, win],
              [`${p} e_u ${s.at} row ${row}+${w} (hex)`, Buffer.from(win.toString('hex'))],
            ]);
          }
        }
      }
      for (const r of reports[p]) {
        const raw = Buffer.from(r.encoded!.buffer, r.encoded!.byteOffset, r.encoded!.byteLength);
        for (let w = 0; w + 32 <= raw.length; w += 4) add('encoded window', [[`${p} encoded r${r.round} @${w}`, raw.subarray(w, w + 32)]]);
      }
    }

    // ---- haystacks: every captured byte string
    const haystacks: { name: string; bytes: Uint8Array }[] = [
      ...log.messages.map((m, i) => ({ name: `${m.party} ${m.method} ${m.dir} #${i}`, bytes: m.bytes })),
      ...reassembled,
      ...[...downloads].map(([k, parts]) => ({ name: `${k} reassembled model`, bytes: Buffer.concat(parts) })),
      ...log.metadata.flatMap((m, i) => m.entries.map(([k, v]) => ({ name: `${m.party} ${m.method} ${m.kind} #${i} ${k}`, bytes: Buffer.concat([Buffer.from(k), Buffer.from([0]), Buffer.from(v)]) }))),
      ...log.statuses.map((s, i) => ({ name: `${s.party} ${s.method} status #${i}`, bytes: Buffer.from(s.details) })),
    ];
    const hits = search.find(haystacks);
    expect(hits.slice(0, 10)).toEqual([]);

    // ---- negative control: the same search on a copy of a real message with one needle of each kind
    const big = log.messages.reduce((a, b) => (b.bytes.length > a.bytes.length ? b : a));
    const copy = Buffer.from(big.bytes);
    const t0 = canaries.insurer.timestamps[0];
    const planted: [string, Buffer][] = [
      [`platform user id ${canaries.platform.ids[0].id} (hex)`, Buffer.from(canaries.platform.ids[0].id)],
      [`insurer timestamp ${t0.decimal} (text)`, Buffer.from(t0.decimal)],
      [`insurer2 e_u canary row 0+16 (raw)`, Buffer.from(canaries.insurer2.euRows.get(0)!.subarray(16, 32))],
      [`platform encoded r2 @36`, Buffer.from(reports.platform[1].encoded!.buffer, reports.platform[1].encoded!.byteOffset + 36, 32)],
    ];
    expect(copy.length).toBeGreaterThan(planted.length * 101 + 64);
    planted.forEach(([, b], i) => b.copy(copy, 7 + i * 101)); // odd offsets: not word aligned
    const found = search.find([{ name: 'control', bytes: copy }]);
    for (const [name] of planted) expect(found.map((h) => h.needle)).toContain(name);
    expect(search.find([{ name: 'control', bytes: Buffer.concat([Buffer.from('x'), Buffer.from(new Float32Array(snapshots.insurer.at(-1)!.eu.subarray(0, d)).buffer)]) }]).length).toBeGreaterThan(0);
    // the walk rejects an undeclared field and a declared field with the wrong wire type
    const out0 = log.messages.find((m) => m.dir === 'out')!;
    expect(() => walkFields(Buffer.concat([Buffer.from(out0.bytes), Buffer.from([0x48, 0x01])]), 'SignedRequest', 'control', new Set(), () => null)).toThrow(/field number 9 is not declared in SignedRequest/);
    expect(() => walkFields(Buffer.from([0x08, 0x01]), 'SignedRequest', 'control', new Set(), () => null)).toThrow(/SignedRequest.body arrived with wire type 0/);

    const bytes = haystacks.reduce((n, h) => n + h.bytes.length, 0);
    const perDir = (dir: string) => log.messages.filter((m) => m.dir === dir);
    // one line for the report: what was captured and checked
    console.log(
      `wire-canary: ${log.messages.length} messages (${perDir('out').length} out ${perDir('out').reduce((n, m) => n + m.bytes.length, 0)} B, ${perDir('in').length} in ${perDir('in').reduce((n, m) => n + m.bytes.length, 0)} B), ` +
        `${log.metadata.length} metadata sets, ${haystacks.length} haystacks ${bytes} B; ${search.size} needles ${JSON.stringify(counts)}; fields seen ${seen.size}; metadata keys ${JSON.stringify([...new Set(log.metadata.flatMap((m) => m.entries.map(([k]) => k)))].sort())}`,
    );
  }, 180_000);
});

function secretOf(dir: string): Uint8Array {
  return new Uint8Array(Buffer.from(fs.readFileSync(path.join(dir, 'identity.key'), 'utf8').trim(), 'base64'));
}
