/**
 * `fedbridge policy init | sign | verify` (DESIGN §3, §8).
 *
 *   policy init   --out policy.yaml --federation ID --coordinator-key B64 [--coordinator-name NAME]
 *                 (--party NAME=B64KEY | --node-dir DIR)... (--catalogue-hash HEX --num-items N |
 *                 --catalogue-from NODE_DIR) [--force]
 *                 writes a complete policy (shared/policy/defaults.ts) as YAML: every value visible.
 *   policy sign   POLICY|--policy POLICY (--data-dir NODE | --key-file F --signer NAME) [--out FILE] [--json]
 *                 signs the policy hash (shared/policy/sign.ts) with a node's identity (or the
 *                 coordinator's key file); writes <POLICY>.sig/<signer>.json unless --out.
 *   policy verify POLICY|--policy POLICY [--signatures DIR] [--json]
 *                 checks every signature file against the keys the policy pins; exits 1 unless the
 *                 coordinator and every party signed this exact policy.
 * JSON: init {"policyHash","out"}; sign {"policyHash","signer","out"};
 *       verify {"ok","policyHash","signers":[{signer,role,ok,problem?}],"missing":[...]}.
 *
 * Node identities are loaded through `deps` (bin/fedbridge.ts passes participant-node/identity.ts),
 * so shared/ never imports participant-node/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { printJson, UserError } from './errors';
import type { PolicySignatureFile } from '../policy/sign';
import type { Policy } from '../policy/schema';
import { readFileAt } from './read-file';

export interface PolicyCliDeps {
  /** name and base64 public key of an initialised node data dir */
  readNodeInfo(dataDir: string): Promise<{ name: string; publicKey: string }>;
  /** the node's identity key pair (refuses unsafe key files) */
  loadNodeIdentity(dataDir: string): Promise<{ name: string; publicKey: Uint8Array; secretKey: Uint8Array }>;
  /** hash and size of the catalogue a node imported (for --catalogue-from) */
  readCatalogue?(dataDir: string): Promise<{ hash: string; numItems: number; offers?: Record<string, Array<[number, number]>> }>;
  /**
   * `policy sign --data-dir`: why the node's imported data could not take part under `policy` (the
   * checks `node join` makes: catalogue, offers, user cap), null when they can or when the node has
   * no data yet (`imported: false`; join checks them then).
   */
  nodeDataProblem?(dataDir: string, party: string, policy: Policy): Promise<{ imported: boolean; problem: string | null }>;
}

async function readPolicy(file: string) {
  const { parsePolicyYaml, policyHash, PolicyError } = await import('../policy/schema');
  const { sodiumReady } = await import('../crypto/sodium');
  await sodiumReady();
  let text: string;
  try {
    text = readFileAt(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read policy ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const policy = parsePolicyYaml(text);
    return { policy, hash: policyHash(policy) };
  } catch (e) {
    if (e instanceof PolicyError) throw new UserError(`${file}: ${e.message}`);
    throw e;
  }
}

export function signatureDir(policyFile: string): string {
  return `${policyFile}.sig`;
}

/**
 * Every `*.json` policy signature file in `dir` (as `policy sign` writes them), validated; a
 * UserError naming the file and the field of the first bad one (exit `exitCode`; an unreadable
 * `dir` is bad input, exit 2).
 */
export async function readSignatureDir(dir: string, exitCode: 1 | 2): Promise<PolicySignatureFile[]> {
  const { policySignatureFileSchema } = await import('../policy/sign');
  const { formatZodIssues } = await import('../policy/schema');
  const { sodiumReady } = await import('../crypto/sodium');
  await sodiumReady(); // the schema decodes base64 with libsodium
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
  } catch {
    throw new UserError(`cannot read signature directory ${dir}`);
  }
  return names.map((n) => {
    const f = path.join(dir, n);
    let obj: unknown;
    try {
      obj = JSON.parse(readFileAt(f, 'utf8'));
    } catch (e) {
      throw new UserError(`${f}: not JSON (${(e as Error).message})`, exitCode);
    }
    const r = policySignatureFileSchema.safeParse(obj);
    if (!r.success) throw new UserError(`${f}: not a policy signature file (${formatZodIssues(r.error).join('; ')})`, exitCode);
    return r.data;
  });
}

function readKeyFile(file: string): Uint8Array {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new UserError(`key file not found: ${file}`);
  }
  if (!st.isFile()) throw new UserError(`--key-file ${file} is not a file; expected an Ed25519 secret key file`);
  if ((st.mode & 0o077) !== 0) throw new UserError(`${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run 'chmod 600 ${file}'`, 1);
  const raw = readFileAt(file, 'utf8').trim();
  const sk = new Uint8Array(Buffer.from(raw, 'base64'));
  if (sk.length !== 64 || Buffer.from(sk).toString('base64') !== raw) throw new UserError(`${file} does not hold a base64 Ed25519 secret key (64 bytes)`, 1);
  return sk;
}

/** The policy file of `sign` / `verify`: the positional POLICY or --policy F (as node join, runs start and audit verify take it), exactly one. */
function policyFile(positional: string | undefined, flag: string | undefined): string {
  if (positional !== undefined && flag !== undefined) throw new UserError(`give the policy once: as POLICY or as --policy F, not both ("${positional}", --policy "${flag}")`);
  const file = positional ?? flag;
  if (file === undefined) throw new UserError('which policy? give it as POLICY or --policy F');
  return file;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function registerPolicyCommands(policy: Command, deps: PolicyCliDeps): void {
  policy
    .command('init')
    .description('write a complete federation policy (YAML) with the default parameters')
    .requiredOption('--out <file>', 'policy file to write')
    .requiredOption('--federation <id>', 'federation id (lowercase name)')
    .requiredOption('--coordinator-key <b64>', "the coordinator's Ed25519 public key (base64)")
    .option('--coordinator-name <name>', 'the coordinator name', 'coordinator')
    .option('--party <name=key>', 'a party and its Ed25519 public key (base64); repeatable', collect, [])
    .option('--node-dir <dir>', 'take a party name and key from a node data dir; repeatable', collect, [])
    .option('--catalogue-hash <hex>', 'BLAKE2b-256 of the shared catalogue (64 hex)')
    .option('--num-items <n>', 'number of items in the catalogue')
    .option('--catalogue-from <dir>', 'take the catalogue hash and size from a node data dir with imported data')
    .option('--force', 'overwrite an existing file')
    .option('--json', 'print {"policyHash","out"}')
    .action(async (o: { out: string; federation: string; coordinatorKey: string; coordinatorName: string; party: string[]; nodeDir: string[]; catalogueHash?: string; numItems?: string; catalogueFrom?: string; force?: boolean; json?: boolean }) => {
      const { defaultPolicy } = await import('../policy/defaults');
      const { policyHash, PolicyError, validatePolicy } = await import('../policy/schema');
      const { stringify } = await import('yaml');
      const { sodiumReady } = await import('../crypto/sodium');
      const { writeFileAtomic } = await import('../util/atomic');
      await sodiumReady();
      const parties = o.party.map((p) => {
        const eq = p.indexOf('=');
        if (eq <= 0) throw new UserError(`--party expects NAME=BASE64KEY, got "${p}"`);
        return { name: p.slice(0, eq), publicKey: p.slice(eq + 1) };
      });
      for (const d of o.nodeDir) {
        const info = await deps.readNodeInfo(d);
        parties.push({ name: info.name, publicKey: info.publicKey });
      }
      if (parties.length < 2) throw new UserError('a policy needs at least 2 parties (--party NAME=KEY or --node-dir DIR)');
      let catalogueHash = o.catalogueHash;
      let numItems = o.numItems === undefined ? undefined : Number(o.numItems);
      let offers: Record<string, Array<[number, number]>> | undefined;
      if (o.catalogueFrom) {
        if (catalogueHash !== undefined || numItems !== undefined) throw new UserError('give --catalogue-from DIR or --catalogue-hash with --num-items, not both');
        if (!deps.readCatalogue) throw new UserError('--catalogue-from is not available in this build');
        ({ hash: catalogueHash, numItems, offers } = await deps.readCatalogue(o.catalogueFrom));
      }
      if (catalogueHash === undefined || numItems === undefined) throw new UserError('the catalogue is needed: --catalogue-from NODE_DIR, or --catalogue-hash HEX with --num-items N');
      if (!Number.isSafeInteger(numItems) || numItems < 1) throw new UserError(`--num-items expects a positive integer, got "${o.numItems}"`);
      if (fs.existsSync(o.out) && !o.force) throw new UserError(`${o.out} exists; pass --force to overwrite it`);
      let p;
      try {
        p = defaultPolicy({ federationId: o.federation, coordinator: { name: o.coordinatorName, publicKey: o.coordinatorKey }, parties, catalogue: { hash: catalogueHash, numItems } });
        // the catalogue names every party's offers: train each party on its own offers (schema: training.offerScope)
        if (offers && parties.every((x) => offers![x.name]?.length)) {
          const own = Object.fromEntries(parties.map((x) => [x.name, offers![x.name]]));
          p = validatePolicy({ ...p, catalogue: { ...p.catalogue, offers: own }, training: { ...p.training, offerScope: 'own' } });
        }
      } catch (e) {
        if (e instanceof PolicyError) throw new UserError(e.message);
        throw e;
      }
      const hash = policyHash(p);
      const header = `# fedbridge federation policy (DESIGN §3). Every party and the coordinator sign its hash:\n#   fedbridge policy sign ${path.basename(o.out)} --data-dir NODE\n# policy hash: ${hash}\n`;
      fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
      writeFileAtomic(o.out, header + stringify(p, { lineWidth: 0 }), 0o644);
      if (o.json) printJson({ policyHash: hash, out: o.out });
      else process.stdout.write(`wrote ${o.out} (policy hash ${hash})\n`);
    });

  policy
    .command('sign')
    .description("sign the policy hash with a node's identity (or the coordinator's key file)")
    .argument('[policy]', 'policy YAML (or --policy F)')
    .option('--policy <file>', 'policy YAML (instead of the POLICY argument)')
    .option('--data-dir <dir>', 'node data dir whose identity signs')
    .option('--key-file <file>', "an Ed25519 secret key file (base64, 0600), e.g. the coordinator's")
    .option('--signer <name>', 'with --key-file: the name the policy gives this key')
    .option('--out <file>', 'signature file (default <policy>.sig/<signer>.json)')
    .option('--json', 'print {"policyHash","signer","out"}')
    .action(async (positional: string | undefined, o: { policy?: string; dataDir?: string; keyFile?: string; signer?: string; out?: string; json?: boolean }) => {
      const file = policyFile(positional, o.policy);
      const { policy, hash } = await readPolicy(file);
      const { makePolicySignatureFile, pinnedKey } = await import('../policy/sign');
      const { writeFileAtomic } = await import('../util/atomic');
      if (!!o.dataDir === !!o.keyFile) throw new UserError('give exactly one of --data-dir NODE or --key-file F (with --signer NAME)');
      let signer: string;
      let publicKey: Uint8Array;
      let secretKey: Uint8Array;
      if (o.dataDir) {
        if (o.signer) throw new UserError('--signer goes with --key-file; a node signs under its own name');
        const id = await deps.loadNodeIdentity(o.dataDir);
        ({ name: signer, publicKey, secretKey } = id);
      } else {
        if (!o.signer) throw new UserError('--key-file needs --signer NAME (the name the policy gives this key)');
        signer = o.signer;
        secretKey = readKeyFile(o.keyFile!);
        publicKey = secretKey.slice(32);
      }
      try {
        const pin = pinnedKey(policy, signer);
        if (!pin) throw new UserError(`"${signer}" is neither a party nor the coordinator of ${file}; refusing to sign`, 1);
        if (pin.publicKey !== Buffer.from(publicKey).toString('base64')) {
          throw new UserError(`${file} pins a different key for "${signer}" than this identity's; refusing to sign`, 1);
        }
        // a party does not agree to a policy its data would make it refuse at every round
        const data = o.dataDir && deps.nodeDataProblem ? await deps.nodeDataProblem(o.dataDir, signer, policy) : null;
        if (data?.problem) throw new UserError(`refusing to sign ${file} for "${signer}": ${data.problem}`, 1);
        const sig = makePolicySignatureFile(hash, signer, publicKey, secretKey);
        const out = o.out ?? path.join(signatureDir(file), `${signer}.json`);
        fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
        writeFileAtomic(out, JSON.stringify(sig, null, 2) + '\n', 0o644);
        if (o.json) printJson({ policyHash: hash, signer, out });
        else process.stdout.write(`${signer} signed policy ${hash}: ${out}\n`);
      } finally {
        secretKey.fill(0);
      }
    });

  policy
    .command('verify')
    .description('check that the coordinator and every party signed this exact policy')
    .argument('[policy]', 'policy YAML (or --policy F)')
    .option('--policy <file>', 'policy YAML (instead of the POLICY argument)')
    .option('--signatures <dir>', 'directory of signature files (default <policy>.sig)')
    .option('--json', 'print {"ok","policyHash","signers","missing"}')
    .action(async (positional: string | undefined, o: { policy?: string; signatures?: string; json?: boolean }) => {
      const file = policyFile(positional, o.policy);
      const { policy, hash } = await readPolicy(file);
      const { checkPolicySignatures } = await import('../policy/sign');
      const files = await readSignatureDir(o.signatures ?? signatureDir(file), 1);
      const res = checkPolicySignatures(policy, hash, files);
      if (o.json) printJson({ ok: res.ok, policyHash: hash, signers: res.checks, missing: res.missing });
      else {
        process.stdout.write(`policy ${hash}\n`);
        for (const c of res.checks) process.stdout.write(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.signer} (${c.role})${c.problem ? `: ${c.problem}` : ''}\n`);
        for (const m of res.missing) process.stdout.write(`  MISSING ${m}\n`);
        process.stdout.write(res.ok ? 'every signature verifies\n' : 'NOT fully signed\n');
      }
      if (!res.ok) throw new UserError(`policy ${hash} is not signed by ${[...res.missing, ...res.checks.filter((c) => !c.ok).map((c) => c.signer)].filter((v, i, a) => a.indexOf(v) === i).join(', ')}`, 1);
    });
}
