/**
 * The node's data directory and its Ed25519 identity (DESIGN §7: key files 0600, never logged).
 *
 * Layout of a data dir:
 *   node.json        { format, name, publicKey (base64), createdAt }
 *   identity.key     the Ed25519 secret key, base64, mode 0600
 *   data/            imported users/items/interactions (participant-node/data/import.ts)
 *   model/           the local model
 *   privacy/         the privacy ledger
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../shared/cli/errors';
import { ed25519Keygen, ED25519_SECRET_KEY_LENGTH, type Ed25519KeyPair } from '../shared/crypto/sign';
import { sodiumReady } from '../shared/crypto/sodium';
import { writeFileAtomic } from '../shared/util/atomic';

export const NODE_FORMAT = 'fedbridge-node/1';
const NAME_RE = /^[a-z][a-z0-9_-]{0,62}$/;

export interface NodeInfo {
  format: string;
  name: string;
  publicKey: string;
  createdAt: string;
}

export function nodeFile(dataDir: string): string {
  return path.join(dataDir, 'node.json');
}

export function keyFile(dataDir: string): string {
  return path.join(dataDir, 'identity.key');
}

/** Creates a node data dir with a fresh identity. Refuses to overwrite an existing identity. */
export async function initNode(dataDir: string, name: string): Promise<NodeInfo> {
  if (!NAME_RE.test(name)) {
    throw new UserError(`--name must be lowercase letters, digits, '-' or '_', starting with a letter (got "${name}")`);
  }
  if (fs.existsSync(nodeFile(dataDir)) || fs.existsSync(keyFile(dataDir))) {
    throw new UserError(`${dataDir} already holds a node identity; refusing to overwrite it (use another --data-dir)`);
  }
  await sodiumReady();
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const kp = ed25519Keygen();
  const info: NodeInfo = {
    format: NODE_FORMAT,
    name,
    publicKey: Buffer.from(kp.publicKey).toString('base64'),
    createdAt: new Date().toISOString(),
  };
  const secretB64 = Buffer.from(kp.secretKey).toString('base64');
  kp.secretKey.fill(0);
  writeFileAtomic(keyFile(dataDir), secretB64 + '\n', 0o600);
  writeFileAtomic(nodeFile(dataDir), JSON.stringify(info, null, 2) + '\n', 0o644);
  return info;
}

/** Reads node.json; a precise error if the dir is not an initialised node. */
export function readNodeInfo(dataDir: string): NodeInfo {
  const f = nodeFile(dataDir);
  if (!fs.existsSync(f)) {
    throw new UserError(`${dataDir} is not a node data dir (no node.json): run 'fedbridge node init --data-dir ${dataDir} --name NAME' first`);
  }
  let info: NodeInfo;
  try {
    info = JSON.parse(fs.readFileSync(f, 'utf8')) as NodeInfo;
  } catch (e) {
    throw new UserError(`${f} is not valid JSON: ${(e as Error).message}`, 1);
  }
  if (info.format !== NODE_FORMAT) throw new UserError(`${f}: unsupported format "${info.format}" (expected ${NODE_FORMAT})`, 1);
  return info;
}

/** Loads the identity key pair. Refuses a key file readable by group/others. */
export async function loadIdentity(dataDir: string): Promise<Ed25519KeyPair & { name: string }> {
  const info = readNodeInfo(dataDir);
  const kf = keyFile(dataDir);
  const st = fs.statSync(kf);
  if ((st.mode & 0o077) !== 0) {
    throw new UserError(`${kf} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run 'chmod 600 ${kf}'`, 1);
  }
  await sodiumReady();
  const secretKey = new Uint8Array(Buffer.from(fs.readFileSync(kf, 'utf8').trim(), 'base64'));
  if (secretKey.length !== ED25519_SECRET_KEY_LENGTH) throw new UserError(`${kf} does not hold a 64-byte Ed25519 secret key`, 1);
  const publicKey = new Uint8Array(Buffer.from(info.publicKey, 'base64'));
  if (Buffer.compare(Buffer.from(secretKey.subarray(32)), Buffer.from(publicKey)) !== 0) {
    secretKey.fill(0);
    throw new UserError(`${kf} does not match the public key in node.json`, 1);
  }
  return { name: info.name, publicKey, secretKey };
}
