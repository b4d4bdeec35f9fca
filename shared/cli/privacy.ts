/**
 * `fedbridge privacy epsilon` and `fedbridge privacy sigma` (DESIGN §8): the accountant, standalone,
 * so an auditor can recompute any figure from the parameters recorded in the audit log / ledger.
 *
 * epsilon, mechanism gaussian (default): Poisson-subsampled Gaussian, --sigma = noise multiplier
 *   (noise std / L2 sensitivity), --q sampling rate, --steps compositions.
 * epsilon, mechanism ddg: (distributed) discrete Gaussian in the integer domain. --sigma is the
 *   real-domain std of the noise the sum carries, --gamma the scale, --n-min the number of noise
 *   shares every observer sees in the sum besides its own (1 = per-party; a policy's n_min, whose
 *   rounds need n_min + 1 masked inputs); each share has variance (gamma sigma)^2 / n_min.
 *   --l2 / --l1 are the integer-domain sensitivities; without them they are derived from --clip and
 *   --beta exactly as the encoder bounds them (conditional rounding, Kairouz et al. 2021).
 * sigma: the smallest noise multiplier meeting (--epsilon, --delta) for the sampled Gaussian.
 * JSON: {"epsilon":x,"order":a} and {"sigma":x} (extra fields added, none renamed).
 */
import type { Command } from 'commander';
import { printJson, parseNumberOption, UserError } from './errors';

interface EpsOpts {
  sigma: string;
  q: string;
  steps: string;
  delta: string;
  mechanism: string;
  dimension?: string;
  l1?: string;
  l2?: string;
  gamma?: string;
  nMin?: string;
  clip?: string;
  beta?: string;
  json?: boolean;
}

export function registerPrivacyCommands(privacy: Command): void {
  privacy
    .command('epsilon')
    .description('epsilon of a mechanism composed over steps (RDP accountant, CKS/Balle conversion)')
    .requiredOption('--sigma <s>', 'gaussian: noise multiplier; ddg: real-domain std of the summed noise')
    .requiredOption('--q <q>', 'Poisson sampling rate in [0, 1]')
    .requiredOption('--steps <n>', 'number of compositions (steps x rounds)')
    .requiredOption('--delta <d>', 'target delta in (0, 1)')
    .option('--mechanism <m>', 'gaussian | ddg', 'gaussian')
    .option('--dimension <d>', 'ddg: dimension of the encoded vector (after padding)')
    .option('--l1 <x>', 'ddg: integer-domain L1 sensitivity')
    .option('--l2 <y>', 'ddg: integer-domain L2 sensitivity')
    .option('--gamma <g>', 'ddg: quantization scale')
    .option('--n-min <n>', 'ddg: noise shares every observer sees in the sum besides its own (1 = per-party; the policy n_min)', '1')
    .option('--clip <c>', 'ddg: real-domain L2 clip (to derive --l2/--l1 when not given)')
    .option('--beta <b>', 'ddg: conditional rounding beta (with --clip)', String(Math.exp(-0.5)))
    .option('--json', 'print {"epsilon":x,"order":a}')
    .action(async (o: EpsOpts) => {
      const rdp = await import('../dp/rdp');
      const sigma = parseNumberOption('--sigma', o.sigma, { min: 0 });
      if (!(sigma > 0)) throw new UserError('--sigma must be > 0');
      const q = parseNumberOption('--q', o.q, { min: 0, max: 1 });
      const steps = parseNumberOption('--steps', o.steps, { integer: true, min: 1 });
      const delta = parseNumberOption('--delta', o.delta, { min: 0, max: 1 });
      if (!(delta > 0 && delta < 1)) throw new UserError('--delta must be in (0, 1)');
      if (o.mechanism === 'gaussian') {
        for (const f of ['dimension', 'l1', 'l2', 'gamma', 'clip'] as const) {
          if (o[f] !== undefined) throw new UserError(`--${f} applies to --mechanism ddg only`);
        }
        const r = rdp.epsilonFromRdp(rdp.ACCOUNTING_ORDERS, rdp.rdpSampledGaussian(q, sigma, steps, rdp.ACCOUNTING_ORDERS), delta);
        if (o.json) printJson({ epsilon: r.epsilon, order: r.order, mechanism: 'gaussian', delta });
        else process.stdout.write(`epsilon = ${r.epsilon} at delta = ${delta} (order ${r.order})\n`);
        return;
      }
      if (o.mechanism !== 'ddg') throw new UserError(`--mechanism must be gaussian or ddg, got "${o.mechanism}"`);
      if (o.dimension === undefined) throw new UserError('--mechanism ddg needs --dimension');
      if (o.gamma === undefined) throw new UserError('--mechanism ddg needs --gamma');
      const dimension = parseNumberOption('--dimension', o.dimension, { integer: true, min: 1 });
      const gamma = parseNumberOption('--gamma', o.gamma, { min: 0 });
      if (!(gamma > 0)) throw new UserError('--gamma must be > 0');
      const nMin = parseNumberOption('--n-min', o.nMin ?? '1', { integer: true, min: 1 });
      let l2: number;
      let l1: number;
      if (o.l2 !== undefined) {
        l2 = parseNumberOption('--l2', o.l2, { min: 0 });
        l1 = o.l1 !== undefined ? parseNumberOption('--l1', o.l1, { min: 0 }) : l2 * Math.min(Math.sqrt(dimension), l2);
      } else {
        if (o.clip === undefined) throw new UserError('--mechanism ddg needs --l2 (and --l1), or --clip to derive them');
        if (o.l1 !== undefined) throw new UserError('--l1 without --l2: give both, or --clip');
        const clip = parseNumberOption('--clip', o.clip, { min: 0 });
        const beta = parseNumberOption('--beta', o.beta ?? String(Math.exp(-0.5)), { min: 0, max: 0.999999 });
        ({ l2, l1 } = rdp.roundedSensitivity(gamma * clip, dimension, beta));
      }
      // the variance the sampler really uses (and the ledger and the auditor charge): the exact
      // rational just above the requested one (shared/dp/discrete.ts rationalizeVariance)
      const { rationalizeVariance } = await import('../dp/discrete');
      const { num, den } = rationalizeVariance((gamma * sigma) ** 2 / nMin);
      const localVariance = num / den;
      const r = rdp.epsilonFromRdp(
        // the ledger evaluates this bound at ceil(order) of ACCOUNTING_ORDERS: its fractional orders
        // then repeat order 2's RDP at a smaller order, never the minimum, so the epsilon is the same
        rdp.INTEGER_ORDERS,
        rdp.rdpDdg({ localVariance, parties: nMin, l2, l1, dimension, q, steps }),
        delta,
      );
      if (o.json) printJson({ epsilon: r.epsilon, order: r.order, mechanism: 'ddg', delta, l2, l1, localVariance });
      else process.stdout.write(`epsilon = ${r.epsilon} at delta = ${delta} (order ${r.order}; l2 ${l2}, l1 ${l1}, variance per share ${localVariance})\n`);
    });

  privacy
    .command('sigma')
    .description('calibration: the smallest noise multiplier meeting a target (epsilon, delta)')
    .requiredOption('--epsilon <e>', 'target epsilon')
    .requiredOption('--delta <d>', 'target delta in (0, 1)')
    .requiredOption('--q <q>', 'Poisson sampling rate in (0, 1]')
    .requiredOption('--steps <n>', 'number of compositions (steps x rounds)')
    .option('--json', 'print {"sigma":x}')
    .action(async (o: { epsilon: string; delta: string; q: string; steps: string; json?: boolean }) => {
      const rdp = await import('../dp/rdp');
      const epsilon = parseNumberOption('--epsilon', o.epsilon, { min: 0 });
      if (!(epsilon > 0)) throw new UserError('--epsilon must be > 0');
      const delta = parseNumberOption('--delta', o.delta, { min: 0, max: 1 });
      if (!(delta > 0 && delta < 1)) throw new UserError('--delta must be in (0, 1)');
      const q = parseNumberOption('--q', o.q, { min: 0, max: 1 });
      if (!(q > 0)) throw new UserError('--q must be > 0');
      const steps = parseNumberOption('--steps', o.steps, { integer: true, min: 1 });
      let sigma: number;
      try {
        sigma = rdp.calibrateSigma(epsilon, delta, q, steps, rdp.ACCOUNTING_ORDERS);
      } catch (e) {
        throw new UserError((e as Error).message, 1);
      }
      const check = rdp.epsilonFromRdp(rdp.ACCOUNTING_ORDERS, rdp.rdpSampledGaussian(q, sigma, steps, rdp.ACCOUNTING_ORDERS), delta);
      if (o.json) printJson({ sigma, epsilon: check.epsilon, order: check.order });
      else process.stdout.write(`sigma = ${sigma} (epsilon ${check.epsilon} at delta ${delta})\n`);
    });
}
