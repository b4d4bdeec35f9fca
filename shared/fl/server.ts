/**
 * Server optimizers (DESIGN §4 step 5): the coordinator turns the decoded average update into the
 * next global model. Pure TypeScript over Float32Arrays.
 *
 *   FedAvg:  w <- w + lr * avg
 *   FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Alg. 2, no bias correction):
 *            m <- b1 m + (1 - b1) avg;  v <- b2 v + (1 - b2) avg^2;  w <- w + lr * m / (sqrt(v) + tau)
 * `avg` is the average of the parties' deltas (w_local - w_global), so both move w toward the
 * parties' local models. The optimizer state is part of the coordinator's run state.
 */
import { anum } from '../util/check';

export type ServerOptimizerConfig =
  | { type: 'fedavg'; learningRate: number }
  | { type: 'fedadam'; learningRate: number; beta1: number; beta2: number; tau: number };

export interface ServerOptimizerState {
  m: Float32Array | null;
  v: Float32Array | null;
  steps: number;
}

export function newServerState(): ServerOptimizerState {
  return { m: null, v: null, steps: 0 };
}

/** Returns the next global model (a new array); updates `state` in place. */
export function applyServerUpdate(global: Float32Array, avg: ArrayLike<number>, cfg: ServerOptimizerConfig, state: ServerOptimizerState): Float32Array {
  if (avg.length !== global.length) throw new RangeError(`"avg" expected length ${global.length}, got ${avg.length}`);
  anum('learningRate', cfg.learningRate, 0, Infinity, { min: true });
  const next = new Float32Array(global.length);
  const lr = cfg.learningRate;
  if (cfg.type === 'fedavg') {
    for (let i = 0; i < next.length; i++) next[i] = global[i] + lr * avg[i];
  } else {
    const { beta1: b1, beta2: b2, tau } = cfg;
    const m = (state.m ??= new Float32Array(global.length));
    const v = (state.v ??= new Float32Array(global.length));
    for (let i = 0; i < next.length; i++) {
      const g = avg[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      next[i] = global[i] + (lr * m[i]) / (Math.sqrt(v[i]) + tau);
    }
  }
  for (let i = 0; i < next.length; i++) if (!Number.isFinite(next[i])) throw new RangeError(`server update produced a non-finite parameter at coordinate ${i}`);
  state.steps++;
  return next;
}
