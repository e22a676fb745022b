// The Multi-Paxos safety checks, shared by both simulator modes: the KV mode (checkers.ts, with
// its reference register machine on top) and the cell mode (cell/checkers.ts, with the real
// SQLite machine). They see only the core's side: durable votes, what each replica treats as
// chosen, the order it is handed slots to apply, and promises and Accepts on the wire.
//
// - agreement: no slot is ever chosen with two values. The ground truth is computed from the
//   acceptors' durable votes (a value is chosen once a majority has durably accepted it in one
//   ballot) and compared with every value any replica persists as chosen or applies. Two values
//   accepted in one ballot at one slot fail too. With replacement disks (docs/consensus.md,
//   Replacing a disk) a replica's vote at a slot is its durable acceptance there by the disk that
//   holds its seat at that slot (by the admissions known chosen), or by a disk that acted as a
//   voter when it accepted (Status.isVoter): a learner's copy of the master's value counts once
//   the log has admitted its disk below that slot, and a disk that votes without a seat is taken
//   at its word, so that two majorities choosing two values show up as a disagreement.
// - durable-quorum: the first time any replica treats a value as chosen, a majority must already
//   have durably accepted it in one ballot.
// - persist-before-send: a promise or acceptance leaves only once its sender made it durable.
// - reproposal (P2c): a master's first Accept for a slot in its ballot carries a value some
//   majority of its promises allows.
// - prefix (order): each replica is handed slots to apply contiguously, each once.
// - single-lease: at no global instant do two live replicas both believe they hold a valid
//   master lease (each replica's local leaseUntil is compared with its own clock's reading).

import type { Ballot } from '../src/paxos/ballot.ts';
import { compareBallots, formatBallot, isBallotEqual } from '../src/paxos/ballot.ts';
import type { DurableEntry } from '../src/paxos/durable.ts';
import type {
  AcceptedEntry,
  Admission,
  ChosenEntry,
  Message,
  SlotValue,
} from '../src/paxos/messages.ts';
import type { ReplicaId } from '../src/paxos/ports.ts';
import type { PersistBatch, Ready } from '../src/paxos/ready.ts';
import type { TurnStage } from '../src/runtime/turn.ts';
import { isSlotValueEqual, type MemoryStore } from '../src/storage/memory-store.ts';
import { isPersistBatchEmpty } from '../src/storage/store.ts';

export type PaxosInvariant =
  'agreement' | 'durable-quorum' | 'persist-before-send' | 'reproposal' | 'prefix' | 'single-lease';

export interface PaxosCheckOptions {
  readonly replicaCount: number;
  readonly fail: (invariant: PaxosInvariant, detail: string) => void;
  /** How a value is named in a violation. */
  readonly describe: (value: SlotValue) => string;
  /** The first time a slot's value becomes known chosen (slots may arrive out of order). */
  readonly onChosen?: (slot: number, value: SlotValue) => void;
}

/** The durable acceptances of one value in one ballot at one slot, by disk. */
interface BallotVotes {
  readonly value: SlotValue;
  /** "replica:diskId" -> the disk, and whether it acted as a voter when it accepted. */
  readonly voters: Map<
    string,
    { readonly replica: ReplicaId; readonly diskId: number; readonly isVoter: boolean }
  >;
  /** A majority's votes were seen (the value was learned from them once). */
  isQuorum: boolean;
}

interface HistoryEntry {
  readonly value: SlotValue;
  readonly source: string;
}

export class PaxosChecks {
  readonly #o: PaxosCheckOptions;
  readonly #majority: number;
  /** Slot -> the chosen value, from ground truth or the first replica that learned it. */
  readonly #history = new Map<number, HistoryEntry>();
  /** Slot -> ballot "round.replica" -> the value and the disks that durably accepted it. */
  readonly #votes = new Map<number, Map<string, BallotVotes>>();
  /** Admissions known chosen, in slot order: who holds each seat from which slot on. */
  readonly #admissions: Admission[] = [];
  /** "candidate|ballot" -> acceptor -> the promise it delivered to that candidate. */
  readonly #promises = new Map<string, Map<ReplicaId, Extract<Message, { type: 'promise' }>>>();
  /** "master|ballot|slot" of every Accept already judged, so retransmissions are judged once. */
  readonly #judgedAccepts = new Set<string>();
  chosenSlots = 0;
  /** Admissions of replacement disks ('admit' values) known chosen. */
  admissionsChosen = 0;
  /** Acceptances a learner (a disk not yet admitted) made durable: votes only where it has the seat. */
  learnerAccepts = 0;
  acceptsJudged = 0;
  leaseChecks = 0;

  constructor(options: PaxosCheckOptions) {
    this.#o = options;
    this.#majority = Math.floor(options.replicaCount / 2) + 1;
  }

  /** The value known chosen at `slot`, if any. */
  historyValue(slot: number): SlotValue | undefined {
    return this.#history.get(slot)?.value;
  }

  /**
   * Durable votes: call with every acceptance a replica's persist() made durable, with the disk
   * that made it and whether that disk acted as a voter (defaults: a founding disk, voting).
   */
  onDurableAccepts(
    replica: ReplicaId,
    accepted: readonly AcceptedEntry[],
    disk: { readonly diskId: number; readonly isVoter: boolean } = { diskId: 0, isVoter: true },
  ): void {
    for (const entry of accepted) {
      let bySlot = this.#votes.get(entry.slot);
      if (bySlot === undefined) {
        bySlot = new Map();
        this.#votes.set(entry.slot, bySlot);
      }
      const key = formatBallot(entry.ballot);
      let vote = bySlot.get(key);
      if (vote === undefined) {
        vote = { value: entry.value, voters: new Map(), isQuorum: false };
        bySlot.set(key, vote);
      } else if (!isSlotValueEqual(vote.value, entry.value)) {
        this.#o.fail(
          'agreement',
          `slot ${entry.slot} ballot ${key}: two values accepted in one ballot: ${this.#o.describe(vote.value)} and ${this.#o.describe(entry.value)} (r${replica})`,
        );
        return;
      }
      const voterKey = `${replica}:${disk.diskId}`;
      const known = vote.voters.get(voterKey);
      vote.voters.set(voterKey, {
        replica,
        diskId: disk.diskId,
        isVoter: disk.isVoter || known?.isVoter === true,
      });
      if (!vote.isQuorum && this.#countVotes(entry.slot, vote) >= this.#majority) {
        vote.isQuorum = true;
        this.#learn(entry.slot, vote.value, `a quorum durably voted in ballot ${key} for`);
      }
    }
  }

  /** The disk holding `replica`'s seat at `slot`: the last admission below it, else 0. */
  #seatAt(replica: ReplicaId, slot: number): number {
    let diskId = 0;
    for (const a of this.#admissions) {
      if (a.slot >= slot) break;
      if (a.replica === replica) diskId = a.diskId;
    }
    return diskId;
  }

  /** How many replicas' votes a ballot has at `slot` (see the header: seats). */
  #countVotes(slot: number, vote: BallotVotes): number {
    const replicas = new Set<ReplicaId>();
    for (const v of vote.voters.values()) {
      if (v.isVoter || v.diskId === this.#seatAt(v.replica, slot)) replicas.add(v.replica);
    }
    return replicas.size;
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
        this.#o.fail(
          'durable-quorum',
          `slot ${slot}: ${source} ${this.#o.describe(value)} as chosen, but no majority has durably accepted it in any one ballot (${this.#describeVotes(slot)})`,
        );
      }
      this.#history.set(slot, { value, source });
      this.chosenSlots++;
      if (value.type === 'admit') {
        this.admissionsChosen++;
        let at = this.#admissions.length;
        while (at > 0 && (this.#admissions[at - 1]?.slot ?? 0) > slot) at--;
        this.#admissions.splice(at, 0, { slot, replica: value.replica, diskId: value.diskId });
      }
      this.#o.onChosen?.(slot, value);
      return;
    }
    if (!isSlotValueEqual(known.value, value)) {
      this.#o.fail(
        'agreement',
        `slot ${slot} chosen with two values: ${this.#o.describe(known.value)} (${known.source}) and ${this.#o.describe(value)} (${source})`,
      );
    }
  }

  #hasDurableQuorum(slot: number, value: SlotValue): boolean {
    const bySlot = this.#votes.get(slot);
    if (bySlot === undefined) return false;
    for (const vote of bySlot.values()) {
      if (isSlotValueEqual(vote.value, value) && this.#countVotes(slot, vote) >= this.#majority)
        return true;
    }
    return false;
  }

  #describeVotes(slot: number): string {
    const bySlot = this.#votes.get(slot);
    if (bySlot === undefined) return 'no durable votes';
    return [...bySlot.entries()]
      .map(
        ([ballot, vote]) =>
          `ballot ${ballot}: ${this.#o.describe(vote.value)} by ${[...vote.voters.values()].map((v) => `r${v.replica}${v.diskId === 0 ? '' : `/disk ${v.diskId}${v.isVoter ? '' : ' (learner)'}`}`).join(',')}`,
      )
      .join('; ');
  }

  /**
   * A replica is handed `entry` to apply while its machine has applied through `applied`: it must
   * be the next slot (contiguous, each once), and its value is then known chosen (agreement).
   * Returns false (and fails) when the slot is out of order.
   */
  onApplying(replica: ReplicaId, entry: ChosenEntry, applied: number): boolean {
    if (entry.slot !== applied + 1) {
      this.#o.fail(
        'prefix',
        `r${replica} was handed slot ${entry.slot} to apply after slot ${applied}`,
      );
      return false;
    }
    this.onLearned(replica, entry, 'applied');
    return true;
  }

  /** A promise reached its candidate (the candidate may use it from its next turn on). */
  onPromiseDelivered(
    candidate: ReplicaId,
    acceptor: ReplicaId,
    promise: Extract<Message, { type: 'promise' }>,
  ): void {
    const key = `${candidate}|${formatBallot(promise.ballot)}`;
    let byAcceptor = this.#promises.get(key);
    if (byAcceptor === undefined) {
      byAcceptor = new Map();
      this.#promises.set(key, byAcceptor);
    }
    byAcceptor.set(acceptor, promise);
  }

  /**
   * Wire checks on everything a replica sends: persist-before-send for promises and acceptances,
   * P2c for a master's Accepts. `store` is the sender's acceptor store.
   */
  onSent(from: ReplicaId, message: Message, store: MemoryStore): void {
    this.#checkAnswerIsDurable(from, message, store);
    if (message.type === 'accept')
      this.#checkAccept({ master: from, accept: message, own: store.durableEntry(message.slot) });
  }

  /** An acceptor's promise or acceptance may leave only once it is durable (persist before send). */
  #checkAnswerIsDurable(from: ReplicaId, message: Message, store: MemoryStore): void {
    if (message.type === 'promise') {
      const durable = store.durablePromise();
      if (compareBallots(durable, message.ballot) < 0) {
        this.#o.fail(
          'persist-before-send',
          `r${from} sent a promise for ballot ${formatBallot(message.ballot)} while its durable promise is ${formatBallot(durable)}`,
        );
      }
    } else if (message.type === 'accepted') {
      // A slot compacted behind a snapshot is chosen and durable there; acking it again is harmless.
      if (message.slot < store.durableCompactedBelow()) return;
      const entry = store.durableEntry(message.slot);
      if (
        entry === undefined ||
        (!entry.isChosen && !isBallotEqual(entry.ballot, message.ballot))
      ) {
        this.#o.fail(
          'persist-before-send',
          `r${from} sent accepted for slot ${message.slot} in ballot ${formatBallot(message.ballot)} while its durable entry there is ${entry === undefined ? 'missing' : `ballot ${formatBallot(entry.ballot)}`}`,
        );
      }
    }
  }

  /**
   * Paxos's P2c, on the wire: a master's first Accept for a slot in its ballot must carry a value
   * that SOME majority of the promises it holds (its own acceptor included) allows — the value of
   * the highest ballot accepted among them, or the chosen value one of them reports, or anything
   * if none of them accepted a value there. A value the history already knows chosen is always
   * allowed.
   */
  #checkAccept(options: {
    readonly master: ReplicaId;
    readonly accept: Extract<Message, { type: 'accept' }>;
    readonly own: DurableEntry | undefined;
  }): void {
    const { master, accept } = options;
    const judged = `${master}|${formatBallot(accept.ballot)}|${accept.slot}`;
    if (this.#judgedAccepts.has(judged)) return;
    this.#judgedAccepts.add(judged);
    const known = this.#history.get(accept.slot);
    if (known !== undefined && isSlotValueEqual(known.value, accept.value)) return;
    const promises = this.#promises.get(`${master}|${formatBallot(accept.ballot)}`);
    if (promises === undefined) return; // Not a ballot this checker saw being won (a master re-asserting).
    this.acceptsJudged++;
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
    this.#o.fail(
      'reproposal',
      `r${master} proposed ${this.#o.describe(accept.value)} at slot ${accept.slot} in ballot ${formatBallot(accept.ballot)}, which no majority of its promises allows: ${reports
        .map(
          (r) =>
            `r${r.from}: ${r.value === null ? 'nothing' : `${this.#o.describe(r.value)}${r.isChosen ? ' (chosen)' : ` in ${r.ballot === null ? '?' : formatBallot(r.ballot)}`}`}`,
        )
        .join('; ')}`,
    );
  }

  /** At one global instant, at most one live replica may believe it holds a valid lease. */
  checkLeases(
    holders: readonly {
      readonly id: ReplicaId;
      readonly localNow: number;
      readonly leaseUntil: number;
    }[],
  ): void {
    this.leaseChecks++;
    const valid = holders.filter((h) => h.localNow < h.leaseUntil);
    if (valid.length > 1) {
      this.#o.fail(
        'single-lease',
        `${valid.length} replicas believe they hold a valid master lease at once: ${valid
          .map(
            (h) =>
              `r${h.id} (local ${(h.localNow / 1000).toFixed(4)}s < leaseUntil ${(h.leaseUntil / 1000).toFixed(4)}s)`,
          )
          .join(', ')}`,
      );
    }
  }

  /**
   * The acceptor store as a turn sees it: persist() writes the memory store, then reports what
   * became durable (only what is durable counts as a vote: a crash before this line loses it).
   * `disk` names the replica's disk and says whether it acts as a voter (Status.isVoter) after
   * the turn: a learner's copies count only at slots where the log gave its disk the seat.
   */
  watchStore(
    replica: ReplicaId,
    store: MemoryStore,
    disk: () => { readonly diskId: number; readonly isVoter: boolean } = () => ({
      diskId: 0,
      isVoter: true,
    }),
  ): { persist: (batch: PersistBatch) => void } {
    return {
      persist: (batch: PersistBatch): void => {
        store.persist(batch);
        if (batch.accepted.length > 0) {
          const d = disk();
          if (!d.isVoter) this.learnerAccepts += batch.accepted.length;
          this.onDurableAccepts(replica, batch.accepted, d);
        }
        for (const entry of batch.chosen) this.onLearned(replica, entry, 'persisted chosen');
      },
    };
  }
}

/** Fault points where a crash leaves something different behind: only these are worth a draw. */
export function isFaultPointInteresting(stage: TurnStage, ready: Ready): boolean {
  const persists = !isPersistBatchEmpty(ready.persist);
  switch (stage) {
    case 'sendEarly':
      return persists;
    case 'persist':
      return persists && ready.sendEarly.length > 0;
    case 'send':
      return persists && ready.send.length > 0;
    case 'commit':
      return ready.commit.length > 0;
    case 'advance':
      return persists || ready.commit.length > 0;
  }
}
