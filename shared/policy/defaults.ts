/**
 * A complete, valid starting policy for a federation; `fedbridge policy init` writes it as YAML and
 * the demo and tests start from it. Every value here is visible in the written file: nothing is
 * silently defaulted at run time.
 */
import { DEFAULT_VOCABULARIES, type Vocabularies } from '../data/vocab';
import { validatePolicy, type Policy } from './schema';

export interface PolicyInitArgs {
  federationId: string;
  coordinator: { name: string; publicKey: string };
  parties: Array<{ name: string; publicKey: string }>;
  catalogue: { hash: string; numItems: number };
  vocabularies?: Vocabularies;
}

export function defaultPolicy(a: PolicyInitArgs): Policy {
  const n = a.parties.length;
  return validatePolicy({
    version: 1,
    federationId: a.federationId,
    coordinator: a.coordinator,
    parties: a.parties,
    catalogue: a.catalogue,
    vocabularies: a.vocabularies ?? DEFAULT_VOCABULARIES,
    model: { architecture: 'two-tower-v1', embeddingDim: 32, hiddenDim: 64, numItems: a.catalogue.numItems },
    training: {
      rounds: 20,
      localSteps: 50,
      batchSize: 1024,
      learningRate: 0.01,
      negativesPerPositive: 4,
      serverOptimizer: { type: 'fedavg', learningRate: 1 },
    },
    secagg: {
      threshold: n === 2 ? 2 : Math.max(2, Math.floor(n / 2) + 1),
      neighbourDegree: 0,
      bitWidth: 32,
      scale: 65536,
      updateClip: 100,
      rotation: 'hadamard',
      maxWrapProbability: 2 ** -40,
    },
    privacy: {
      unit: 'user',
      mechanism: 'local-dpsgd',
      clipNorm: 1,
      noiseMultiplier: 1,
      samplingRate: 0.01,
      stepsPerRound: 50,
      delta: 1e-6,
      epsilonBudget: 8,
      noiseMode: 'per-party',
      nMin: Math.min(n, 2),
      maxInteractionsPerUser: 64,
    },
    timeouts: { phaseSeconds: 120, roundSeconds: 1800 },
  });
}
