/**
 * Client (party) side of one secure-aggregation round — a state machine with no I/O.
 *
 * Phases (string-literal union; every change goes through `transitionTo`):
 *
 *   setup --start()--> advertised --server-keys--> shared --server-shares(+input)--> masked
 *     --consistency-request--> signed --unmask-request--> done
 *   any phase except done --(refusal of a coordinator protocol violation, or abort())--> aborted
 *
 * Each `on*` method consumes one coordinator message and returns the party's next message.
 *
 * Two kinds of refusal:
 * - The message is not acceptable *as a message* (malformed, wrong federation/round = replay,
 *   bad coordinator signature, out of phase, addressed to someone else): throws SecAggError and
 *   changes no state, so the genuine message can still arrive.
 * - The message is authentic but asks for something the protocol forbids (a malicious
 *   coordinator): the client moves to `aborted`, wipes its secrets and throws code ABORTED. These
 *   are: advertisement lists that are forged, duplicated or do not contain our keys; too few
 *   neighbours left (< t share holders); a survivor list that is disconnected in the neighbour
 *   graph (partial sums would leak); survivor lists that differ from the one we signed or
 *   list a party that never shared keys with us; fewer than t valid survivor signatures; a party
 *   requested both as alive (self-mask share) and dropped (key share); a self-mask share of a
 *   non-survivor or a key share of a survivor.
 *
 * Invariant (Bonawitz et al. 2017 §4, "never both shares"): for any peer v, the client reveals at
 * most one of {share of b_v, share of s_sk_v}, and only once per round, since unmasking happens
 * once and the secrets are wiped afterwards.
 */
import { abytes, au32 } from '../util/check';
import { wipe } from '../crypto/hash';
import { MaskAccumulator, type MaskTerm } from '../crypto/prg';
import { shamirSplit } from '../crypto/shamir';
import { randomBytes } from '../crypto/sodium';
import { ED25519_SECRET_KEY_LENGTH, ed25519Verify } from '../crypto/sign';
import { x25519Keygen, type X25519KeyPair } from '../crypto/x25519';
import { asInvalidArgument, SecAggError } from './errors';
import { assertPartyId, isConnectedWithin } from './graph';
import {
  signMessage,
  survivorListBytes,
  validateShape,
  verifyMessage,
  type AdvertiseKeys,
  type ConsistencyRequest,
  type ConsistencySignature,
  type ClientMessage,
  type MaskedInput,
  type PlainShare,
  type ServerKeys,
  type ServerMessage,
  type ServerShares,
  type ShareKeys,
  type UnmaskRequest,
  type UnmaskShares,
} from './messages';
import { RoundContext, type RoundInfo } from './round';

export type ClientPhase = 'setup' | 'advertised' | 'shared' | 'masked' | 'signed' | 'done' | 'aborted';

export interface ClientIdentity {
  partyId: string;
  /** Ed25519 secret key (libsodium 64-byte format) of the party's identity */
  secretKey: Uint8Array;
}

export interface SecAggClientOptions extends RoundInfo {
  identity: ClientIdentity;
  /** Ed25519 public key of the coordinator, which signs every server message */
  coordinatorPublicKey: Uint8Array;
  /** CSPRNG for keys, seeds and share polynomials (default libsodium randombytes_buf) */
  rng?: (n: number) => Uint8Array;
  /** receives "A -> B" phase changes and refusal reasons (never secrets) */
  log?: (line: string) => void;
}

interface PeerKeys {
  cPk: Uint8Array;
  sPk: Uint8Array;
}

export class SecAggClient {
  readonly ctx: RoundContext;
  readonly partyId: string;
  private phaseValue: ClientPhase = 'setup';
  private readonly identitySk: Uint8Array;
  private readonly coordinatorPk: Uint8Array;
  private readonly rng: (n: number) => Uint8Array;
  private readonly log: (line: string) => void;
  private abortReason: string | undefined;

  // secrets (wiped on done/aborted)
  private cKeys: X25519KeyPair | undefined;
  private sKeys: X25519KeyPair | undefined;
  private selfSeed: Uint8Array | undefined;
  private ownShares: { b: Uint8Array; s: Uint8Array } | undefined;
  /** shares received from neighbours: owner -> (share of b_owner, share of s_sk_owner) */
  private readonly received = new Map<string, { b: Uint8Array; s: Uint8Array }>();

  // public round state
  private readonly peerKeys = new Map<string, PeerKeys>();
  /** neighbours that completed share-keys (their ciphertext reached us): our pair-mask partners */
  private sharers: string[] = [];
  private signedSurvivors: string[] | undefined;

  constructor(opts: SecAggClientOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
    this.ctx = new RoundContext(opts);
    if (typeof opts.identity !== 'object' || opts.identity === null) throw new TypeError('"identity" expected {partyId, secretKey}');
    this.partyId = assertPartyId('identity.partyId', opts.identity.partyId);
    abytes('identity.secretKey', opts.identity.secretKey, ED25519_SECRET_KEY_LENGTH);
    if (!this.ctx.has(this.partyId)) throw new RangeError(`"identity.partyId" ${JSON.stringify(this.partyId)} is not in "peers"`);
    const pk = opts.identity.secretKey.subarray(32);
    const listed = this.ctx.peers.get(this.partyId)!;
    if (pk.length !== listed.length || pk.some((b, i) => b !== listed[i])) {
      throw new RangeError('"identity.secretKey" does not match the public key listed for this party in "peers"');
    }
    this.identitySk = opts.identity.secretKey;
    this.coordinatorPk = abytes('coordinatorPublicKey', opts.coordinatorPublicKey, 32);
    this.rng = opts.rng ?? randomBytes;
    this.log = opts.log ?? (() => undefined);
  }

  get phase(): ClientPhase {
    return this.phaseValue;
  }

  /** Why the client aborted (undefined unless phase is 'aborted'). */
  get abortedBecause(): string | undefined {
    return this.abortReason;
  }

  /** Pair-mask partners of this round (neighbours that shared keys), known from phase 'shared' on. */
  get maskPartners(): readonly string[] {
    return this.sharers;
  }

  private transitionTo(from: readonly ClientPhase[], to: ClientPhase): void {
    if (!from.includes(this.phaseValue)) {
      throw new SecAggError('FAILED_PRECONDITION', `party ${this.partyId}: cannot go ${this.phaseValue} -> ${to} (allowed from ${from.join(', ')})`);
    }
    this.log(`secagg client ${this.partyId} round ${this.ctx.round}: ${this.phaseValue} -> ${to}`);
    this.phaseValue = to;
  }

  private expectPhase(p: ClientPhase, what: string): void {
    if (this.phaseValue !== p) {
      throw new SecAggError('FAILED_PRECONDITION', `party ${this.partyId}: ${what} not accepted in phase ${this.phaseValue} (expected phase ${p})`);
    }
  }

  /** Refuses a coordinator protocol violation: wipe, go to aborted, throw ABORTED. */
  private refuse(reason: string): never {
    this.abort(reason);
    throw new SecAggError('ABORTED', `party ${this.partyId} refused round ${this.ctx.round}: ${reason}`);
  }

  /** Leaves the round (e.g. the coordinator announced an abort); wipes every secret. Idempotent. */
  abort(reason: string): void {
    if (this.phaseValue === 'aborted' || this.phaseValue === 'done') return;
    this.transitionTo(['setup', 'advertised', 'shared', 'masked', 'signed'], 'aborted');
    this.abortReason = reason;
    this.log(`secagg client ${this.partyId} round ${this.ctx.round}: aborted: ${reason}`);
    this.wipeSecrets();
  }

  private wipeSecrets(): void {
    wipe(this.cKeys?.secretKey, this.sKeys?.secretKey, this.selfSeed, this.ownShares?.b, this.ownShares?.s);
    for (const r of this.received.values()) wipe(r.b, r.s);
    this.received.clear();
    this.cKeys = this.sKeys = this.selfSeed = this.ownShares = undefined;
  }

  /** Message-level checks shared by every coordinator message; throw without changing state. */
  private acceptServer(m: unknown, phase: ClientPhase, type: ServerMessage['type']): void {
    validateShape(m);
    if (m.type !== type) {
      throw new SecAggError('FAILED_PRECONDITION', `party ${this.partyId}: expected ${type}, got ${m.type} in phase ${this.phaseValue}`);
    }
    this.expectPhase(phase, type);
    if (m.federationId !== this.ctx.federationId || m.round !== this.ctx.round) {
      throw new SecAggError('UNAUTHENTICATED', `${type} is for federation ${JSON.stringify(m.federationId)} round ${m.round}, this is ${JSON.stringify(this.ctx.federationId)} round ${this.ctx.round} (replayed or misrouted)`);
    }
    if ('recipient' in m && m.recipient !== this.partyId) {
      throw new SecAggError('INVALID_ARGUMENT', `${type} is addressed to ${JSON.stringify(m.recipient)}, not to ${JSON.stringify(this.partyId)}`);
    }
    if (!verifyMessage(m, this.coordinatorPk, this.ctx.runId)) {
      throw new SecAggError('UNAUTHENTICATED', `${type}: coordinator signature does not verify`);
    }
  }

  private base() {
    return { federationId: this.ctx.federationId, round: this.ctx.round, sender: this.partyId };
  }

  /** setup -> advertised: draws c and s X25519 key pairs and the self-mask seed b_u. */
  start(): AdvertiseKeys {
    this.expectPhase('setup', 'start');
    const cKeys = x25519Keygen(this.rng);
    const sKeys = x25519Keygen(this.rng);
    const b = abytes('rng output', this.rng(32), 32);
    this.transitionTo(['setup'], 'advertised');
    this.cKeys = cKeys;
    this.sKeys = sKeys;
    this.selfSeed = b;
    return signMessage<AdvertiseKeys>(
      { type: 'advertise-keys', ...this.base(), cPk: cKeys.publicKey, sPk: sKeys.publicKey, selfMaskCommitment: this.ctx.selfMaskCommitment(this.partyId, b) },
      this.identitySk,
      this.ctx.runId,
    );
  }

  /**
   * advertised -> shared: verifies our own and every neighbour's advertisement, then Shamir-splits
   * b_u and s_sk_u (t-of-|N[u]|) and encrypts each advertising neighbour's shares for it.
   */
  onServerKeys(m: ServerKeys): ShareKeys {
    this.acceptServer(m, 'advertised', 'server-keys');
    const keys = new Map<string, PeerKeys>();
    const seenKeys = new Set<string>();
    const senders = new Set<string>();
    for (const a of m.advertisements) {
      if (a.federationId !== this.ctx.federationId || a.round !== this.ctx.round) this.refuse(`advertisement of ${a.sender} is for another federation or round`);
      const pk = this.ctx.peers.get(a.sender);
      if (!pk) this.refuse(`advertisement from unknown party ${JSON.stringify(a.sender)}`);
      if (senders.has(a.sender)) this.refuse(`two advertisements from ${a.sender}`);
      senders.add(a.sender);
      // Only our own and our neighbours' keys are ever used; others are not verified (SecAgg+ saves
      // n - k signature checks per party). A forged non-neighbour entry cannot affect us.
      if (a.sender !== this.partyId && !this.ctx.isNeighbour(this.partyId, a.sender)) continue;
      if (!verifyMessage(a, pk, this.ctx.runId)) this.refuse(`advertisement of ${a.sender} has an invalid signature`);
      const hexS = Buffer.from(a.sPk).toString('hex');
      const hexC = Buffer.from(a.cPk).toString('hex');
      if (seenKeys.has(hexS) || seenKeys.has(hexC) || hexS === hexC) this.refuse(`advertisement of ${a.sender} reuses a public key`);
      seenKeys.add(hexS);
      seenKeys.add(hexC);
      keys.set(a.sender, { cPk: a.cPk, sPk: a.sPk });
    }
    const mine = keys.get(this.partyId);
    const cKeys = this.cKeys!;
    const sKeys = this.sKeys!;
    if (!mine || !eq(mine.cPk, cKeys.publicKey) || !eq(mine.sPk, sKeys.publicKey)) this.refuse('our own advertisement is missing or altered');
    const closedAlive = this.ctx.closed(this.partyId).filter((v) => keys.has(v));
    if (closedAlive.length < this.ctx.params.threshold) {
      this.refuse(`only ${closedAlive.length} of our share holders advertised keys, fewer than t=${this.ctx.params.threshold}`);
    }
    const xs = this.ctx.closed(this.partyId).map((v) => this.ctx.sharePoint(v));
    const holders = this.ctx.closed(this.partyId);
    const bShares = shamirSplit(this.selfSeed!, this.ctx.params.threshold, xs, this.rng);
    const sShares = shamirSplit(sKeys.secretKey, this.ctx.params.threshold, xs, this.rng);
    const out: { party: string; ciphertext: Uint8Array }[] = [];
    for (let i = 0; i < holders.length; i++) {
      const v = holders[i];
      if (v === this.partyId) {
        this.ownShares = { b: bShares[i].y, s: sShares[i].y };
        continue;
      }
      const pk = keys.get(v);
      if (pk) {
        const key = this.ctx.shareKey(cKeys.secretKey, this.partyId, v, pk.cPk);
        out.push({ party: v, ciphertext: this.ctx.sealShares(key, this.partyId, v, bShares[i].y, sShares[i].y, this.rng) });
        wipe(key);
      }
      wipe(bShares[i].y, sShares[i].y);
    }
    for (const [id, k] of keys) this.peerKeys.set(id, k);
    this.transitionTo(['advertised'], 'shared');
    return signMessage<ShareKeys>({ type: 'share-keys', ...this.base(), shares: out }, this.identitySk, this.ctx.runId);
  }

  /**
   * shared -> masked: decrypts the neighbours' shares, then computes
   * y_u = x_u + PRG(b_u) + sum_{v in S, v > u} PRG(s_uv) - sum_{v in S, v < u} PRG(s_uv) mod 2^b,
   * S = neighbours whose shares reached us. `input` entries must be < 2^bits; it is not modified.
   */
  onServerShares(m: ServerShares, input: Uint32Array): MaskedInput {
    this.acceptServer(m, 'shared', 'server-shares');
    asInvalidArgument(() => au32('input', input, this.ctx.vectorLength));
    const bits = this.ctx.params.bits;
    if (bits < 32) {
      const lim = 2 ** bits;
      for (let i = 0; i < input.length; i++) {
        if (input[i] >= lim) throw new SecAggError('INVALID_ARGUMENT', `"input"[${i}] = ${input[i]} is not below 2^${bits}`);
      }
    }
    const got = new Map<string, { b: Uint8Array; s: Uint8Array }>();
    const fail = (reason: string): never => {
      for (const r of got.values()) wipe(r.b, r.s);
      this.refuse(reason);
    };
    for (const s of m.shares) {
      const v = s.party;
      if (!this.ctx.isNeighbour(this.partyId, v)) fail(`shares from ${JSON.stringify(v)}, which is not our neighbour`);
      const pk = this.peerKeys.get(v);
      if (!pk) fail(`shares from ${v}, which did not advertise keys`);
      if (got.has(v)) fail(`two share ciphertexts from ${v}`);
      const key = this.ctx.shareKey(this.cKeys!.secretKey, this.partyId, v, pk!.cPk);
      const opened = this.ctx.openShares(key, v, this.partyId, s.ciphertext);
      wipe(key);
      if (!opened) fail(`share ciphertext from ${v} does not decrypt (forged or misrouted)`);
      got.set(v, { b: opened!.bShare, s: opened!.sShare });
    }
    if (got.size + 1 < this.ctx.params.threshold) {
      fail(`only ${got.size} neighbours shared keys with us; with ourselves that is fewer than t=${this.ctx.params.threshold}`);
    }
    const acc = new MaskAccumulator(input.length, bits);
    acc.set(input);
    const sharers = [...got.keys()].sort();
    // y_u = x_u + PRG(b_u) + sum_v sign(u, v) * PRG(s_uv), all masks in one cache-blocked pass
    const pairTerms: MaskTerm[] = [];
    try {
      for (const v of sharers) {
        const seed = this.ctx.pairSeed(this.sKeys!.secretKey, this.partyId, v, this.peerKeys.get(v)!.sPk);
        pairTerms.push({ seed, sign: RoundContext.pairSign(this.partyId, v) });
      }
      acc.addMasks([{ seed: this.selfSeed!, sign: 1 }, ...pairTerms]);
    } finally {
      for (const t of pairTerms) wipe(t.seed);
    }
    const y = acc.read();
    acc.wipe(); // it held x plus partial masks
    for (const [v, r] of got) this.received.set(v, r);
    this.sharers = sharers;
    this.transitionTo(['shared'], 'masked');
    return signMessage<MaskedInput>({ type: 'masked-input', ...this.base(), bits, vector: y }, this.identitySk, this.ctx.runId);
  }

  /** masked -> signed: checks the survivor list and signs it. */
  onConsistencyRequest(m: ConsistencyRequest): ConsistencySignature {
    this.acceptServer(m, 'masked', 'consistency-request');
    const survivors = m.survivors;
    for (let i = 1; i < survivors.length; i++) if (!(survivors[i - 1] < survivors[i])) this.refuse('survivor list is not sorted');
    for (const v of survivors) if (!this.ctx.has(v)) this.refuse(`survivor list names unknown party ${JSON.stringify(v)}`);
    if (!survivors.includes(this.partyId)) this.refuse('survivor list omits us although our masked input was sent');
    for (const v of survivors) {
      if (this.ctx.isNeighbour(this.partyId, v) && !this.sharers.includes(v)) this.refuse(`survivor list names ${v}, which never shared keys with us`);
    }
    const mineAlive = this.ctx.closed(this.partyId).filter((v) => survivors.includes(v));
    if (mineAlive.length < this.ctx.params.threshold) {
      this.refuse(`only ${mineAlive.length} of our share holders survive, fewer than t=${this.ctx.params.threshold}`);
    }
    if (!isConnectedWithin(this.ctx.neighbours, new Set(survivors))) {
      this.refuse('the survivors are not connected in the neighbour graph: the coordinator would learn partial sums');
    }
    this.signedSurvivors = [...survivors];
    this.transitionTo(['masked'], 'signed');
    return signMessage<ConsistencySignature>({ type: 'consistency-signature', ...this.base(), survivors: [...survivors] }, this.identitySk, this.ctx.runId);
  }

  /**
   * signed -> done: verifies the survivors' signatures over the list we signed, then reveals
   * shares of b_v for requested survivors and of s_sk_v for requested dropped neighbours, never
   * both for one v. Wipes every secret afterwards.
   */
  onUnmaskRequest(m: UnmaskRequest): UnmaskShares {
    this.acceptServer(m, 'signed', 'unmask-request');
    const survivors = this.signedSurvivors!;
    if (m.survivors.length !== survivors.length || m.survivors.some((v, i) => v !== survivors[i])) {
      this.refuse('survivor list differs from the one we signed (inconsistent views)');
    }
    const alive = new Set(survivors);
    const signers = new Set<string>();
    for (const s of m.signatures) {
      if (!alive.has(s.signer)) this.refuse(`signature from ${s.signer}, which is not a survivor`);
      if (signers.has(s.signer)) this.refuse(`two signatures from ${s.signer}`);
      if (!ed25519Verify(s.signature, survivorListBytes(this.ctx.federationId, this.ctx.runId, this.ctx.round, s.signer, survivors), this.ctx.peers.get(s.signer)!)) {
        this.refuse(`signature of ${s.signer} does not verify over our survivor list (inconsistent views)`);
      }
      signers.add(s.signer);
    }
    if (signers.size < this.ctx.params.threshold) this.refuse(`only ${signers.size} survivors signed the list, fewer than t=${this.ctx.params.threshold}`);
    const keyOf = new Set(m.keySharesOf);
    for (const v of m.selfMaskSharesOf) {
      if (keyOf.has(v)) this.refuse(`asked for both the self-mask share and the key share of ${v}`);
      if (!alive.has(v)) this.refuse(`asked for the self-mask share of ${v}, which is not on the survivor list`);
      if (v !== this.partyId && !this.received.has(v)) this.refuse(`asked for the self-mask share of ${v}, which we do not hold`);
    }
    for (const v of m.keySharesOf) {
      if (alive.has(v)) this.refuse(`asked for the key share of ${v}, which is listed alive and dropped at once`);
      if (!this.received.has(v)) this.refuse(`asked for the key share of ${v}, which we do not hold`);
    }
    const selfMaskShares: PlainShare[] = m.selfMaskSharesOf.map((v) => ({ owner: v, share: (v === this.partyId ? this.ownShares!.b : this.received.get(v)!.b).slice() }));
    const keyShares: PlainShare[] = m.keySharesOf.map((v) => ({ owner: v, share: this.received.get(v)!.s.slice() }));
    const out = signMessage<UnmaskShares>({ type: 'unmask-shares', ...this.base(), selfMaskShares, keyShares }, this.identitySk, this.ctx.runId);
    this.transitionTo(['signed'], 'done');
    this.wipeSecrets();
    return out;
  }

  /** Dispatches a coordinator message to the matching handler (input needed for server-shares). */
  handle(m: ServerMessage, input?: Uint32Array): ClientMessage {
    validateShape(m);
    switch (m.type) {
      case 'server-keys':
        return this.onServerKeys(m);
      case 'server-shares':
        if (!input) throw new SecAggError('INVALID_ARGUMENT', 'server-shares needs the input vector');
        return this.onServerShares(m, input);
      case 'consistency-request':
        return this.onConsistencyRequest(m);
      case 'unmask-request':
        return this.onUnmaskRequest(m);
      default:
        throw new SecAggError('INVALID_ARGUMENT', `a client does not accept ${(m as { type: string }).type} messages`);
    }
  }
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
