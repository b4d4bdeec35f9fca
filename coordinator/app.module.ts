/**
 * NestJS wiring: thin modules over the coordinator context (CONVENTIONS.md: modules wire the
 * protocol core to gRPC, storage and HTTP; no logic here).
 *   CoreModule (global)   the CTX value: storage, identity, rounds, events, metrics, auth
 *   EnrolmentModule       OperatorService (enrol, runs, tokens) over gRPC
 *   RoundsModule          ParticipantService (subscribe, phases, upload, model download) over gRPC
 *   HttpModule            /healthz, /metrics, the read-only audit API and auditor page (/audit/)
 */
import { Global, Module, type DynamicModule } from '@nestjs/common';
import { CTX, type CoordinatorContext } from './context';
import { HealthController } from './http/health.controller';
import { AuditController } from './http/audit.controller';
import { OperatorController } from './operator/operator.controller';
import { ParticipantController } from './participant/participant.controller';

@Global()
@Module({})
export class CoreModule {
  static forContext(ctx: CoordinatorContext): DynamicModule {
    return { module: CoreModule, providers: [{ provide: CTX, useValue: ctx }], exports: [CTX] };
  }
}

@Module({ controllers: [OperatorController] })
export class EnrolmentModule {}

@Module({ controllers: [ParticipantController] })
export class RoundsModule {}

@Module({ controllers: [HealthController, AuditController] })
export class HttpModule {}

@Module({})
export class AppModule {
  static forContext(ctx: CoordinatorContext): DynamicModule {
    return { module: AppModule, imports: [CoreModule.forContext(ctx), EnrolmentModule, RoundsModule, HttpModule] };
  }
}
