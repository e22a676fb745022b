// The cell mode's invariants (issue 4, "What done looks like" item 9): what a lock service must
// never do, checked after every step of a cell simulation (cell-cluster.ts). Each check is sound:
// it flags only what the design forbids, whatever the faults, so a violation is always a bug.
//
// - exclusive-lock: no replica's machine, at its applied state, shows two holders of a lock one
//   of which is exclusive; and no two sessions BELIEVE at one instant that they hold
//   conflicting locks on one path (a belief runs from the client receiving `acquired` or
//   `lock-granted` until it sends Release/Close, or until the session's ExpireSession is first
//   applied anywhere).
// - sequencer-order: on every replica, the grants of one path (from `acquired` results and
//   `lock-granted` events, in slot order) carry lock generations that never go back, and an
//   exclusive grant always starts a new generation.
// - session-lease: no ExpireSession takes effect whose (latest) proposal came less than
//   leaseMs/(1+x) of global time after a master acknowledged the session's KeepAlive while
//   holding a valid master lease (x: the clock-rate spread). Judged when the expiry is first
//   applied, not when proposed: a deposed master that still believes it is master may propose
//   expiries that can never be chosen. Why that bound is sound: the ack set the session's expiry to t + leaseMs
//   on the acking master's clock, which runs at most 1+x times global time; a later master can
//   only serve after the acker's lease ran out (single master lease), hence after the ack, and
//   it gives every session a full lease from its takeover.
// - digest: every replica's machine digest at every slot it applies, and of every state it
//   restores (its own state.db after a crash, a peer's snapshot), equals the first digest any
//   replica had at that slot: the state-level prefix check.
// - agreement, durable-quorum, persist-before-send, reproposal, prefix: the Multi-Paxos checks of
//   ../paxos-checks.ts, shared with the KV mode (`paxos` below).
// - events-agree: every replica's machine emits the same events at a slot (the reference stream
//   is the first replica's, kept per session in log order).
// - event-order, event-gap: a client's events against the log, in service.ts's terms. Events
//   for a session are numbered per master (eventSeq) and pushed after apply, in log order, on one
//   connection (FIFO). A client is "in sync" from a KeepAlive ack: its sync point is (the ack's
//   eventSeq n0, the master's applied slot a0 when it sent the ack). While in sync, within the
//   same epoch, the push numbered n0+k must be the k-th event of the reference stream for the
//   session after slot a0 (event-order; seqs must also strictly increase within an epoch), and a
//   KeepAlive ack that says no gap (isEventGap false, eventSeq n, master applied a) must find the
//   client holding event n and the reference stream holding exactly n-n0 events in (a0, a]
//   (event-gap: an event of a committed change that the client neither got nor was told it
//   missed). A client is told of a gap by isEventGap, by a non-consecutive eventSeq, or by a new
//   epoch (master-failover or any frame of a new ballot); it then re-syncs at its next ack.
// - ephemeral: when a session's end (CloseSession or ExpireSession) is applied on a replica, no
//   ephemeral file the session created is left there unless another session holds it open; and
//   after every turn, no ephemeral file on any replica lacks a live handle of a live session.
// - lock-delay: CloseSession releases the session's locks with no new lock-delay (and leaves it
//   holding and awaiting nothing); ExpireSession leaves each lost lock delayed at least its
//   handle's lock-delay past the entry's time.
// - stale-read: a read with maxStalenessMs M answered at global time t at slot A with stated
//   stalenessMs B needs B <= M, and the state at A must have been current at some global time
//   >= t - B: slots 1..A+1 were not yet all known chosen (a replica persisted each as chosen or
//   applied it) at t - B. (A state is current from when its whole prefix is chosen until the
//   next slot's is: slots may be chosen out of order, and a state never current is stale.) The answer must equal what the machine gave at slot A (first replica to apply it).
// - linearizable-read: a read without maxStalenessMs answered at slot A must come from a serving
//   master that holds its lease (by its own view), carry no stalenessMs, include every write
//   acknowledged to any client before the read was first sent (A >= each such write's slot), and
//   equal what the machine gave at slot A.

import { parseSequencer, type LockInfo, type LockMode, type MachineEvent } from '@paxlock/shared';
import { describeValue } from '../kv.ts';
import { PaxosChecks, type PaxosInvariant } from '../paxos-checks.ts';

export interface CellViolation {
  readonly invariant:
    | PaxosInvariant
    | 'exclusive-lock'
    | 'sequencer-order'
    | 'session-lease'
    | 'digest'
    | 'diverged'
    | 'events-agree'
    | 'event-order'
    | 'event-gap'
    | 'ephemeral'
    | 'lock-delay'
    | 'stale-read'
    | 'linearizable-read'
    | 'replica-assertion'
    /** The liveness phase's bounds (../liveness.ts), judged by cell-cluster.ts. */
    | 'liveness';
  readonly atMs: number;
  readonly detail: string;
}

/** Where a client's event stream is known to agree with the log. */
export interface EventSync {
  /** The eventSeq of the ack that synced the client. */
  readonly seq: number;
  /** The acking master's applied slot when it sent that ack. */
  readonly slot: number;
}

interface ReferenceEvent {
  readonly slot: number;
  readonly text: string;
}

/** A lock a client believes it holds. */
export interface Belief {
  readonly session: number;
  readonly handle: number;
  readonly path: string;
  readonly mode: LockMode;
}

function conflicts(a: LockMode, b: LockMode): boolean {
  return a === 'exclusive' || b === 'exclusive';
}

/** Per slot s, the first global time every slot 1..s had been reported. */
class PrefixTimes {
  readonly #seen = new Set<number>();
  readonly #at = new Map<number, number>();
  #through = 0;

  add(slot: number, atMs: number): void {
    if (slot <= this.#through) return;
    this.#seen.add(slot);
    while (this.#seen.has(this.#through + 1)) {
      this.#through++;
      this.#seen.delete(this.#through);
      this.#at.set(this.#through, atMs);
    }
  }

  at(slot: number): number | undefined {
    return this.#at.get(slot);
  }
}

export class CellCheckers {
  readonly violations: CellViolation[] = [];
  /** The Multi-Paxos checks, shared with the KV mode. */
  readonly paxos: PaxosChecks;
  /** Slot -> the events the first replica to apply it emitted (JSON), for events-agree. */
  readonly #slotEvents = new Map<number, string>();
  /** Session -> its events in log order (the reference stream). */
  readonly #sessionEvents = new Map<number, ReferenceEvent[]>();
  #now = 0;
  /** Per replica, per path: the last grant's generation and mode. */
  readonly #grants = new Map<
    number,
    Map<string, { slot: number; generation: number; mode: LockMode }[]>
  >();
  /** Per session: global time of the last KeepAlive ack sent by a master holding its lease. */
  readonly #leasedAckAt = new Map<number, number>();
  /** "replica:session#seq" of Acquires answered `acquired` -> the slot that answered. */
  readonly #answered = new Map<string, number>();
  readonly #expireProposed = new Map<
    number,
    { replica: number; atMs: number; ackAtMs: number | null }
  >();
  readonly #digestAt = new Map<number, { digest: string; replica: number }>();
  readonly #leaseFloorFactor: number;
  grantsChecked = 0;
  expiriesChecked = 0;
  digestsCompared = 0;
  restoresChecked = 0;
  eventsChecked = 0;
  noGapAcksChecked = 0;
  ephemeralChecks = 0;
  lockDelayChecks = 0;
  /** KeepAlive acks sent by a master whose lease had run out (allowed; reported in figures). */
  unleasedAcks = 0;
  /**
   * Slot s -> global time every slot up to s was known chosen (a replica persisted it as chosen
   * or applied it): from then on state s could be applied, and state s-1 was superseded. Slots
   * may be chosen out of order (a window of Accepts); a state is current only once its prefix is.
   */
  readonly #learned = new PrefixTimes();
  /** The same over quorum time: a majority had durably accepted (ground truth, for figures). */
  readonly #quorum = new PrefixTimes();
  /** Slot -> the read query's answer (JSON) on the first replica to apply the slot. */
  readonly #readStateAt = new Map<number, string>();
  linearizableReadsChecked = 0;
  staleReadsChecked = 0;
  maxStatedStalenessMs = 0;
  /** Stale reads whose state was superseded by a quorum's durable votes before t - B (allowed). */
  staleReadsPastQuorum = 0;

  readonly #checkStaleReads: boolean;

  constructor(options: {
    readonly clockSpread: number;
    readonly replicaCount: number;
    /** False: stale reads are counted but not judged (to show linearizable-read bites alone). */
    readonly checkStaleReads?: boolean;
  }) {
    this.#checkStaleReads = options.checkStaleReads ?? true;
    this.#leaseFloorFactor = 1 / (1 + options.clockSpread);
    this.paxos = new PaxosChecks({
      replicaCount: options.replicaCount,
      fail: (invariant, detail) => this.#fail(invariant, this.#now, detail),
      describe: describeValue,
      onChosen: (slot) => {
        this.#quorum.add(slot, this.#now);
      },
    });
  }

  /** A replica persisted `slot` as chosen or applied it at global time `atMs`. */
  onSlotLearned(slot: number, atMs: number): void {
    this.#learned.add(slot, atMs);
    this.#quorum.add(slot, atMs);
  }

  /** The read query's answer at `slot` on the first replica to apply it. */
  onReadState(slot: number, answer: string): void {
    if (!this.#readStateAt.has(slot)) this.#readStateAt.set(slot, answer);
  }

  /** A replica answered a client's read at global time `atMs` (stale-read, linearizable-read). */
  onReadAnswered(read: {
    readonly atMs: number;
    readonly replica: number;
    readonly slot: number;
    readonly answer: string;
    readonly stalenessMs: number | undefined;
    readonly maxStalenessMs: number | undefined;
    /** The highest slot of a write acknowledged to any client before the read was first sent. */
    readonly ackedSlotAtSend: number;
    /** The answering replica's service serves as master and its core says canServeReads. */
    readonly isServingLeased: boolean;
    /** The answering replica's clock rate against global time (for the report). */
    readonly clockRate: number;
  }): void {
    const { atMs, replica, slot } = read;
    const where = `replica ${replica} at slot ${slot}`;
    const state = this.#readStateAt.get(slot);
    const invariant = read.maxStalenessMs === undefined ? 'linearizable-read' : 'stale-read';
    if (state !== undefined && state !== read.answer) {
      this.#fail(
        invariant,
        atMs,
        `${where} answered ${read.answer}, but the machine at that slot gives ${state}`,
      );
      return;
    }
    if (read.maxStalenessMs === undefined) {
      this.linearizableReadsChecked++;
      if (read.stalenessMs !== undefined)
        this.#fail(
          invariant,
          atMs,
          `${where}: a linearizable read answered with stalenessMs ${read.stalenessMs}`,
        );
      else if (!read.isServingLeased)
        this.#fail(
          invariant,
          atMs,
          `${where}: a linearizable read answered by a replica that is not a serving master under its lease`,
        );
      else if (slot < read.ackedSlotAtSend)
        this.#fail(
          invariant,
          atMs,
          `${where}: a linearizable read misses a write acknowledged at slot ${read.ackedSlotAtSend} before the read was sent`,
        );
      return;
    }
    if (!this.#checkStaleReads) return;
    this.staleReadsChecked++;
    const bound = read.stalenessMs;
    if (bound === undefined) {
      this.#fail(invariant, atMs, `${where}: a stale read answered without stalenessMs`);
      return;
    }
    this.maxStatedStalenessMs = Math.max(this.maxStatedStalenessMs, bound);
    if (bound > read.maxStalenessMs) {
      this.#fail(
        invariant,
        atMs,
        `${where}: stated stalenessMs ${bound} > the asked maxStalenessMs ${read.maxStalenessMs}`,
      );
      return;
    }
    const next = this.#learned.at(slot + 1);
    if (next !== undefined && next < atMs - bound) {
      this.#fail(
        invariant,
        atMs,
        `${where} with stalenessMs ${bound}: slot ${slot + 1} was chosen at ${(next / 1000).toFixed(4)}s, before t - B = ${((atMs - bound) / 1000).toFixed(4)}s (state ${(atMs - next).toFixed(1)} ms stale; the replica's clock runs at ${read.clockRate.toFixed(4)} of global time)`,
      );
      return;
    }
    const quorum = this.#quorum.at(slot + 1);
    if (quorum !== undefined && quorum < atMs - bound) this.staleReadsPastQuorum++;
  }

  /** Global time of the event being handled (for the shared checks' reports). */
  setNow(atMs: number): void {
    this.#now = atMs;
  }

  #fail(invariant: CellViolation['invariant'], atMs: number, detail: string): void {
    this.violations.push({ invariant, atMs, detail });
  }

  onReplicaLocks(replica: number, atMs: number, locks: readonly LockInfo[]): void {
    for (const lock of locks) {
      const exclusive = lock.holders.filter((h) => h.mode === 'exclusive');
      if (exclusive.length > 0 && lock.holders.length > 1) {
        const who = lock.holders.map((h) => `${h.session}/${h.handle}:${h.mode}`).join(', ');
        this.#fail('exclusive-lock', atMs, `replica ${replica}: ${lock.path} held by ${who}`);
      }
    }
  }

  onBeliefs(atMs: number, beliefs: readonly Belief[]): void {
    for (let i = 0; i < beliefs.length; i++) {
      for (let j = i + 1; j < beliefs.length; j++) {
        const a = beliefs[i];
        const b = beliefs[j];
        if (a === undefined || b === undefined) continue;
        if (a.path !== b.path || a.session === b.session || !conflicts(a.mode, b.mode)) continue;
        this.#fail(
          'exclusive-lock',
          atMs,
          `sessions ${a.session} (${a.mode}) and ${b.session} (${b.mode}) both believe they hold ${a.path}`,
        );
      }
    }
  }

  /** A grant seen in a replica's apply output, in slot order. */
  onGrant(options: {
    readonly replica: number;
    readonly slot: number;
    readonly atMs: number;
    readonly sequencer: string;
    /** `session#seq` of an Acquire answered `acquired`; absent for a lock-granted event. */
    readonly request?: string;
  }): void {
    if (options.request !== undefined) {
      // A retried Acquire is answered from the session's record with the sequencer of the
      // original grant: a replayed answer, not a new grant.
      const key = `${options.replica}:${options.request}`;
      if (this.#answered.has(key)) return;
      this.#answered.set(key, options.slot);
    }
    this.grantsChecked++;
    const parsed = parseSequencer(options.sequencer);
    if (parsed === undefined) {
      this.#fail(
        'sequencer-order',
        options.atMs,
        `replica ${options.replica} slot ${options.slot}: malformed sequencer ${options.sequencer}`,
      );
      return;
    }
    let perPath = this.#grants.get(options.replica);
    if (perPath === undefined) {
      perPath = new Map();
      this.#grants.set(options.replica, perPath);
    }
    let grants = perPath.get(parsed.path);
    if (grants === undefined) {
      grants = [];
      perPath.set(parsed.path, grants);
    }
    const last = grants[grants.length - 1];
    if (last !== undefined) {
      // Shared holders join one generation; anything else must open a new one.
      const isJoin =
        parsed.lockGeneration === last.generation &&
        parsed.mode === 'shared' &&
        last.mode === 'shared';
      if (
        parsed.lockGeneration < last.generation ||
        (parsed.lockGeneration === last.generation && !isJoin)
      ) {
        this.#fail(
          'sequencer-order',
          options.atMs,
          `replica ${options.replica} slot ${options.slot}: ${parsed.path} granted ${parsed.mode} generation ${parsed.lockGeneration} after ${last.mode} generation ${last.generation}`,
        );
      }
    }
    grants.push({ slot: options.slot, generation: parsed.lockGeneration, mode: parsed.mode });
  }

  /**
   * A replica's machine went back to (its state.db after a crash) or jumped to (a peer's
   * snapshot) `slot`: what it applied above that is forgotten, since it applies those slots again.
   */
  onMachineRestored(replica: number, slot: number): void {
    for (const grants of this.#grants.get(replica)?.values() ?? []) {
      while ((grants[grants.length - 1]?.slot ?? -1) > slot) grants.pop();
    }
    for (const [key, at] of this.#answered)
      if (at > slot && key.startsWith(`${replica}:`)) this.#answered.delete(key);
  }

  onKeepAliveAck(options: {
    readonly session: number;
    readonly atMs: number;
    readonly hasLease: boolean;
  }): void {
    if (!options.hasLease) {
      this.unleasedAcks++;
      return;
    }
    this.#leasedAckAt.set(options.session, options.atMs);
  }

  /**
   * A master proposed ExpireSession. Not judged yet: a deposed master that still thinks itself
   * master may propose one that can never be chosen (its ballot is below every promise).
   */
  onExpireProposed(options: {
    readonly session: number;
    readonly replica: number;
    readonly atMs: number;
  }): void {
    this.#expireProposed.set(options.session, {
      replica: options.replica,
      atMs: options.atMs,
      ackAtMs: this.#leasedAckAt.get(options.session) ?? null,
    });
  }

  /** ExpireSession took effect (first apply anywhere); judged against its latest proposal. */
  onExpireApplied(options: {
    readonly session: number;
    readonly atMs: number;
    readonly leaseMs: number;
  }): void {
    this.expiriesChecked++;
    const proposal = this.#expireProposed.get(options.session);
    if (proposal === undefined || proposal.ackAtMs === null) return;
    // The latest proposal is the one most favourable to the cell (an earlier one may be what was
    // chosen), so flagging only it keeps the check sound. 1 ms of slack for turn timing.
    const floor = proposal.ackAtMs + options.leaseMs * this.#leaseFloorFactor - 1;
    if (proposal.atMs < floor) {
      this.#fail(
        'session-lease',
        options.atMs,
        `session ${options.session} expired by replica ${proposal.replica}'s proposal ${(proposal.atMs - proposal.ackAtMs).toFixed(1)} ms after a leased KeepAlive ack (lease ${options.leaseMs} ms)`,
      );
    }
  }

  /** A replica's digest at `slot`: after applying it, or of a state it restored there. */
  onDigest(options: {
    readonly replica: number;
    readonly slot: number;
    readonly atMs: number;
    readonly digest: string;
    /** 'restored': its own state.db after a crash; 'installed': a peer's snapshot. */
    readonly how?: 'applied' | 'restored' | 'installed';
  }): void {
    const how = options.how ?? 'applied';
    if (how !== 'applied') this.restoresChecked++;
    const seen = this.#digestAt.get(options.slot);
    if (seen === undefined) {
      this.#digestAt.set(options.slot, { digest: options.digest, replica: options.replica });
      return;
    }
    this.digestsCompared++;
    if (seen.digest !== options.digest) {
      this.#fail(
        'digest',
        options.atMs,
        `slot ${options.slot}: replica ${options.replica} (${how}) digest ${options.digest} != replica ${seen.replica} ${seen.digest}`,
      );
    }
  }

  /** The events one replica's machine emitted applying `slot`, in order. */
  onEntryEvents(replica: number, slot: number, events: readonly MachineEvent[]): void {
    const text = JSON.stringify(events);
    const seen = this.#slotEvents.get(slot);
    if (seen !== undefined) {
      if (seen !== text)
        this.#fail(
          'events-agree',
          this.#now,
          `replica ${replica} emitted ${text} at slot ${slot}, the first replica ${seen}`,
        );
      return;
    }
    this.#slotEvents.set(slot, text);
    for (const event of events) {
      let stream = this.#sessionEvents.get(event.session);
      if (stream === undefined) {
        stream = [];
        this.#sessionEvents.set(event.session, stream);
      }
      // First applies come in slot order (whoever first applies a slot applied the one before).
      stream.push({ slot, text: JSON.stringify(event) });
    }
  }

  /** The index in `stream` of the first event after `slot`. */
  #firstAfter(stream: readonly ReferenceEvent[], slot: number): number {
    let lo = 0;
    let hi = stream.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (stream[mid]!.slot <= slot) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * A synced client received the push numbered `seq` (its predecessor was seq-1). Returns the
   * slot through which it now has every event of its session (undefined if the push matches no
   * event of the log: an event-order violation).
   */
  onEventReceived(options: {
    readonly client: number;
    readonly session: number;
    readonly sync: EventSync;
    readonly seq: number;
    readonly event: MachineEvent;
  }): number | undefined {
    this.eventsChecked++;
    const stream = this.#sessionEvents.get(options.session) ?? [];
    const index =
      this.#firstAfter(stream, options.sync.slot) + (options.seq - options.sync.seq - 1);
    const expected = stream[index];
    const got = JSON.stringify(options.event);
    if (expected?.text !== got) {
      this.#fail(
        'event-order',
        this.#now,
        `client ${options.client} (session ${options.session}) got event #${options.seq} ${got}, but the log's event #${options.seq - options.sync.seq} after slot ${options.sync.slot} for the session is ${expected === undefined ? 'none' : `${expected.text} (slot ${expected.slot})`}`,
      );
      return undefined;
    }
    // Through its slot, unless another event of the same slot comes after it.
    return stream[index + 1]?.slot === expected.slot ? expected.slot - 1 : expected.slot;
  }

  /** A push arrived with an eventSeq not above the last in its epoch. */
  onEventReordered(client: number, session: number, seq: number, last: number): void {
    this.#fail(
      'event-order',
      this.#now,
      `client ${client} (session ${session}) got event #${seq} after #${last} from the same master`,
    );
  }

  /** A synced client got a KeepAlive ack saying no gap: eventSeq `ackSeq`, master applied `appliedAt`. */
  onNoGapAck(options: {
    readonly client: number;
    readonly session: number;
    readonly sync: EventSync;
    readonly ackSeq: number;
    readonly appliedAt: number;
    readonly seen: number;
  }): void {
    this.noGapAcksChecked++;
    const { sync } = options;
    const stream = this.#sessionEvents.get(options.session) ?? [];
    const count = this.#firstAfter(stream, options.appliedAt) - this.#firstAfter(stream, sync.slot);
    if (options.seen !== options.ackSeq || count !== options.ackSeq - sync.seq) {
      this.#fail(
        'event-gap',
        this.#now,
        `client ${options.client} (session ${options.session}) was told no gap at eventSeq ${options.ackSeq} (master applied ${options.appliedAt}) having seen #${options.seen}; since its sync (#${sync.seq}, slot ${sync.slot}) the log has ${count} events for the session, the master numbered ${options.ackSeq - sync.seq}`,
      );
    }
  }

  /** After a session's end was applied: ephemeral files it created that the replica still has. */
  onSessionEnded(replica: number, session: number, leftOver: readonly string[]): void {
    this.ephemeralChecks++;
    if (leftOver.length > 0)
      this.#fail(
        'ephemeral',
        this.#now,
        `replica ${replica}: session ${session} ended but its ephemeral ${leftOver.join(', ')} remain`,
      );
  }

  /** After a turn: ephemeral nodes with no live handle of a live session (should be none). */
  onOrphanEphemerals(replica: number, paths: readonly string[]): void {
    if (paths.length > 0)
      this.#fail(
        'ephemeral',
        this.#now,
        `replica ${replica}: ephemeral ${paths.join(', ')} outlive every handle and session`,
      );
  }

  /**
   * Locks a session held before its end was applied, and the locks after. `delayOf` is the lock's
   * delay owed (0 for a CloseSession); `timeMs` the machine's time after the entry.
   */
  onLocksAfterEnd(options: {
    readonly replica: number;
    readonly session: number;
    readonly kind: 'CloseSession' | 'ExpireSession';
    readonly held: readonly {
      readonly path: string;
      readonly delayMs: number;
      readonly before?: number;
    }[];
    readonly after: readonly LockInfo[];
    readonly timeMs: number;
  }): void {
    for (const lock of options.after) {
      if (
        lock.holders.some((h) => h.session === options.session) ||
        lock.waiters.some((w) => w.session === options.session)
      )
        this.#fail(
          'lock-delay',
          this.#now,
          `replica ${options.replica}: session ${options.session} still holds or awaits ${lock.path} after ${options.kind}`,
        );
    }
    for (const held of options.held) {
      this.lockDelayChecks++;
      const ends = options.after.find((l) => l.path === held.path)?.lockDelayEndsMs;
      if (options.kind === 'CloseSession' && ends !== undefined && ends > (held.before ?? -1))
        this.#fail(
          'lock-delay',
          this.#now,
          `replica ${options.replica}: CloseSession of session ${options.session} left ${held.path} under lock-delay until ${ends}`,
        );
      if (
        options.kind === 'ExpireSession' &&
        held.delayMs > 0 &&
        (ends ?? -1) < options.timeMs + held.delayMs
      )
        this.#fail(
          'lock-delay',
          this.#now,
          `replica ${options.replica}: ExpireSession of session ${options.session} left ${held.path} delayed until ${ends ?? 'never'}, not ${options.timeMs + held.delayMs}`,
        );
    }
  }

  fail(invariant: CellViolation['invariant'], atMs: number, detail: string): void {
    this.#fail(invariant, atMs, detail);
  }
}
