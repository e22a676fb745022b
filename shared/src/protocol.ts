// The client wire protocol (DESIGN.md, Wire protocol): msgpack-encoded binary WebSocket frames,
// one message per frame, each a union member on `type` with a request id chosen by the client.
// A client talks to any replica; a replica that is not the master answers every request with a
// redirect to the master's client address (or to nobody: "no master yet, retry"). Every reply
// from the master carries the epoch (the master's ballot), so a client sees fail-overs.
//
// Writes are MachineCommands and go through the log; queries are answered by the master from
// its state under its lease. KeepAlives never touch the log. Events are pushed after the entry
// that caused them is applied, in log order, numbered per session (eventSeq) so a client that
// reconnects can tell whether it missed any.

import type {
  CommandResult,
  MachineCommand,
  MachineEvent,
  Query,
  QueryResult,
} from './commands.ts';
import type { ErrorCode } from './errors.ts';

export const CLIENT_PROTOCOL_VERSION = 1;

/** The master's ballot, as clients see it: it grows with every fail-over. */
export interface Epoch {
  readonly round: number;
  readonly replica: number;
}

// ---------------------------------------------------------------------------------------------
// Client -> replica

/** A write: applied through the log, answered after it is applied. */
export interface CommandFrame {
  readonly type: 'command';
  readonly id: number;
  readonly command: MachineCommand;
}
/**
 * A read: answered by the master from its own state while its lease holds. With
 * `maxStalenessMs` the client accepts a stale read: any replica may answer from its own
 * applied state if it can promise the state is at most that old (else it redirects).
 */
export interface QueryFrame {
  readonly type: 'query';
  readonly id: number;
  readonly query: Query;
  readonly maxStalenessMs?: number;
}
/**
 * Keeps the session alive and (re)attaches this connection as the session's event stream.
 * `eventSeqSeen` is the last event seq the client received, so the master can say whether
 * events were lost in between.
 */
export interface KeepAliveFrame {
  readonly type: 'keep-alive';
  readonly id: number;
  readonly session: number;
  readonly eventSeqSeen: number;
}
/** Asks any replica (master or not) for its own status: for operators and for finding the master. */
export interface StatusFrame {
  readonly type: 'status';
  readonly id: number;
  /**
   * Also compute the state digest (costly on a large state: ~0.7 s per 100k nodes, once per
   * applied slot). Finding the master does not need it; operators and tests ask for it.
   */
  readonly digest?: boolean;
}

export type ClientFrame = CommandFrame | QueryFrame | KeepAliveFrame | StatusFrame;
export type ClientFrameType = ClientFrame['type'];

// ---------------------------------------------------------------------------------------------
// Replica -> client

export interface CommandReply {
  readonly type: 'result';
  readonly id: number;
  readonly epoch: Epoch;
  /** The slot the command was applied in. */
  readonly slot: number;
  readonly result: CommandResult;
}
export interface QueryReply {
  readonly type: 'query-result';
  readonly id: number;
  readonly epoch: Epoch;
  /** The slot the answering state reflects. */
  readonly slot: number;
  readonly result: QueryResult;
  /**
   * For a stale read: an upper bound, in ms, on how long before the reply the answering state
   * stopped being current (0 when the master answered under its lease). Absent otherwise.
   */
  readonly stalenessMs?: number;
  /** For a stale read: the replica that answered. */
  readonly replica?: number;
}
export interface KeepAliveReply {
  readonly type: 'keep-alive-ack';
  readonly id: number;
  readonly epoch: Epoch;
  /** How long from now the master holds the session, by the master's clock. */
  readonly leaseRemainingMs: number;
  /** The last event seq the master sent this session. */
  readonly eventSeq: number;
  /** True if events between the client's eventSeqSeen and eventSeq were lost: re-read state. */
  readonly isEventGap: boolean;
}
export interface ReplicaStatus {
  readonly id: number;
  /** The cell's name: its files are under `/ls/<cell>/`. */
  readonly cell: string;
  readonly role: 'master' | 'follower' | 'candidate';
  readonly epoch: Epoch;
  readonly masterId: number | null;
  /** The master's client address, if this replica knows it. */
  readonly master: string | null;
  readonly commit: number;
  readonly applied: number;
  /** Remaining master lease at this replica, in ms (0 unless master). */
  readonly leaseRemainingMs: number;
  /**
   * False while this replica's disk is a replacement not yet admitted by the master: a learner,
   * which follows and catches up but neither votes nor runs for master.
   */
  readonly isVoter: boolean;
  /** This replica's disk: 0 for a founding disk, else a replacement disk's random id. */
  readonly diskId: number;
  /** The state digest at `digestSlot`, if the request asked for it (StatusFrame.digest). */
  readonly digest: string | null;
  readonly digestSlot: number;
}
export interface StatusReply {
  readonly type: 'status';
  readonly id: number;
  readonly status: ReplicaStatus;
}
/** This replica is not the master: retry at `master`, or (null) there is no master yet. */
export interface RedirectReply {
  readonly type: 'redirect';
  readonly id: number;
  readonly master: string | null;
  readonly epoch: Epoch;
}
/** A request failed before reaching the state machine (bad frame, no quorum, not master...). */
export interface ErrorReply {
  readonly type: 'error';
  /** Null when the frame was too broken to read its id. */
  readonly id: number | null;
  readonly code: ErrorCode;
  readonly message: string;
}
export interface EventPush {
  readonly type: 'event';
  readonly session: number;
  /** Per-session, from 1, with no gaps on one master; see KeepAliveReply.isEventGap. */
  readonly eventSeq: number;
  readonly epoch: Epoch;
  readonly event: MachineEvent;
}
/** A new master took over; sent to every attached session when it starts serving. */
export interface FailoverPush {
  readonly type: 'master-failover';
  readonly epoch: Epoch;
}

export type ServerFrame =
  | CommandReply
  | QueryReply
  | KeepAliveReply
  | StatusReply
  | RedirectReply
  | ErrorReply
  | EventPush
  | FailoverPush;
export type ServerFrameType = ServerFrame['type'];
