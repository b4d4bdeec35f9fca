/**
 * ModelCache (coordinator/participant/downloads.ts): one storage read per version while it is held,
 * and the versions held are the `keep` asked for most recently, a hit included.
 */
import { ModelCache } from '../../coordinator/participant/downloads';
import type { ModelVersionRow } from '../../coordinator/storage/repository';

function repo(latest = 9) {
  const asked: number[] = [];
  return {
    asked,
    modelVersion: async (v: number) => {
      asked.push(v);
      return v > latest ? null : ({ version: v, bytes: new Uint8Array([v]) } as unknown as ModelVersionRow);
    },
    latestModelVersionNumber: async () => latest,
  };
}

test('a hit keeps a version: the one being downloaded stays while older ones are asked for once each', async () => {
  const r = repo();
  const cache = new ModelCache(r, 2);
  await cache.get(9); // the current model
  await cache.get(3); // an old one, once
  await cache.get(9); // the nodes again: a hit
  await cache.get(4); // another old one: evicts 3, not 9
  await cache.get(9);
  expect(r.asked).toEqual([9, 3, 4]);
  expect(cache.reads).toBe(3);
  expect(cache.size).toBe(2);
  await cache.get(3); // 3 was evicted: read again
  expect(r.asked).toEqual([9, 3, 4, 3]);
});

test('0 means the latest; a version that does not exist is not kept', async () => {
  const r = repo(5);
  const cache = new ModelCache(r, 2);
  expect((await cache.get(0))?.version).toBe(5);
  expect(await cache.get(7)).toBeNull();
  await new Promise((res) => setImmediate(res));
  expect(cache.size).toBe(1);
  expect((await cache.get(5))?.version).toBe(5);
  expect(r.asked).toEqual([5, 7]);
});
