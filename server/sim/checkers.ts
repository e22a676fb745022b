// The simulator's invariants, checked after every step (issue 2, section 3). Each check is
// incremental, so checking after every event costs little:
//
// - agreement, durable-quorum, persist-before-send, reproposal (P2c) and the order of applies:
//   the Multi-Paxos checks in paxos-checks.ts, shared with the cell mode (`paxos` below).
// - prefix: every replica's applied history is a prefix of one history (a running hash at each
//   slot equals the reference hash at that slot, which also covers snapshot installs).
// - exactly-once: no command takes effect twice in any replica's machine or in the reference.
// - acknowledged writes: a write acknowledged to a client is in the history at the slot its
//   acknowledgement names.
// - linearizable lease reads: per key, writes are ordered by their slot (the only order the
//   state machine can show); each operation's position must respect real time: a read returns a
//   value at least as new as every operation that completed before it began, and a write lands
//   above every operation that completed before it began.
//
// The liveness checks live in the cluster, which knows the phases.

import type { ChosenEntry } from '../src/paxos/messages.ts';
import type { ReplicaId } from '../src/paxos/ports.ts';
import { decodePut, describeValue, KvMachine, type KvResult, type KvSnapshot } from './kv.ts';
import { PaxosChecks, type PaxosInvariant } from './paxos-checks.ts';

export type Invariant =
  | PaxosInvariant
  | 'exactly-once'
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

/** An operation that completed, as the linearizability check keeps it, per key. */
interface CompletedOps {
  /** Completion times, non-decreasing (operations are checked as they complete). */
  readonly doneAt: number[];
  /** Running maximum of the slot each completed operation observed or wrote. */
  readonly maxSlot: number[];
}

export class Checkers {
  violation: Violation | null = null;
  /** The Multi-Paxos checks; the reference machine follows the history they establish. */
  readonly paxos: PaxosChecks;
  /** The reference machine applies the history in slot order as it becomes contiguous. */
  readonly #reference = new KvMachine();
  /** Slot -> reference hash after applying that slot (index 0 is the empty history). */
  readonly #referenceHash: number[] = [0];
  /** "clientId#seq" -> the slot and key where that command took effect in the reference. */
  readonly #effects = new Map<string, { slot: number; key: string }>();
  /** Per replica: "clientId#seq" -> effect slot, reset when its machine is restored. */
  readonly #replicaEffects = new Map<ReplicaId, Map<string, number>>();
  readonly #completed = new Map<string, CompletedOps>();
  #now = 0;
  counts = { readsChecked: 0, writesChecked: 0 };

  constructor(replicaCount: number) {
    this.paxos = new PaxosChecks({
      replicaCount,
      fail: (invariant, detail) => this.fail(invariant, detail),
      describe: describeValue,
      onChosen: () => this.#advanceReference(),
    });
  }

  get chosenSlots(): number {
    return this.paxos.chosenSlots;
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

  #advanceReference(): void {
    for (;;) {
      const slot = this.#reference.applied + 1;
      const value = this.paxos.historyValue(slot);
      if (value === undefined) return;
      const results = this.#reference.applyEntry({ slot, value });
      this.#referenceHash[slot] = this.#reference.hash;
      if (value.type === 'batch') {
        value.commands.forEach((command, i) => {
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

  /**
   * A replica applied one entry (after `paxos.onApplying` passed it); `hash` is its machine's
   * running hash after it.
   */
  onApplied(
    replica: ReplicaId,
    entry: ChosenEntry,
    hash: number,
    results: readonly KvResult[],
  ): void {
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

  #completedFor(key: string): CompletedOps {
    let ops = this.#completed.get(key);
    if (ops === undefined) {
      ops = { doneAt: [], maxSlot: [] };
      this.#completed.set(key, ops);
    }
    return ops;
  }
}

export function identity(clientId: string, seq: number): string {
  return `${clientId}:${seq}`;
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
