/**
 * Test helper: a coordinator (SQLite, or PostgreSQL at `o.databaseUrl`; manual timers) with enrolled parties driven by MiniNode
 * (platform and insurer unless `o.names` says otherwise), an auditor token, and one finished run of
 * two real secure-aggregation rounds under a policy with the given `audit` section; the audit API's
 * base URL and a GET with the auditor token. `o.prepare` runs on the nodes before the run starts
 * (e.g. to kill one at a phase), `o.drive` between the run's start and its end (e.g. to pass the
 * deadline that drops the killed party). Used by the artifact and server-view download tests.
 */
import * as fs from 'node:fs';
import type { RunningCoordinator } from '../../../coordinator/main';
import { EventKind } from '../../../proto/gen/grpc/fedbridge/v1/federation';
import type { Policy } from '../../../shared/policy/schema';
import { roundSecAggInfo } from '../../../shared/fl/round-params';
import { sodium } from '../../../shared/crypto/sodium';
import { enrol, makeEnv, ManualTimers, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startRun, TestParty, testPolicy, unary, type Env } from './harness';
import { MiniNode } from './mini-node';

/** BLAKE2b-256, hex */
export const blake = (b: Uint8Array): string => Buffer.from(sodium().crypto_generichash(32, b, null)).toString('hex');

/** u32 little-endian bytes, written here independently of the coordinator's encoder */
export const u32le = (v: Uint32Array): Buffer => {
  const b = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => b.writeUInt32LE(x, i * 4));
  return b;
};

export interface ArtifactRun {
  env: Env;
  coord: RunningCoordinator;
  op: ReturnType<typeof operator>;
  parties: TestParty[];
  nodes: MiniNode[];
  token: string;
  base: string;
  policy: Policy;
  initial: Float32Array;
  runId: string;
  /** GET `p` of the coordinator's HTTP server with the auditor token (or `authorization`, null for none) */
  get(p: string, authorization?: string | null): Promise<{ status: number; body: Buffer; text: string; h: (k: string) => string | null }>;
  close(): Promise<void>;
}

export async function startArtifactRun(
  audit: Policy['audit'],
  label: string,
  o: { names?: string[]; prepare?: (nodes: MiniNode[]) => void; drive?: (nodes: MiniNode[], timers: ManualTimers) => Promise<void>; databaseUrl?: string } = {},
): Promise<ArtifactRun> {
  const names = o.names ?? ['platform', 'insurer'];
  const env = await makeEnv(names, o.databaseUrl ? { databaseUrl: o.databaseUrl } : {});
  const timers = new ManualTimers();
  const coord = await startCoordinator(env, undefined as never, timers);
  const base = `http://127.0.0.1:${coord.httpPort}`;
  const parties = names.map((n) => new TestParty(n, env, coord.grpcPort));
  const op = operator(env, coord.grpcPort);
  await enrol(env, op, parties);
  const { token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label, expiresInSeconds: '0' }, op.metadata);
  const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 2 });
  if (audit) policy.audit = audit;
  const dim = modelDim(policy);
  const nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, roundSecAggInfo(policy, 'any', 1).vectorLength));
  o.prepare?.(nodes);
  const initial = new Float32Array(dim).map((_, i) => ((i % 13) - 6) / 40);
  const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(initial.buffer));
  await o.drive?.(nodes, timers);
  await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED && e.runId === st.runId, 0, 60_000);
  if (nodes.some((n) => n.errors.length)) throw new Error(`a node failed: ${nodes.flatMap((n) => n.errors).join('; ')}`);
  // later runs are not driven: their rounds stay open until aborted
  for (const n of nodes) n.stream.cancel();
  const get: ArtifactRun['get'] = async (p, authorization = `Bearer ${token}`) => {
    const r = await fetch(`${base}${p}`, authorization === null ? {} : { headers: { authorization } });
    const body = Buffer.from(await r.arrayBuffer());
    return { status: r.status, body, text: body.toString('utf8'), h: (k: string) => r.headers.get(k) };
  };
  return {
    env, coord, op, parties, nodes, token, base, policy, initial, runId: st.runId, get,
    close: async () => {
      for (const n of nodes) n.stream.cancel();
      for (const p of parties) p.close();
      op.client.close();
      await coord.close();
      fs.rmSync(env.dir, { recursive: true, force: true });
    },
  };
}
