/**
 * The shared model's parameter layout (DESIGN §2, §5): names, shapes and order of the parameters
 * that are aggregated. Secure aggregation flattens exactly this list, in this order, so the
 * coordinator handles flat Float32Arrays without loading tfjs.
 *
 * Model (two-tower-v1), for user u and item i:
 *   score(u, i) = sigmoid( <f(x_u) + e_u, g(x_i) + e_i> + b_i )
 *   f(x) = W2_u · relu(W1_u · x + c1_u) + c2_u      (user tower; shared)
 *   g(x) = W2_i · relu(W1_i · x + c1_i) + c2_i      (item tower; shared)
 *   e_i  item embedding [numItems, dim]; b_i item bias [numItems]  (shared)
 *   e_u  user embedding [numUsers, dim]             (PRIVATE: never in this layout, never leaves the node)
 */
import { z } from 'zod';
import { itemFeatureDim, userFeatureDim, type Vocabularies } from '../data/vocab';

export const modelConfigSchema = z
  .object({
    architecture: z.literal('two-tower-v1'),
    embeddingDim: z.number().int().min(1).max(1024),
    hiddenDim: z.number().int().min(1).max(4096),
    numItems: z.number().int().min(1).max(10_000_000),
  })
  .strict();

export type ModelConfig = z.infer<typeof modelConfigSchema>;

export interface ParamSpec {
  name: string;
  shape: number[];
  /** offset of this parameter in the flat vector */
  offset: number;
  size: number;
}

/** The ordered list of shared parameters. Stable: changing it is a breaking change of the federation. */
export function sharedParameterLayout(model: ModelConfig, vocab: Vocabularies): ParamSpec[] {
  const du = userFeatureDim(vocab);
  const di = itemFeatureDim(vocab);
  const { embeddingDim: d, hiddenDim: h, numItems: n } = model;
  const shapes: Array<[string, number[]]> = [
    ['user_tower/dense1/kernel', [du, h]],
    ['user_tower/dense1/bias', [h]],
    ['user_tower/dense2/kernel', [h, d]],
    ['user_tower/dense2/bias', [d]],
    ['item_tower/dense1/kernel', [di, h]],
    ['item_tower/dense1/bias', [h]],
    ['item_tower/dense2/kernel', [h, d]],
    ['item_tower/dense2/bias', [d]],
    ['item_embedding', [n, d]],
    ['item_bias', [n]],
  ];
  let offset = 0;
  return shapes.map(([name, shape]) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const spec = { name, shape, offset, size };
    offset += size;
    return spec;
  });
}

/** Total number of shared coordinates (the secure-aggregation vector length). */
export function layoutSize(layout: ParamSpec[]): number {
  const last = layout[layout.length - 1];
  return last ? last.offset + last.size : 0;
}

/** Concatenates named parameter values in layout order; checks names and sizes. */
export function flattenParams(layout: ParamSpec[], values: Map<string, Float32Array>): Float32Array {
  const out = new Float32Array(layoutSize(layout));
  for (const p of layout) {
    const v = values.get(p.name);
    if (!v) throw new RangeError(`missing shared parameter "${p.name}"`);
    if (v.length !== p.size) throw new RangeError(`shared parameter "${p.name}" expected ${p.size} values, got ${v.length}`);
    out.set(v, p.offset);
  }
  if (values.size !== layout.length) {
    const extra = [...values.keys()].filter((k) => !layout.some((p) => p.name === k));
    throw new RangeError(`unexpected parameters not in the shared layout: ${extra.join(', ')}`);
  }
  return out;
}

/** Splits a flat vector into named views (no copy) in layout order. */
export function unflattenParams(layout: ParamSpec[], flat: Float32Array): Map<string, Float32Array> {
  if (flat.length !== layoutSize(layout)) {
    throw new RangeError(`flat parameter vector expected length ${layoutSize(layout)}, got ${flat.length}`);
  }
  const out = new Map<string, Float32Array>();
  for (const p of layout) out.set(p.name, flat.subarray(p.offset, p.offset + p.size));
  return out;
}
