// ONE synchronous turn of a replica: inputs -> core -> persist -> send -> apply -> advance
// (DESIGN.md, runtime/turn.ts; etcd raft's Ready loop). The replica process calls runTurn once per
// event-loop turn with everything that arrived; the deterministic simulator calls the very same
// function, so what the simulator proves is what runs.
//
// The ordering rule, for every Ready the core hands out (ready.ts says why each step is where it is):
//
//   1. sendEarly   the master's own Accepts, allowed out before its own acceptance is durable;
//   2. persist     ONE durable write (one transaction, one fsync) of promise/acceptances/chosen/commit;
//   3. send        every other message — never before step 2 returned, since these are the answers
//                  (promises, acceptances) that step 2 made true;
//   4. commit      newly chosen entries, applied in slot order through the injected apply();
//   5. hooks       snapshot requests (snapshotFor, needSnapshot) go to the wiring;
//   6. advance     tells the core all of the above happened.
//
// and the loop repeats while the core has more to do (advance may itself make the next batch).
//
// Fault points: the optional `faults` callback is consulted before each stage; if it answers
// 'crash' the turn stops there and nothing of that stage or after happens — exactly what a
// kill -9 at that point leaves behind (the store holds what persist() returned from, the sent
// messages are on the wire, the rest is gone). The process never sets it.

import { assert, assertNever } from '@paxlock/shared';
import type { ChosenEntry, Command, Envelope, Message } from '../paxos/messages.ts';
import type { Logger, ReplicaId } from '../paxos/ports.ts';
import type { Ready, Status } from '../paxos/ready.ts';
import type { ProposeResult, Replica } from '../paxos/replica.ts';
import { validateMessage } from '../paxos/validate.ts';
import type { AcceptorStore } from '../storage/store.ts';

/** What can go into a turn. Peer messages are `unknown` until validated here. */
export type TurnInput =
  | { readonly type: 'message'; readonly from: ReplicaId; readonly message: unknown }
  | { readonly type: 'tick' }
  | { readonly type: 'propose'; readonly command: Command };

/** The stages of executing one Ready, in order; a fault point sits before each. */
export type TurnStage = 'sendEarly' | 'persist' | 'send' | 'commit' | 'advance';

export const TURN_STAGES: readonly TurnStage[] = [
  'sendEarly',
  'persist',
  'send',
  'commit',
  'advance',
];

/** The part of the Replica a turn drives. */
export type TurnReplica = Pick<
  Replica,
  'step' | 'tick' | 'propose' | 'hasReady' | 'ready' | 'advance'
>;

export interface TurnWiring {
  readonly replica: TurnReplica;
  readonly store: Pick<AcceptorStore, 'persist'>;
  readonly logger: Logger;
  /**
   * unknown -> Message, or null to drop it. Defaults to validateMessage: validate.ts is the only
   * door from the wire; tests of the turn itself may inject another.
   */
  readonly validate?: (raw: unknown) => Message | null;
  /** Hands one envelope to the transport; the transport may lose it, never blocks. */
  readonly send: (envelope: Envelope) => void;
  /** Applies one chosen entry to the state machine; called in slot order, each entry once. */
  readonly apply: (entry: ChosenEntry) => void;
  /** The core wants a snapshot at or above `slot` shipped to `to`. */
  readonly snapshotFor?: (to: ReplicaId, slot: number) => void;
  /** The core is behind its peers' compaction point and needs a snapshot from `from`. */
  readonly needSnapshot?: (from: ReplicaId, slotAtLeast: number) => void;
  /** Test-only fault point, consulted before each stage; the process never sets it. */
  readonly faults?: (stage: TurnStage, ready: Ready) => 'crash' | 'continue';
}

export interface TurnResult {
  /** The stage a fault stopped the turn before, or null if the turn ran to the end. */
  readonly crashedBefore: TurnStage | null;
  /** One result per 'propose' input, in input order. */
  readonly proposals: readonly ProposeResult[];
  /** How many Ready batches this turn executed. */
  readonly readyCount: number;
  /** The status in the last Ready executed, or null if the core had nothing to do. */
  readonly status: Status | null;
}

/**
 * The core hands out a bounded amount of work per input; a Ready loop that does not end is a
 * core bug, and crashing beats spinning forever.
 */
const MAX_READY_PER_TURN = 10_000;

export function runTurn(wiring: TurnWiring, inputs: readonly TurnInput[], now: number): TurnResult {
  const { replica } = wiring;
  const proposals: ProposeResult[] = [];
  const validate = wiring.validate ?? validateMessage;
  for (const input of inputs) {
    switch (input.type) {
      case 'message': {
        const message = validate(input.message);
        if (message === null) {
          wiring.logger.warn({ peer: input.from }, 'invalid peer message dropped');
          break;
        }
        replica.step(input.from, message, now);
        break;
      }
      case 'tick':
        replica.tick(now);
        break;
      case 'propose':
        proposals.push(replica.propose(input.command, now));
        break;
      default:
        assertNever(input);
    }
  }

  let readyCount = 0;
  let status: Status | null = null;
  while (replica.hasReady()) {
    assert(readyCount < MAX_READY_PER_TURN, 'turn: the core never ran out of Ready batches');
    const ready = replica.ready();
    readyCount++;
    status = ready.status;
    const crashedBefore = executeReady(wiring, ready, now);
    if (crashedBefore !== null) return { crashedBefore, proposals, readyCount, status };
  }
  return { crashedBefore: null, proposals, readyCount, status };
}

/** Executes one Ready in the documented order; returns the stage a fault stopped it before. */
function executeReady(wiring: TurnWiring, ready: Ready, now: number): TurnStage | null {
  const { faults } = wiring;
  if (faults?.('sendEarly', ready) === 'crash') return 'sendEarly';
  for (const envelope of ready.sendEarly) wiring.send(envelope);

  if (faults?.('persist', ready) === 'crash') return 'persist';
  wiring.store.persist(ready.persist);

  if (faults?.('send', ready) === 'crash') return 'send';
  for (const envelope of ready.send) wiring.send(envelope);

  if (faults?.('commit', ready) === 'crash') return 'commit';
  for (const entry of ready.commit) wiring.apply(entry);
  for (const request of ready.snapshotFor) wiring.snapshotFor?.(request.to, request.slot);
  if (ready.needSnapshot !== null)
    wiring.needSnapshot?.(ready.needSnapshot.from, ready.needSnapshot.slotAtLeast);

  if (faults?.('advance', ready) === 'crash') return 'advance';
  wiring.replica.advance(ready, now);
  return null;
}
