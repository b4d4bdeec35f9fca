/**
 * The coordinator's small HTTP surface: GET /healthz (liveness + storage reachability, JSON) and
 * GET /metrics (Prometheus text format). The read-only audit API joins it in the audit issue.
 */
import { Controller, Get, Header, HttpException, Inject, Res } from '@nestjs/common';
import { CTX, type CoordinatorContext } from '../context';

/** The part of express's Response used here (no @types/express dependency). */
interface TextResponse {
  setHeader(name: string, value: string): void;
  send(body: string): void;
}

@Controller()
export class HealthController {
  constructor(@Inject(CTX) private readonly ctx: CoordinatorContext) {}

  @Get('healthz')
  @Header('Cache-Control', 'no-store')
  async health(): Promise<Record<string, unknown>> {
    try {
      await this.ctx.repo.db.query('SELECT 1 AS ok');
    } catch (e) {
      throw new HttpException({ status: 'unhealthy', storage: (e as Error).message }, 503);
    }
    const b = this.ctx.rounds.binding();
    return {
      status: 'ok',
      federationId: this.ctx.config.federationId,
      storage: this.ctx.repo.db.dialect,
      uptimeSeconds: Math.round((Date.now() - this.ctx.startedAt) / 1000),
      coordinatorPublicKey: Buffer.from(this.ctx.identity.publicKey).toString('base64'),
      round: b ? { runId: b.runId, round: b.round, phase: b.phase } : null,
    };
  }

  @Get('metrics')
  async metrics(@Res() res: TextResponse): Promise<void> {
    res.setHeader('Content-Type', this.ctx.metrics.registry.contentType);
    res.send(await this.ctx.metrics.registry.metrics());
  }
}
