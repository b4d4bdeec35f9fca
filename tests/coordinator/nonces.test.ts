/**
 * PartyAuthenticator's replay memory (identity/authenticate.ts steps 8 and 9), over a real SQLite
 * repository with one enrolled party and an injected clock:
 *   - a live nonce is refused as a replay, however many requests came after it;
 *   - nonces are forgotten oldest first once expired (2 x skew after acceptance), the newer ones
 *     still refuse replays (seen through the per-party cap, which counts only what is held);
 *   - a party past maxNoncesPerParty live nonces is refused RESOURCE_EXHAUSTED, recording nothing,
 *     and another party is not affected;
 *   - a clock set back never makes a nonce be forgotten before its expiry.
 * (Before the fix the map was scanned whole on every request once it held 1024 nonces, and had no
 * per-party bound.)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { sodiumReady } from '../../shared/crypto/sodium';
import { ed25519Keygen, type Ed25519KeyPair } from '../../shared/crypto/sign';
import { newHeader, signRequest } from '../../shared/proto/envelope';
import { DownloadModelBody, type SignedRequest } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { PartyAuthenticator } from '../../coordinator/identity/authenticate';
import { Repository } from '../../coordinator/storage/repository';
import { migrate } from '../../coordinator/storage/migrations';
import { SqliteDriver, type SqlDriver } from '../../coordinator/storage/sql';

const SKEW = 1000;
let dir: string;
let db: SqlDriver;
let repo: Repository;
const keys: Record<string, Ed25519KeyPair> = {};

beforeAll(async () => {
  await sodiumReady();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-nonces-'));
  db = await SqliteDriver.open(path.join(dir, 'c.sqlite'));
  await migrate(db);
  repo = new Repository(db, () => 1);
  for (const name of ['platform', 'insurer']) {
    keys[name] = ed25519Keygen();
    await repo.enrollParticipant({ name, publicKey: keys[name].publicKey });
  }
});
afterAll(async () => {
  await db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function request(party: string, ts: number): SignedRequest {
  const body = DownloadModelBody.encode({ header: newHeader({ federationId: 'f', party, method: 'DownloadModel', now: ts }), version: 0 }).finish();
  return signRequest('DownloadModel', body, keys[party].secretKey);
}

function authenticator(max: number) {
  const clock = { t: 1_000_000 };
  const auth = new PartyAuthenticator(repo, { federationId: 'f', clockSkewMs: SKEW, requireClientCert: false, maxBodyBytes: 1 << 20, maxNoncesPerParty: max, now: () => clock.t });
  const send = (req: SignedRequest) => auth.authenticate('DownloadModel', req).then(() => 'OK', (e: { code: number; message: string }) => `${status[e.code]}: ${e.message}`);
  return { clock, send };
}

test('a live nonce refuses its replay after many newer requests; expired ones are forgotten oldest first, newer ones still refuse replays', async () => {
  const { clock, send } = authenticator(3);
  const t0 = clock.t;
  const first = request('platform', t0);
  expect(await send(first)).toBe('OK');
  clock.t = t0 + SKEW;
  const second = request('platform', t0 + 1.5 * SKEW);
  const third = request('platform', t0 + 1.5 * SKEW);
  expect(await send(second)).toBe('OK');
  expect(await send(third)).toBe('OK');
  expect(await send(first)).toBe('ALREADY_EXISTS: DownloadModel: replayed request (nonce already used by party "platform")');
  expect(await send(request('platform', clock.t))).toMatch(/^RESOURCE_EXHAUSTED: DownloadModel: party "platform" sent more than 3 requests in the last 2 s \(each nonce is remembered that long to refuse replays\); send fewer and try again later$/);

  // past the first nonce's expiry only: it is forgotten (room for one more), the other two are not
  clock.t = t0 + 2 * SKEW + 1;
  expect(await send(second)).toMatch(/^ALREADY_EXISTS: /);
  expect(await send(third)).toMatch(/^ALREADY_EXISTS: /);
  expect(await send(request('platform', clock.t))).toBe('OK');
  expect(await send(request('platform', clock.t))).toMatch(/^RESOURCE_EXHAUSTED: /);

  // past every expiry: all forgotten, the full allowance is back
  clock.t += 2 * SKEW + 1;
  for (let i = 0; i < 3; i++) expect(await send(request('platform', clock.t))).toBe('OK');
  expect(await send(request('platform', clock.t))).toMatch(/^RESOURCE_EXHAUSTED: /);
});

test('the cap is per party, and a request refused by it is not remembered', async () => {
  const { clock, send } = authenticator(2);
  const t0 = clock.t;
  expect(await send(request('platform', t0))).toBe('OK');
  expect(await send(request('platform', t0))).toBe('OK');
  expect(await send(request('insurer', t0))).toBe('OK');
  expect(await send(request('insurer', t0))).toBe('OK');
  const refused = request('platform', t0 + 1.5 * SKEW);
  clock.t = t0 + 0.5 * SKEW;
  expect(await send(refused)).toMatch(/^RESOURCE_EXHAUSTED: DownloadModel: party "platform" /);
  // once the first two expired, the same request (still inside its timestamp window) is new
  clock.t = t0 + 2 * SKEW + 1;
  expect(await send(refused)).toBe('OK');
  expect(await send(refused)).toMatch(/^ALREADY_EXISTS: /);
});

test('a clock set back does not make a nonce be forgotten before its expiry', async () => {
  const { clock, send } = authenticator(100);
  const t0 = clock.t;
  const early = request('platform', t0);
  expect(await send(early)).toBe('OK');
  clock.t = t0 + 10 * SKEW; // forward: `early` expires
  expect(await send(request('platform', clock.t))).toBe('OK');
  const late = request('platform', t0 + 10 * SKEW);
  expect(await send(late)).toBe('OK');
  clock.t = t0 + 0.5 * SKEW; // set back: nonces accepted now have lower expiries than `late`
  const back = request('platform', clock.t);
  expect(await send(back)).toBe('OK');
  expect(await send(back)).toMatch(/^ALREADY_EXISTS: /);
  clock.t = t0 + 10 * SKEW + 0.5 * SKEW; // `back` has expired, `late` has not
  expect(await send(late)).toMatch(/^ALREADY_EXISTS: /);
});
