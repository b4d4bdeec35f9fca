/**
 * The small federation policy the real-node integration tests run under: the default policy for
 * the parties' keys and the imported catalogue, tiny model dimensions, 2 rounds, threshold 2, and
 * each party trained on its own offers (training.offerScope own, catalogue.offers from the
 * catalogue's provider column), as `policy init --catalogue-from` and the demo write it; and the
 * nodes' connection options.
 */
import type { NodeDataset } from '../../participant-node/data/dataset';
import { defaultPolicy } from '../../shared/policy/defaults';
import { offerRanges } from '../../shared/fl/offers';
import type { Env } from '../coordinator/helpers/harness';

export function smallPolicy(o: { ds: NodeDataset; parties: string[]; coordinatorKey: Uint8Array; keys: Record<string, Uint8Array>; samplingRate: number; phaseSeconds: number }) {
  const base = defaultPolicy({
    federationId: 'fb-test',
    coordinator: { name: 'coordinator', publicKey: Buffer.from(o.coordinatorKey).toString('base64') },
    parties: o.parties.map((p) => ({ name: p, publicKey: Buffer.from(o.keys[p]).toString('base64') })),
    catalogue: { hash: o.ds.catalogueHash, numItems: o.ds.items.length },
  });
  const offers = offerRanges(o.ds.items);
  return {
    ...base,
    catalogue: { ...base.catalogue, offers: Object.fromEntries(o.parties.map((p) => [p, offers[p]])) },
    model: { ...base.model, embeddingDim: 8, hiddenDim: 8 },
    training: { ...base.training, rounds: 2, offerScope: 'own' as const },
    secagg: { ...base.secagg, threshold: 2 },
    privacy: { ...base.privacy, samplingRate: o.samplingRate, stepsPerRound: 2, maxInteractionsPerUser: 4, epsilonBudget: 50 },
    timeouts: { ...base.timeouts, phaseSeconds: o.phaseSeconds },
  };
}

/** The connection options of `joinFederation` for one party of the test federation (mutual TLS on loopback, cpu backend). */
export function nodeConnection(env: Env, grpcPort: number, dataDir: string, party: string, policyFile: string) {
  return {
    dataDir,
    coordinator: `127.0.0.1:${grpcPort}`,
    policyFile,
    caFile: env.certs.ca,
    certFile: env.certs.clients[party].cert,
    keyFile: env.certs.clients[party].key,
    backend: 'cpu' as const,
    maxReconnects: 2,
  };
}
