/**
 * The coordinator's own Ed25519 identity (pinned in the policy: `coordinator.publicKey`). It signs
 * audit entries and the events it pushes to parties. Stored as base64 of the 64-byte libsodium
 * secret key in a 0600 file; never logged.
 */
import * as fs from 'node:fs';
import { ED25519_SECRET_KEY_LENGTH, ed25519Keygen, type Ed25519KeyPair } from '../../shared/crypto/sign';
import { sodiumReady } from '../../shared/crypto/sodium';
import { writeFileAtomic } from '../../shared/util/atomic';

export class KeyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyFileError';
  }
}

/** Loads the key file; creates it (0600) with a fresh CSPRNG key when `create` and it is missing. */
export async function loadCoordinatorKey(file: string, opts: { create?: boolean } = {}): Promise<Ed25519KeyPair> {
  await sodiumReady();
  if (!fs.existsSync(file)) {
    if (!opts.create) throw new KeyFileError(`coordinator key file not found: ${file}`);
    const kp = ed25519Keygen();
    writeFileAtomic(file, Buffer.from(kp.secretKey).toString('base64') + '\n', 0o600);
    return kp;
  }
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) throw new KeyFileError(`coordinator key file ${file} is readable by others (mode ${mode.toString(8)}); chmod 600 it`);
  const raw = fs.readFileSync(file, 'utf8').trim();
  const sk = new Uint8Array(Buffer.from(raw, 'base64'));
  if (sk.length !== ED25519_SECRET_KEY_LENGTH || Buffer.from(sk).toString('base64') !== raw) {
    throw new KeyFileError(`coordinator key file ${file} does not hold a base64 Ed25519 secret key (${ED25519_SECRET_KEY_LENGTH} bytes)`);
  }
  return { secretKey: sk, publicKey: sk.slice(32) };
}
