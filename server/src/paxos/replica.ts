// TODO(core): the Multi-Paxos replica. This file's public API is the contract the wiring
// (runtime/turn.ts) and the simulator (server/sim) are written against; keep it.
//
// Slots are numbered from 1. `commit` = 0 means nothing is chosen yet.

import type { Command, Message } from './messages.ts';
import type { Config, Logger, Random, ReplicaId } from './ports.ts';
import type { Ready, Status } from './ready.ts';
import type { DurableState } from './durable.ts';

export interface ReplicaOptions {
  readonly config: Config;
  readonly random: Random;
  readonly logger: Logger;
  readonly durable: DurableState;
  /** Local monotonic time at start. */
  readonly now: number;
  /**
   * The slot the state machine has applied through at start (from state.db). Chosen entries
   * above it are handed out again in Ready.commit so the machine replays them.
   */
  readonly applied: number;
}

export type ProposeResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'not-master' | 'duplicate'; readonly masterId: ReplicaId | null };

export declare class Replica {
  constructor(options: ReplicaOptions);
  /** Handle one validated message from a peer at local time `now`. */
  step(from: ReplicaId, message: Message, now: number): void;
  /** Advance local time: heartbeats, election timeouts, lease expiry, catch-up retries. */
  tick(now: number): void;
  /** Master only: queue a command for the next slot (batched with others in flight). */
  propose(command: Command, now: number): ProposeResult;
  /** True if ready() has anything to do. */
  hasReady(): boolean;
  ready(): Ready;
  /** The wiring did everything `ready` asked (persisted, sent, applied). */
  advance(ready: Ready, now: number): void;
  /** True if this replica is master, holds a valid lease at `now`, and has applied its own ballot's no-op. */
  canServeReads(now: number): boolean;
  status(now: number): Status;
  /** The state machine took a snapshot covering every slot <= slot; the core may compact below it. */
  snapshotTaken(slot: number): void;
  /** A snapshot through `slot` was installed into the state machine from a peer. */
  installSnapshot(slot: number, now: number): void;
}
