/**
 * ParticipantService with every message as raw bytes in both directions (identity serializers): a
 * fake coordinator serves exactly the bytes a test chooses, and a raw client reads what came.
 */
import type * as grpc from '@grpc/grpc-js';
import { ParticipantServiceService } from '../proto/gen/grpc/fedbridge/v1/federation';

const raw = (b: Buffer) => b;

export const rawParticipantService = Object.fromEntries(
  Object.entries(ParticipantServiceService).map(([k, m]) => [k, { ...m, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw }]),
) as unknown as grpc.ServiceDefinition;
