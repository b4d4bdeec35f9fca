/**
 * `npm run bench -- dp`: speed of the DP noise paths, one core.
 * - exact discrete Gaussian samples/s for sigma in {1, 1e2, 1e4} (target >= 1M/s/core), plus 0.5 and 1e3;
 * - continuous CSPRNG Gaussian noise (Box-Muller) samples/s, as DP-SGD draws it every step;
 * - the round-noise encoder (clip, rotation, conditional rounding, discrete Gaussian, mod 2^b) in
 *   coordinates/s for a 1M-coordinate update;
 * - the accountant: time for one epsilon over the default orders.
 * Each figure is the median of 5 timed repetitions after a warm-up. The sampler is single-threaded;
 * besides wall-clock rates it records samples per CPU-second of this process, the per-core figure
 * that stays meaningful when other work shares the machine (wall-clock is printed too).
 */
import { median, type BenchContext } from './lib';
import { sodiumReady } from '../shared/crypto/sodium';
import { DiscreteGaussian } from '../shared/dp/discrete';
import { gaussianNoise } from '../shared/dp/gaussian';
import { encodeUpdate, DEFAULT_BETA } from '../shared/dp/encode';
import { epsilonFromRdp, rdpSampledGaussian, DEFAULT_ORDERS } from '../shared/dp/rdp';

function timeSync(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Wall-clock and CPU (user + system) seconds of fn: on a shared machine CPU time is the per-core figure. */
function timeBoth(fn: () => void): { wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const wall = timeSync(fn);
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1e6 };
}

export async function run(ctx: BenchContext): Promise<void> {
  await sodiumReady();
  const reps = 5;

  const n = 1_000_000;
  const buf = new Float64Array(n);
  for (const sigma of [0.5, 1, 100, 1000, 10000]) {
    const dg = new DiscreteGaussian(sigma * sigma);
    dg.fill(buf.subarray(0, 200_000)); // warm-up (JIT)
    const rates: number[] = [];
    const cpuRates: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t = timeBoth(() => dg.fill(buf));
      rates.push(n / t.wall);
      cpuRates.push(n / t.cpu);
    }
    ctx.record('discrete_gaussian_samples_per_s', Math.round(median(rates)), 'samples/s', { sigma, samples: n, reps, variance: `${dg.num}/${dg.den}`, clock: 'wall' });
    ctx.record('discrete_gaussian_samples_per_cpu_s', Math.round(median(cpuRates)), 'samples/s/core', { sigma, samples: n, reps, clock: 'process CPU time (user+system), one thread' });
  }

  const g = new Float32Array(n);
  gaussianNoise(n, 1, g);
  const grates: number[] = [];
  for (let r = 0; r < reps; r++) grates.push(n / timeSync(() => gaussianNoise(n, 1, g)));
  ctx.record('gaussian_noise_samples_per_s', Math.round(median(grates)), 'samples/s', { samples: n, reps, method: 'Box-Muller over libsodium ChaCha20 stream' });

  const d = 1 << 20;
  const update = gaussianNoise(d, 1e-3, new Float64Array(d));
  const params = { clip: 1, gamma: 1024, bits: 32, rotationSeed: new Uint8Array(32).fill(1), beta: DEFAULT_BETA, noise: { sigma: 1, mode: 'per-party' as const, nMin: 1 } };
  encodeUpdate(update.subarray(0, 1 << 16), params);
  const erates: number[] = [];
  for (let r = 0; r < reps; r++) erates.push(d / timeSync(() => encodeUpdate(update, params)));
  ctx.record('encode_round_noise_coords_per_s', Math.round(median(erates)), 'coords/s', { dimension: d, gamma: 1024, noiseStdIntegers: 1024, rotation: true, reps });

  const arates: number[] = [];
  for (let r = 0; r < reps; r++) {
    arates.push(timeSync(() => epsilonFromRdp(DEFAULT_ORDERS, rdpSampledGaussian(0.01, 1.1, 10000), 1e-6)) * 1000);
  }
  ctx.record('accountant_epsilon_ms', +median(arates).toFixed(2), 'ms', { orders: DEFAULT_ORDERS.length, q: 0.01, sigma: 1.1, steps: 10000 });
}
