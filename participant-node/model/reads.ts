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
 * The generator owns its tensors (disposes them in `finally`); a failed read is thrown into the
 * generator at its `yield`, so its `finally` blocks still run.
 */
import type * as tf from '@tensorflow/tfjs';

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

/** Runs `g` reading with `data()` (every backend). */
export async function runAsync<R>(g: Reads<R>): Promise<R> {
  let step = g.next();
  while (!step.done) {
    let vals: Float32Array[];
    try {
      vals = (await Promise.all(step.value.map((t) => t.data()))) as Float32Array[];
    } catch (e) {
      step = g.throw(e);
      continue;
    }
    step = g.next(vals);
  }
  return step.value;
}
