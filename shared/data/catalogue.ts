/**
 * The shared item catalogue's identity (DESIGN §3, §5): every party holds the same catalogue (items
 * are product offers, not user data) and the policy pins its hash, so a node refuses to train
 * against a catalogue whose rows, order or features differ from the agreed one (the catalogue
 * order is the row order of the shared item embedding e_i and of the bias b_i).
 *
 * Canonical encoding: the RFC 8785 canonical JSON of
 *   { "format": "fedbridge-catalogue/1",
 *     "items": [[id, provider, domain, priceBand, [topics sorted by code point]], ...] }
 * with the items in catalogue order (order matters, it is the embedding row order) and a missing
 * provider encoded as "". Topic order inside an item does not matter (sorted here); everything
 * else does. The hash is BLAKE2b-256 (libsodium crypto_generichash, 32 bytes, no key), hex.
 */
import { canonicalize } from 'json-canonicalize';
import { sodium } from '../crypto/sodium';

export const CATALOGUE_FORMAT = 'fedbridge-catalogue/1';

/** The catalogue-relevant fields of an item (ItemRecord of participant-node/data/dataset.ts fits). */
export interface CatalogueItem {
  id: string;
  provider?: string;
  domain: string;
  priceBand: string;
  topics: readonly string[];
}

/** The canonical JSON text the catalogue hash is computed over. */
export function canonicalCatalogue(items: readonly CatalogueItem[]): string {
  if (!Array.isArray(items)) throw new TypeError(`"items" expected an array, got ${typeof items}`);
  const rows = items.map((it, i) => {
    if (it === null || typeof it !== 'object') throw new TypeError(`"items[${i}]" expected an object`);
    for (const k of ['id', 'domain', 'priceBand'] as const) {
      if (typeof it[k] !== 'string') throw new TypeError(`"items[${i}].${k}" expected a string, got ${typeof it[k]}`);
    }
    if (it.provider !== undefined && typeof it.provider !== 'string') throw new TypeError(`"items[${i}].provider" expected a string`);
    if (!Array.isArray(it.topics) || it.topics.some((t: unknown) => typeof t !== 'string')) {
      throw new TypeError(`"items[${i}].topics" expected an array of strings`);
    }
    // Default sort compares UTF-16 code units: locale-independent, identical on every node.
    return [it.id, it.provider ?? '', it.domain, it.priceBand, [...it.topics].sort()];
  });
  return canonicalize({ format: CATALOGUE_FORMAT, items: rows });
}

/**
 * BLAKE2b-256 (hex) of the canonical catalogue; the policy's `catalogue.hash`.
 * Requires `await sodiumReady()` first.
 */
export function catalogueHash(items: readonly CatalogueItem[]): string {
  return sodium().crypto_generichash(32, new TextEncoder().encode(canonicalCatalogue(items)), null, 'hex');
}
