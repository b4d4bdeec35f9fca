/**
 * Auditor tokens over the operator API (real gRPC with mutual TLS) and the audit HTTP API: issued,
 * listed (never the token or its hash), revoked with a reason (the audit API refuses the token from
 * then on; a token-revoked entry joins the signed log); revoking again, an unknown id, a malformed
 * id or reason, and credentials other than the operator token each get their status and change
 * nothing.
 */
import type { RunningCoordinator } from '../../coordinator/main';
import { tokenSha256 } from '../../coordinator/identity/tokens';
import { verifyAuditChain } from '../../coordinator/audit/log';
import { ListTokensResponse } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { grpc, grpcError, makeEnv, ManualTimers, operator, startCoordinator, unary, type Env } from './helpers/harness';

/** The coordinator's clock, moved forward by the test (storage reads it for token expiry). */
class ShiftedTimers extends ManualTimers {
  shift = 0;
  override now(): number {
    return Date.now() + this.shift;
  }
}

const { status } = grpc;

describe('auditor tokens: issue, list, revoke', () => {
  let env: Env;
  let coord: RunningCoordinator;
  let op: ReturnType<typeof operator>;
  const timers = new ShiftedTimers();

  beforeAll(async () => {
    env = await makeEnv(['platform']);
    coord = await startCoordinator(env, null, timers);
    op = operator(env, coord.grpcPort);
  });
  afterAll(async () => {
    op?.client.close();
    await coord?.close();
  });

  const head = async (token: string) => (await fetch(`http://127.0.0.1:${coord.httpPort}/audit/v1/head`, { headers: { authorization: `Bearer ${token}` } })).status;
  const list = () => unary(op.client.listTokens.bind(op.client), {}, op.metadata);
  const revoke = (tokenId: string, reason = 'engagement ended', metadata = op.metadata) => unary(op.client.revokeToken.bind(op.client), { tokenId, reason }, metadata);
  const counts = () => coord.ctx.repo.snapshotCounts();

  test('a revoked token is refused by the audit API at once; the other keeps working; the log records it', async () => {
    const a = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'firm A', expiresInSeconds: '0' }, op.metadata);
    const b = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'firm B', expiresInSeconds: '0' }, op.metadata);
    expect([await head(a.token), await head(b.token)]).toEqual([200, 200]);

    const listed = await list();
    expect(listed.tokens.map((t) => [t.tokenId, t.role, t.label, t.revokedAtMs])).toEqual([
      [a.tokenId, 'auditor', 'firm A', '0'],
      [b.tokenId, 'auditor', 'firm B', '0'],
    ]);
    // the listing carries neither a token nor its hash
    const wire = Buffer.from(ListTokensResponse.encode(listed).finish());
    for (const t of [a.token, b.token]) {
      expect(wire.includes(Buffer.from(t))).toBe(false);
      expect(wire.includes(Buffer.from(tokenSha256(t)))).toBe(false);
      expect(wire.includes(Buffer.from(Buffer.from(tokenSha256(t)).toString('hex')))).toBe(false);
    }

    const auditBefore = (await counts()).audit_log;
    const r = await revoke(a.tokenId);
    expect(r).toMatchObject({ tokenId: a.tokenId, role: 'auditor', label: 'firm A' });
    expect(Number(r.revokedAtMs)).toBeGreaterThan(0);
    expect([await head(a.token), await head(b.token)]).toEqual([401, 200]);
    expect((await list()).tokens.map((t) => [t.tokenId, t.revokedAtMs])).toEqual([
      [a.tokenId, r.revokedAtMs],
      [b.tokenId, '0'],
    ]);

    const rows = await coord.ctx.repo.auditEntries();
    expect(rows).toHaveLength(auditBefore + 1);
    expect(JSON.parse(Buffer.from(rows[rows.length - 1].entry).toString('utf8'))).toMatchObject({ type: 'token-revoked', tokenId: a.tokenId, reason: 'engagement ended' });
    expect(verifyAuditChain(rows, coord.publicKey).failures).toEqual([]);
  });

  test('a token issued for a time opens the API until then, and not after; one without expiry still does', async () => {
    const day = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'one day', expiresInSeconds: String(86400) }, op.metadata);
    const forever = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'no expiry', expiresInSeconds: '0' }, op.metadata);
    expect(forever.expiresAtMs).toBe('0');
    const listed = (await list()).tokens.find((t) => t.tokenId === day.tokenId)!;
    expect(Number(day.expiresAtMs) - Number(listed.createdAtMs)).toBe(86400_000);
    expect(listed.expiresAtMs).toBe(day.expiresAtMs);
    expect([await head(day.token), await head(forever.token)]).toEqual([200, 200]);
    timers.shift = 86400_000 - 60_000; // a minute before
    expect(await head(day.token)).toBe(200);
    timers.shift = 86400_000 + 1000; // a second after
    expect([await head(day.token), await head(forever.token)]).toEqual([401, 200]);
    timers.shift = 0;
    const rows = await coord.ctx.repo.auditEntries();
    const issued = rows.map((r) => JSON.parse(Buffer.from(r.entry).toString('utf8'))).filter((e) => e.type === 'token-issued');
    expect(issued.find((e) => e.tokenId === day.tokenId)).toMatchObject({ expiresAt: Number(day.expiresAtMs) });
    expect(issued.find((e) => e.tokenId === forever.tokenId)).not.toHaveProperty('expiresAt');
    for (const bad of ['-1', '315360001', '9223372036854775807']) {
      const e = await grpcError(unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'x', expiresInSeconds: bad }, op.metadata));
      expect([bad, e.code, e.details]).toEqual([bad, status.INVALID_ARGUMENT, expect.stringMatching(/^expires_in_seconds must be 0 \(never\) or a whole number of seconds up to 315360000 \(10 years\)/)]);
    }
  });

  test('revoking again, an unknown or malformed id, a long reason, or without the operator token: its status, nothing changed', async () => {
    const t = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'to revoke', expiresInSeconds: '0' }, op.metadata);
    await revoke(t.tokenId);
    const other = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'kept', expiresInSeconds: '0' }, op.metadata);
    const auditorAsOperator = operator(env, coord.grpcPort, other.token);
    const before = await counts();
    const cases: [string, () => Promise<unknown>, grpc.status, RegExp][] = [
      ['again', () => revoke(t.tokenId), status.FAILED_PRECONDITION, /^token tok-[0-9a-f]{12} was already revoked at \d{4}-\d\d-\d\dT/],
      ['unknown id', () => revoke('tok-000000000000'), status.NOT_FOUND, /^no token with id tok-000000000000 \(fedbridge coordinator tokens list\)$/],
      ['malformed id', () => revoke("tok-1' OR '1'='1"), status.INVALID_ARGUMENT, /^token_id must look like "tok-" and 12 hex digits/],
      ['empty id', () => revoke(''), status.INVALID_ARGUMENT, /^token_id must look like/],
      ['long reason', () => revoke(other.tokenId, 'x'.repeat(201)), status.INVALID_ARGUMENT, /^reason is longer than 200 characters$/],
      ['no token', () => revoke(other.tokenId, 'r', new grpc.Metadata()), status.UNAUTHENTICATED, /missing "authorization: Bearer/],
      ['an auditor token', () => unary(auditorAsOperator.client.revokeToken.bind(auditorAsOperator.client), { tokenId: other.tokenId, reason: 'r' }, auditorAsOperator.metadata), status.UNAUTHENTICATED, /not the operator token/],
      ['list with an auditor token', () => unary(auditorAsOperator.client.listTokens.bind(auditorAsOperator.client), {}, auditorAsOperator.metadata), status.UNAUTHENTICATED, /not the operator token/],
    ];
    for (const [why, call, code, msg] of cases) {
      const e = await grpcError(call());
      expect([why, e.code, e.details]).toEqual([why, code, expect.stringMatching(msg)]);
    }
    auditorAsOperator.client.close();
    expect(await counts()).toEqual(before);
    expect(await head(other.token)).toBe(200);
    expect(await head(t.token)).toBe(401);
  });
});
