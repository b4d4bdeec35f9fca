import { main } from '../bin/fedbridge';

type Main = typeof main;

/** Runs `fedbridge` through `entry` with stdout and stderr captured: its exit code and what it wrote. */
async function capture(entry: Main, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((out += String(c)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((err += String(c)), true));
  try {
    return { code: await entry(args), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

/** Runs the `fedbridge` CLI in this process with stdout and stderr captured: its exit code and what it wrote. */
export async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return capture(main, args);
}

/**
 * Like runCli, but in a fresh module registry, as a new `fedbridge` process starts: nothing an
 * earlier test initialised (libsodium, for one) is ready unless the command itself makes it so.
 */
export async function runCliFresh(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let r: { code: number; out: string; err: string } | undefined;
  // the whole command runs inside: the modules its actions import lazily come from the same registry
  await jest.isolateModulesAsync(async () => {
    r = await capture((await import('../bin/fedbridge')).main, args);
  });
  return r!;
}
