/**
 * Prometheus metrics of one coordinator (prom-client, a registry per instance so tests can run
 * several coordinators in one process): rounds by outcome, phase durations, dropouts per phase,
 * bytes in/out, connected subscribers, rejected requests by status.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class CoordinatorMetrics {
  readonly registry = new Registry();
  readonly rounds = new Counter({ name: 'fedbridge_rounds_total', help: 'Rounds finished, by outcome', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly phaseDuration = new Histogram({
    name: 'fedbridge_phase_duration_seconds',
    help: 'Time from a phase opening to its closing',
    labelNames: ['phase'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800],
    registers: [this.registry],
  });
  readonly dropouts = new Counter({ name: 'fedbridge_dropouts_total', help: 'Parties dropped when a phase closed without their message', labelNames: ['phase'] as const, registers: [this.registry] });
  readonly bytesReceived = new Counter({ name: 'fedbridge_bytes_received_total', help: 'Payload bytes received from parties', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly bytesSent = new Counter({ name: 'fedbridge_bytes_sent_total', help: 'Payload bytes sent to parties', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly subscribers = new Gauge({ name: 'fedbridge_subscribers', help: 'Open Subscribe streams', registers: [this.registry] });
  readonly rejected = new Counter({ name: 'fedbridge_rejected_requests_total', help: 'Party requests rejected, by gRPC status code', labelNames: ['code'] as const, registers: [this.registry] });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
