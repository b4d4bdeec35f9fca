/**
 * A coordinator store with a long audit log (150,000 entries: past the ~125,000 at which
 * `records.push(...stored)` overflowed the call stack) still opens: CoordinatorAudit.open reads it
 * page by page and resumes the chain holding none of its records (no round is open), the recorder
 * for a policy starts from the state rebuilt on the way, and the next entry continues the chain.
 * Real SQLite; the rows are bulk-inserted on a second connection to the same file (dummy
 * signatures: resuming recomputes the chain hashes, it does not check signatures).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { sodiumReady } from '../../shared/crypto/sodium';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { AUDIT_GENESIS, auditChainHash, type AuditRecord } from '../../shared/audit/chain';
import { makeFederation } from '../shared/audit/fixture';
import { CoordinatorAudit } from '../../coordinator/audit/log';
import { migrate } from '../../coordinator/storage/migrations';
import { Repository } from '../../coordinator/storage/repository';
import { SqliteDriver } from '../../coordinator/storage/sql';

const N = 150_000;

function syntheticLog(n: number): AuditRecord[] {
  const out: AuditRecord[] = [];
  const sig = new Uint8Array(64);
  let prev = AUDIT_GENESIS;
  for (let i = 0; i < n; i++) {
    const entry = Buffer.from(`{"at":1,"idx":${i},"label":"a","role":"auditor","tokenId":"t${i}","type":"token-issued"}`);
    out.push({ idx: i, prevHash: prev, entry, signature: sig });
    prev = auditChainHash(i, prev, entry);
  }
  return out;
}

let records: AuditRecord[];
beforeAll(async () => {
  await sodiumReady();
  records = syntheticLog(N);
});

test(`a coordinator store with ${N} audit entries opens and its chain continues`, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-biglog-'));
  const file = path.join(dir, 'coordinator.sqlite');
  const db = SqliteDriver.open(file);
  try {
    await migrate(db);
    const bulk = new Database(file);
    const ins = bulk.prepare('INSERT INTO audit_log (idx, prev_hash, entry, signature, created_at) VALUES (?, ?, ?, ?, 1)');
    bulk.transaction(() => {
      for (const r of records) ins.run(r.idx, Buffer.from(r.prevHash), r.entry, Buffer.from(r.signature));
    })();
    bulk.close();

    const repo = new Repository(db);
    const key = ed25519Keygen();
    const audit = await CoordinatorAudit.open(repo, key.secretKey);
    expect(audit.head().idx).toBe(N - 1);
    expect(audit.heldRecords()).toBe(0);
    // the recorder for a run's policy is replayed from the same stored records
    const { policy } = await makeFederation();
    expect(audit.recorderFor(policy).writer.head().idx).toBe(N - 1);
    await audit.write(() => repo.insertToken({ id: 'next', role: 'auditor', tokenHash: new Uint8Array(32).fill(7), label: 'next' }, { emit: (row) => [audit.append({ type: 'token-issued', tokenId: row.id, role: row.role, label: row.label })] }));
    expect(audit.head().idx).toBe(N);
    expect(audit.heldRecords()).toBe(0);
    const [last] = await repo.auditEntries(N, 1);
    expect(Buffer.from(last.prevHash).equals(Buffer.from(auditChainHash(N - 1, records[N - 1].prevHash, records[N - 1].entry)))).toBe(true);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
