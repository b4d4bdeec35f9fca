/**
 * The in-memory form of a node's imported data: what `fedbridge node import` stores in the data
 * dir (participant-node/data/store.ts) and what training, evaluation and serving read.
 *
 * Indices, not ids, index everything after import: item index = position in the catalogue (the
 * catalogue order is the policy's, identical on every node, and is the row order of the shared
 * item embedding), user index = position in `users`.
 */
import type { ItemFeatures, UserFeatures } from '../../shared/data/vocab';

export interface ItemRecord extends ItemFeatures {
  id: string;
  /** the party offering the item (items.csv `provider`; "" when the catalogue has no such column) */
  provider?: string;
}

export interface UserRecord extends UserFeatures {
  id: string;
}

export interface NodeDataset {
  /** the party that owns these users */
  party: string;
  /** the whole shared catalogue, in catalogue order */
  items: ItemRecord[];
  /** BLAKE2b-256 hex of the canonical catalogue (shared/data/catalogue.ts) */
  catalogueHash: string;
  users: UserRecord[];
  /** interactions as parallel arrays, sorted by (user, timestamp) */
  interactions: {
    user: Uint32Array;
    item: Uint32Array;
    timestamp: Float64Array;
  };
}
