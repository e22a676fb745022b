// The simulator's invariants, checked after every step (issue 2, section 3). Each check is
// incremental, so checking after every event costs little:
//
// - agreement: no slot is ever chosen with two values. The ground truth is computed from the
//   acceptors' durable votes (a value is chosen once a majority has durably accepted it in one
//   ballot) and compared with every value any replica learns, persists as chosen, or applies.
// - prefix: every replica applies slots in order, each once, and its applied history is a
//   prefix of one history (a running hash at each slot equals the reference hash at that slot,
//   which also covers snapshot installs).
// - exactly-once: no command takes effect twice in any replica's machine or in the reference.
// - single lease: at no global instant do two live replicas both believe they hold a valid
//   master lease (each replica's local leaseUntil is compared with its own clock's reading).
// - acknowledged writes: a write acknowledged to a client is in the history at the slot its
//   acknowledgement names.
// - linearizable lease reads: per key, writes are ordered by their slot (the only order the
//   state machine can show); each operation's position must respect real time: a read returns a
//   value at least as new as every operation that completed before it began, and a write lands
//   above every operation that completed before it began.
//
// The liveness checks live in the cluster, which knows the phases.

import type { Ballot } from '../src/paxos/ballot.ts';
import { compareBallots } from '../src/paxos/ballot.ts';
import type { DurableEntry } from '../src/paxos/durable.ts';
import type { AcceptedEntry, ChosenEntry, Message, SlotValue } from '../src/paxos/messages.ts';
import type { ReplicaId } from '../src/paxos/ports.ts';
import { isSlotValueEqual } from '../src/storage/memory-store.ts';
import { decodePut, describeValue, KvMachine, type KvResult, type KvSnapshot } from './kv.ts';

export type Invariant =
  | 'agreement'
  | 'durable-quorum'
  | 'persist-before-send'
  | 'reproposal'
  | 'prefix'
  | 'exactly-once'
  | 'single-lease'
  | 'acknowledged-write'
  | 'linearizable-read'
  | 'linearizable-write'
  | 'liveness'
  | 'replica-assertion';

export interface Violation {
  readonly invariant: Invariant;
  readonly detail: string;
  readonly at: number;
}

interface HistoryEntry {
  readonly value: SlotValue;
  readonly source: string;
}

/** An operation that completed, as the linearizability check keeps it, per key. */
interface CompletedOps {
  /** Completion times, non-decreasing (operations are checked as they complete). */
  readonly doneAt: number[];
  /** Running maximum of the slot each completed operation observed or wrote. */
  readonly maxSlot: number[];
}

export class Checkers {
  violation: Violation | null = null;
  readonly #majority: number;
  /** Slot -> the chosen value, from ground truth or the first replica that learned it. */
  readonly #history = new Map<number, HistoryEntry>();
  /** Slot -> ballot "round.replica" -> the value and the acceptors that durably voted for it. */
  readonly #votes = new Map<number, Map<string, { value: SlotValue; voters: Set<ReplicaId> }>>();
  /** The reference machine applies the history in slot order as it becomes contiguous. */
  readonly #reference = new KvMachine();
  /** Slot -> reference hash after applying that slot (index 0 is the empty history). */
  readonly #referenceHash: number[] = [0];
  /** "clientId#seq" -> the slot and key where that command took effect in the reference. */
  readonly #effects = new Map<string, { slot: number; key: string }>();
  /** Per replica: "clientId#seq" -> effect slot, reset when its machine is restored. */
  readonly #replicaEffects = new Map<ReplicaId, Map<string, number>>();
  readonly #completed = new Map<string, CompletedOps>();
  /** "candidate|ballot" -> acceptor -> the promise it delivered to that candidate. */
  readonly #promises = new Map<string, Map<ReplicaId, Extract<Message, { type: 'promise' }>>>();
  /** "master|ballot|slot" of every Accept already judged, so retransmissions are judged once. */
  readonly #judgedAccepts = new Set<string>();
  #now = 0;
  counts = { chosenSlots: 0, readsChecked: 0, writesChecked: 0, leaseChecks: 0 };

  constructor(replicaCount: number) {
    this.#majority = Math.floor(replicaCount / 2) + 1;
  }

  hasViolation(): boolean {
    return this.violation !== null;
  }

  setNow(now: number): void {
    this.#now = now;
  }

  fail(invariant: Invariant, detail: string): void {
    if (this.violation === null) this.violation = { invariant, detail, at: this.#now };
  }

  get referenceApplied(): number {
    return this.#reference.applied;
  }

  /** Durable votes: call with every acceptance a replica's persist() made durable. */
  onDurableAccepts(replica: ReplicaId, accepted: readonly AcceptedEntry[]): void {
    for (const entry of accepted) {
      let bySlot = this.#votes.get(entry.slot);
      if (bySlot === undefined) {
        bySlot = new Map();
        this.#votes.set(entry.slot, bySlot);
      }
      const key = ballotKey(entry.ballot);
      let vote = bySlot.get(key);
      if (vote === undefined) {
        vote = { value: entry.value, voters: new Set() };
        bySlot.set(key, vote);
      } else if (!isSlotValueEqual(vote.value, entry.value)) {
        this.fail(
          'agreement',
          `slot ${entry.slot} ballot ${key}: two values accepted in one ballot: ${describeValue(vote.value)} and ${describeValue(entry.value)} (r${replica})`,
        );
        return;
      }
      vote.voters.add(replica);
      if (vote.voters.size === this.#majority) {
        this.#learn(entry.slot, vote.value, `a quorum durably voted in ballot ${key} for`);
      }
    }
  }

  /** A replica learned (persisted as chosen) or applied a value at a slot. */
  onLearned(replica: ReplicaId, entry: ChosenEntry, how: 'persisted chosen' | 'applied'): void {
    this.#learn(entry.slot, entry.value, `r${replica} ${how}`);
  }

  #learn(slot: number, value: SlotValue, source: string): void {
    const known = this.#history.get(slot);
    if (known === undefined) {
      // The first replica to treat a value as chosen must find a majority that durably voted for
      // it in one ballot: an acceptor answers only after its vote is on disk, so anything less
      // means a vote was counted that a crash could take back.
      if (!this.#hasDurableQuorum(slot, value)) {
        this.fail(
          'durable-quorum',
          `slot ${slot}: ${source} ${describeValue(value)} as chosen, but no majority has durably accepted it in any one ballot (${this.#describeVotes(slot)})`,
        );
      }
      this.#history.set(slot, { value, source });
      this.counts.chosenSlots++;
      this.#advanceReference();
      return;
    }
    if (!isSlotValueEqual(known.value, value)) {
      this.fail(
        'agreement',
        `slot ${slot} chosen with two values: ${describeValue(known.value)} (${known.source}) and ${describeValue(value)} (${source})`,
      );
    }
  }

  #hasDurableQuorum(slot: number, value: SlotValue): boolean {
    const bySlot = this.#votes.get(slot);
    if (bySlot === undefined) return false;
    for (const vote of bySlot.values()) {
      if (vote.voters.size >= this.#majority && isSlotValueEqual(vote.value, value)) return true;
    }
    return false;
  }

  #describeVotes(slot: number): string {
    const bySlot = this.#votes.get(slot);
    if (bySlot === undefined) return 'no durable votes';
    return [...bySlot.entries()]
      .map(
        ([ballot, vote]) =>
          `ballot ${ballot}: ${describeValue(vote.value)} by ${[...vote.voters].map((r) => `r${r}`).join(',')}`,
      )
      .join('; ');
  }

  #advanceReference(): void {
    for (;;) {
      const next = this.#history.get(this.#reference.applied + 1);
      if (next === undefined) return;
      const slot = this.#reference.applied + 1;
      const results = this.#reference.applyEntry({ slot, value: next.value });
      this.#referenceHash[slot] = this.#reference.hash;
      if (next.value.type === 'batch') {
        next.value.commands.forEach((command, i) => {
          const result = results[i];
          if (result?.status !== 'applied') return;
          const id = identity(command.clientId, command.seq);
          if (this.#effects.has(id)) {
            this.fail(
              'exactly-once',
              `command ${id} took effect twice in the reference history (slot ${slot})`,
            );
          }
          this.#effects.set(id, { slot, key: keyOfPayload(command.payload) });
        });
      }
    }
  }

  /** A promise reached its candidate (the candidate may use it from its next turn on). */
  onPromiseDelivered(
    candidate: ReplicaId,
    acceptor: ReplicaId,
    promise: Extract<Message, { type: 'promise' }>,
  ): void {
    const key = `${candidate}|${ballotKey(promise.ballot)}`;
    let byAcceptor = this.#promises.get(key);
    if (byAcceptor === undefined) {
      byAcceptor = new Map();
      this.#promises.set(key, byAcceptor);
    }
    byAcceptor.set(acceptor, promise);
  }

  /**
   * Paxos's P2c, on the wire: a master's first Accept for a slot in its ballot must carry a value
   * that SOME majority of the promises it holds (its own acceptor included) allows — the value of
   * the highest ballot accepted among them, or the chosen value one of them reports, or anything
   * if none of them accepted a value there. A value the history already knows chosen is always
   * allowed.
   */
  onAcceptSent(options: {
    readonly master: ReplicaId;
    readonly accept: Extract<Message, { type: 'accept' }>;
    readonly own: DurableEntry | undefined;
  }): void {
    const { master, accept } = options;
    const judged = `${master}|${ballotKey(accept.ballot)}|${accept.slot}`;
    if (this.#judgedAccepts.has(judged)) return;
    this.#judgedAccepts.add(judged);
    const known = this.#history.get(accept.slot);
    if (known !== undefined && isSlotValueEqual(known.value, accept.value)) return;
    const promises = this.#promises.get(`${master}|${ballotKey(accept.ballot)}`);
    if (promises === undefined) return; // Not a ballot this checker saw being won (a master re-asserting).
    type Report = {
      readonly from: ReplicaId;
      readonly ballot: Ballot | null;
      readonly value: SlotValue | null;
      readonly isChosen: boolean;
    };
    const reports: Report[] = [];
    for (const [from, promise] of promises) {
      if (accept.slot < promise.slotFirst) return; // The master knew this slot chosen before it ran.
      const chosen = promise.chosen.find((e) => e.slot === accept.slot);
      const accepted = promise.accepted.find((e) => e.slot === accept.slot);
      if (chosen !== undefined)
        reports.push({ from, ballot: null, value: chosen.value, isChosen: true });
      else if (accepted !== undefined)
        reports.push({ from, ballot: accepted.ballot, value: accepted.value, isChosen: false });
      else reports.push({ from, ballot: null, value: null, isChosen: false });
    }
    const own = options.own;
    if (!promises.has(master)) {
      if (own?.isChosen === true)
        reports.push({ from: master, ballot: null, value: own.value, isChosen: true });
      else if (own !== undefined && compareBallots(own.ballot, accept.ballot) < 0)
        reports.push({ from: master, ballot: own.ballot, value: own.value, isChosen: false });
      else reports.push({ from: master, ballot: null, value: null, isChosen: false });
    }
    const allows = (subset: readonly Report[]): boolean => {
      const chosen = subset.find((r) => r.isChosen);
      if (chosen?.value != null) return isSlotValueEqual(chosen.value, accept.value);
      let best: Report | null = null;
      for (const r of subset) {
        if (r.ballot === null || r.value === null) continue;
        if (best?.ballot == null || compareBallots(r.ballot, best.ballot) > 0) best = r;
      }
      return best?.value == null || isSlotValueEqual(best.value, accept.value);
    };
    const n = reports.length;
    for (let mask = 1; mask < 1 << n; mask++) {
      const subset = reports.filter((_, i) => (mask & (1 << i)) !== 0);
      if (subset.length >= this.#majority && allows(subset)) return;
    }
    this.fail(
      'reproposal',
      `r${master} proposed ${describeValue(accept.value)} at slot ${accept.slot} in ballot ${ballotKey(accept.ballot)}, which no majority of its promises allows: ${reports
        .map(
          (r) =>
            `r${r.from}: ${r.value === null ? 'nothing' : `${describeValue(r.value)}${r.isChosen ? ' (chosen)' : ` in ${r.ballot === null ? '?' : ballotKey(r.ballot)}`}`}`,
        )
        .join('; ')}`,
    );
  }

  /** A replica applied one entry; `hash` is its machine's running hash after it. */
  onApplied(
    replica: ReplicaId,
    entry: ChosenEntry,
    hash: number,
    results: readonly KvResult[],
  ): void {
    this.onLearned(replica, entry, 'applied');
    const reference = this.#referenceHash[entry.slot];
    if (reference !== undefined && reference !== hash) {
      this.fail(
        'prefix',
        `r${replica} applied history diverges from the reference at slot ${entry.slot}`,
      );
    }
    let effects = this.#replicaEffects.get(replica);
    if (effects === undefined) {
      effects = new Map();
      this.#replicaEffects.set(replica, effects);
    }
    for (const result of results) {
      if (result.status !== 'applied') continue;
      const id = identity(result.clientId, result.seq);
      const earlier = effects.get(id);
      if (earlier !== undefined) {
        this.fail(
          'exactly-once',
          `r${replica} applied ${id} at slot ${earlier} and again at slot ${result.effectSlot}`,
        );
      }
      effects.set(id, result.effectSlot);
    }
  }

  /**
   * A replica's machine was restored (from its durable checkpoint at restart, or from a peer's
   * snapshot): its applied prefix must match the reference there, and its effect record restarts.
   */
  onMachineRestored(replica: ReplicaId, snapshot: KvSnapshot | null): void {
    const effects = new Map<string, number>();
    if (snapshot !== null) {
      const reference = this.#referenceHash[snapshot.applied];
      if (reference !== undefined && reference !== snapshot.hash) {
        this.fail(
          'prefix',
          `r${replica} restored a machine state that diverges from the reference at slot ${snapshot.applied}`,
        );
      }
      for (const [clientId, record] of snapshot.clients)
        effects.set(identity(clientId, record.seq), record.effectSlot);
    }
    this.#replicaEffects.set(replica, effects);
  }

  /** A write was acknowledged to a client as having taken effect at `effectSlot`. */
  onWriteAcknowledged(options: {
    readonly clientId: string;
    readonly seq: number;
    readonly key: string;
    readonly effectSlot: number;
    readonly invokedAt: number;
    readonly doneAt: number;
  }): void {
    this.counts.writesChecked++;
    const id = identity(options.clientId, options.seq);
    const effect = this.#effects.get(id);
    if (effect === undefined || effect.slot !== options.effectSlot) {
      this.fail(
        'acknowledged-write',
        `write ${id} acknowledged at slot ${options.effectSlot}, but the history has it ${effect === undefined ? 'nowhere' : `at slot ${effect.slot}`}`,
      );
      return;
    }
    const ops = this.#completedFor(options.key);
    const before = maxSlotBefore(ops, options.invokedAt);
    if (before >= effect.slot) {
      this.fail(
        'linearizable-write',
        `write ${id} to ${options.key} began at ${fmt(options.invokedAt)} after an operation that saw slot ${before} had completed, but took effect at slot ${effect.slot}`,
      );
    }
    pushCompleted(ops, options.doneAt, effect.slot);
  }

  /** A lease read returned `value` (null: the key was never written). */
  onReadDone(options: {
    readonly clientId: string;
    readonly key: string;
    readonly value: string | null;
    readonly servedBy: ReplicaId;
    readonly invokedAt: number;
    readonly doneAt: number;
  }): void {
    this.counts.readsChecked++;
    let slot = 0;
    if (options.value !== null) {
      const effect = this.#effects.get(options.value);
      if (effect === undefined || effect.key !== options.key) {
        this.fail(
          'linearizable-read',
          `read of ${options.key} by ${options.clientId} from r${options.servedBy} returned ${options.value}, which the history never wrote there`,
        );
        return;
      }
      slot = effect.slot;
    }
    const ops = this.#completedFor(options.key);
    const before = maxSlotBefore(ops, options.invokedAt);
    if (before > slot) {
      this.fail(
        'linearizable-read',
        `read of ${options.key} by ${options.clientId} (began ${fmt(options.invokedAt)}, served by r${options.servedBy}) returned ${options.value ?? 'nothing'} (slot ${slot}), but an operation that saw slot ${before} had completed before it began: stale read`,
      );
    }
    pushCompleted(ops, options.doneAt, slot);
  }

  /** At global time `now`, at most one live replica may believe it holds a valid lease. */
  checkLeases(
    holders: readonly {
      readonly id: ReplicaId;
      readonly localNow: number;
      readonly leaseUntil: number;
    }[],
  ): void {
    this.counts.leaseChecks++;
    const valid = holders.filter((h) => h.localNow < h.leaseUntil);
    if (valid.length > 1) {
      this.fail(
        'single-lease',
        `${valid.length} replicas believe they hold a valid master lease at once: ${valid
          .map((h) => `r${h.id} (local ${fmt(h.localNow)} < leaseUntil ${fmt(h.leaseUntil)})`)
          .join(', ')}`,
      );
    }
  }

  #completedFor(key: string): CompletedOps {
    let ops = this.#completed.get(key);
    if (ops === undefined) {
      ops = { doneAt: [], maxSlot: [] };
      this.#completed.set(key, ops);
    }
    return ops;
  }

  /** The history, for the end-of-run report. */
  historyValue(slot: number): SlotValue | undefined {
    return this.#history.get(slot)?.value;
  }
}

export function identity(clientId: string, seq: number): string {
  return `${clientId}:${seq}`;
}

function ballotKey(b: Ballot): string {
  return `${b.round}.${b.replica}`;
}

function keyOfPayload(payload: Uint8Array): string {
  return decodePut(payload).key;
}

function pushCompleted(ops: CompletedOps, doneAt: number, slot: number): void {
  const last = ops.maxSlot[ops.maxSlot.length - 1] ?? 0;
  ops.doneAt.push(doneAt);
  ops.maxSlot.push(Math.max(last, slot));
}

/** The highest slot seen by an operation that completed strictly before `t` (0 if none). */
function maxSlotBefore(ops: CompletedOps, t: number): number {
  let lo = 0;
  let hi = ops.doneAt.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ops.doneAt[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo === 0 ? 0 : ops.maxSlot[lo - 1]!;
}

function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(4)}s`;
}
