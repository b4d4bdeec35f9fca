/**
 * identity/authenticate.ts METHOD_BODY: for every party RPC, the message type checked strictly and
 * the generated decoder that then reads the body are the same message (same field names), and the
 * table covers exactly the RPCs that carry a signed body.
 */
import { METHOD_BODY } from '../../coordinator/identity/authenticate';
import { METHOD_PHASE } from '../../shared/proto/envelope';
import { federationWireSchema } from '../../shared/proto/wire-check';

test('each RPC\'s checked type and decoder are one message, for every RPC with a signed body', () => {
  const schema = federationWireSchema();
  expect(Object.keys(METHOD_BODY).sort()).toEqual(Object.keys(METHOD_PHASE).sort());
  for (const [method, { type, fns }] of Object.entries(METHOD_BODY)) {
    const fields = schema.get(type);
    expect({ method, known: fields !== undefined }).toEqual({ method, known: true });
    const fromSchema = [...fields!.values()].map((f) => f.name).sort();
    const fromDecoder = Object.keys((fns as { fromPartial(o: object): object }).fromPartial({})).sort();
    expect({ method, fields: fromDecoder }).toEqual({ method, fields: fromSchema });
    expect(fromSchema).toContain('header');
  }
});
