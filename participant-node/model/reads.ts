/**
 * Reading tensors on every backend, synchronously or not, from ONE implementation.
 *
 * The training code reads tensors back into JS in the middle of a computation (losses, per-example
 * gradients that are scatter-added or clipped in JS). On cpu, wasm and tfjs-node a synchronous
 * `dataSync()` does that. tfjs-backend-webgpu cannot read synchronously in Node: its `readSync` goes
 * through `OffscreenCanvas`, which exists only in browsers ("OffscreenCanvas is not defined"), and
 * Dawn offers no blocking buffer map. There only the asynchronous `data()` works.
 *
 * So a computation that reads is written once as a generator that YIELDS the tensors it needs and
 * RECEIVES their values (in the same order, as Float32Array: every tensor we read is float32):
 *
 *   function* steps(): Reads<number> { const [v] = yield [t]; return v[0]; }
 *   runSync(steps())         // dataSync: cpu, wasm, tfjs-node
 *   await runAsync(steps())  // data(): every backend, webgpu included
 *
 * The generator owns its tensors (disposes them in `finally`; `tf.tidy` cannot span a `yield`); a
 * failed read is thrown into the generator at its `yield`, so its `finally` blocks still run.
 * Computations compose with `yield*` (an epoch loop yields what each batch's gradient needs), so a
 * whole training run is ONE generator.
 *
 * `run(g)` chooses the driver from the active backend: `dataSync` where a synchronous read works (no
 * promise per read: cpu, wasm and tfjs-node keep their speed and their exact numbers, the values
 * read are the same either way), `data()` where it does not. Whether it works is probed once per
 * backend (a read of a result computed on the device; `selectBackend` probes when it activates a
 * backend, `run` on first use otherwise).
 */
import * as tf from '@tensorflow/tfjs';

/** A computation that reads tensors: yields the tensors to read, receives their values. */
export type Reads<R> = Generator<tf.Tensor[], R, Float32Array[]>;

function drive<R>(g: Reads<R>, read: (ts: tf.Tensor[]) => Float32Array[]): R {
  let step = g.next();
  while (!step.done) {
    let vals: Float32Array[];
    try {
      vals = read(step.value);
    } catch (e) {
      step = g.throw(e);
      continue;
    }
    step = g.next(vals);
  }
  return step.value;
}

/** Runs `g` reading with `dataSync()` (not on webgpu in Node). */
export function runSync<R>(g: Reads<R>): R {
  return drive(g, (ts) => ts.map((t) => t.dataSync() as Float32Array));
}

/** The values of `ts` by one concurrent `data()` per tensor. */
export async function readEach(ts: tf.Tensor[]): Promise<Float32Array[]> {
  return (await Promise.all(ts.map((t) => t.data()))) as Float32Array[];
}

/** Runs `g` reading with `data()` (every backend), the tensors of a yield concurrently (`readEach`). */
export function runAsync<R>(g: Reads<R>): Promise<R> {
  return runAsyncWith(g, readEach);
}

/**
 * Runs `g` reading each yield with `read`. `readEach` is the product's: on WebGPU over Dawn (H100),
 * reading a training step's 12 tensors by one concatenated read took 15-20 ms against 11-12 ms for
 * 12 concurrent reads (the concatenation is kernels, ~0.9 ms each there), and whole steps and DP-SGD
 * chunks showed no consistent difference (`npm run bench -- gpu-latency`, which compares the two).
 */
export async function runAsyncWith<R>(g: Reads<R>, read: (ts: tf.Tensor[]) => Promise<Float32Array[]>): Promise<R> {
  let step = g.next();
  while (!step.done) {
    let vals: Float32Array[];
    try {
      vals = await read(step.value);
    } catch (e) {
      step = g.throw(e);
      continue;
    }
    step = g.next(vals);
  }
  return step.value;
}

export type ReadMode = 'sync' | 'async';

/** read mode per tfjs backend name (probed) */
const modes = new Map<string, ReadMode>();

function message(e: unknown): string {
  return ((e as Error)?.message ?? String(e)).split('\n')[0];
}

/**
 * Why a synchronous read of a result computed on the ACTIVE backend fails, or null if it works.
 * The result has 4,096 elements: above tfjs-backend-webgpu's CPU-forwarding threshold (1,000), so it
 * really lives on the device.
 */
export function syncReadFailure(): string | null {
  const t = tf.tidy(() => tf.matMul(tf.fill([64, 64], 0.5), tf.fill([64, 64], 2)));
  try {
    const v = t.dataSync();
    if (v.length !== 4096 || v[0] !== 64 || v[4095] !== 64) return `probe read returned wrong values (${v[0]}, ${v[4095]})`;
    return null;
  } catch (e) {
    return message(e);
  } finally {
    t.dispose();
  }
}

/**
 * Probes the active backend and records how `run` reads on it from now on: 'sync' when a
 * synchronous read works, else 'async' (with the reason).
 */
export function probeReadMode(): { mode: ReadMode; reason?: string } {
  const why = syncReadFailure();
  modes.set(tf.getBackend(), why ? 'async' : 'sync');
  return why ? { mode: 'async', reason: why } : { mode: 'sync' };
}

/** How `run` reads on the active backend (probed on first use). */
export function readMode(): ReadMode {
  const m = modes.get(tf.getBackend());
  return m ?? probeReadMode().mode;
}

/** How long `run`'s synchronous driver may hold the event loop before it lets it turn (ms). */
export const SYNC_SLICE_MS = 50;

/**
 * Reads with `dataSync()` like `runSync` (the same values, the same numbers), but lets the event
 * loop turn (setImmediate) whenever `sliceMs` have passed since it last did. A round's update is one
 * generator that computes for seconds to minutes; driven in one go, it held the node's event loop
 * that long, so nothing else ran: no gRPC frame was read or answered, and the coordinator's
 * keepalive PING went unanswered and the connection was dropped mid-round (seen in the demo: a
 * 12-17 s local update, a 10 s keepalive timeout).
 */
export async function runSyncSliced<R>(g: Reads<R>, sliceMs = SYNC_SLICE_MS): Promise<R> {
  let last = Date.now();
  let step = g.next();
  while (!step.done) {
    let vals: Float32Array[];
    try {
      vals = step.value.map((t) => t.dataSync() as Float32Array);
    } catch (e) {
      step = g.throw(e);
      continue;
    }
    step = g.next(vals);
    if (Date.now() - last >= sliceMs) {
      await new Promise((r) => setImmediate(r));
      last = Date.now();
    }
  }
  return step.value;
}

/**
 * Runs `g` with the driver the active backend allows: synchronous reads where they work (in slices,
 * `runSyncSliced`, so the event loop keeps turning), else `runAsync`. Errors (also from the
 * synchronous driver) reject the promise.
 */
export async function run<R>(g: Reads<R>): Promise<R> {
  return readMode() === 'sync' ? runSyncSliced(g) : runAsync(g);
}
