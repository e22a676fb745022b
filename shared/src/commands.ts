// The state machine's vocabulary (Burrows 2006, section 2.6, the Chubby API): the commands the
// master sequences through the log, their results, the events they cause, and the read-only
// queries the master answers from its local copy under its lease. Types only, plus the event
// mask bits: the server's machine implements them, the client will speak them, and
// validate-commands.ts is the only way an `unknown` becomes one of them.
//
// Conventions: every union is discriminated on `type`. Command types are PascalCase (the API
// call), results and events kebab-case (what happened). Client commands carry the session and
// a per-session request seq, which makes them exactly-once across retries and fail-overs; the
// two commands only the master issues (ExpireSession, LockDelayEnd) carry no seq because
// applying them twice is harmless (the second application fails with SESSION_EXPIRED or finds
// nothing to do), and CreateSession has no session yet: its optional nonce plays that part.

import type { ErrorCode } from './errors.ts';
import type { LockMode } from './sequencer.ts';

export type { LockMode } from './sequencer.ts';

/** Open's create policy: only open an existing node, open or create, or only create. */
export type CreatePolicy = 'never' | 'may' | 'must';

/**
 * Event mask bits a handle subscribes with at Open. `handle-invalid` and `lock-granted` are not
 * maskable: a handle always learns that it died, and a waiter always learns it got the lock.
 */
export const EventMask = {
  contentsModified: 1,
  childAdded: 2,
  childRemoved: 4,
  childModified: 8,
  lockAcquired: 16,
  conflictingLockRequest: 32,
} as const;
export type EventMaskBit = (typeof EventMask)[keyof typeof EventMask];
/** Every maskable event. */
export const EVENT_MASK_ALL = 63;

/** The three ACL names of a node (read, write, change-ACL); '' means no ACL. Enforced later. */
export interface Acl {
  readonly read: string;
  readonly write: string;
  readonly changeAcl: string;
}

// ---------------------------------------------------------------------------------------------
// Commands

export interface CreateSession {
  readonly type: 'CreateSession';
  readonly clientName: string;
  readonly leaseMs: number;
  /**
   * A client-chosen random token, the same on every retry of this creation: while a session
   * created with it lives, a retry returns that session instead of creating a second one.
   */
  readonly nonce?: string;
}
/** The client ends its session cleanly: its locks are released without lock-delay. */
export interface CloseSession {
  readonly type: 'CloseSession';
  readonly session: number;
  readonly seq: number;
}
/** The master found the lease expired: locks are released with lock-delay. */
export interface ExpireSession {
  readonly type: 'ExpireSession';
  readonly session: number;
}
export interface Open {
  readonly type: 'Open';
  readonly session: number;
  readonly seq: number;
  readonly path: string;
  readonly create: CreatePolicy;
  /** Used only when the node is created; an existing node keeps its own. */
  readonly ephemeral: boolean;
  /** The kind of node expected (or created); a mismatch fails. */
  readonly directory: boolean;
  /** Initial contents of a created file; ignored when the file exists. */
  readonly contents?: Uint8Array;
  readonly eventMask: number;
  /** Lock-delay applied if this handle loses a lock it holds; 0..LIMITS.lockDelayMaxMs. */
  readonly lockDelayMs: number;
}
export interface Close {
  readonly type: 'Close';
  readonly session: number;
  readonly seq: number;
  readonly handle: number;
}
export interface SetContents {
  readonly type: 'SetContents';
  readonly session: number;
  readonly seq: number;
  readonly handle: number;
  readonly contents: Uint8Array;
  /** Compare-and-set: apply only if the file's content generation is this one. */
  readonly ifGeneration?: number;
}
export interface Delete {
  readonly type: 'Delete';
  readonly session: number;
  readonly seq: number;
  readonly handle: number;
}
export interface SetACL {
  readonly type: 'SetACL';
  readonly session: number;
  readonly seq: number;
  readonly handle: number;
  readonly acl: Acl;
}
export interface Acquire {
  readonly type: 'Acquire';
  readonly session: number;
  readonly seq: number;
  readonly handle: number;
  readonly mode: LockMode;
  /** Queue behind conflicting holders and earlier waiters (true) or fail at once (false). */
  readonly wait: boolean;
}
export interface Release {
  readonly type: 'Release';
  readonly session: number;
  readonly seq: number;
  readonly handle: number;
}
export interface CancelWait {
  readonly type: 'CancelWait';
  readonly session: number;
  readonly seq: number;
  readonly handle: number;
}
/** Issued by the master when a lock-delay it learned of (pendingLockDelays) has run out. */
export interface LockDelayEnd {
  readonly type: 'LockDelayEnd';
  readonly path: string;
}

export type MachineCommand =
  | CreateSession
  | CloseSession
  | ExpireSession
  | Open
  | Close
  | SetContents
  | Delete
  | SetACL
  | Acquire
  | Release
  | CancelWait
  | LockDelayEnd;

export type MachineCommandType = MachineCommand['type'];
/** Commands sent by a client in its session, answered exactly once per (session, seq). */
export type SessionCommand = Extract<MachineCommand, { readonly seq: number }>;

// ---------------------------------------------------------------------------------------------
// Results

export interface NodeStat {
  readonly path: string;
  readonly isDirectory: boolean;
  readonly isEphemeral: boolean;
  /** Grows each time a node of this name is created (unique across the cell). */
  readonly instance: number;
  /** Grows on every write of the contents; 1 after creation. */
  readonly contentGeneration: number;
  /** Grows each time the lock goes from free to held; 0 if never held. */
  readonly lockGeneration: number;
  /** Grows on every SetACL; 1 after creation. */
  readonly aclGeneration: number;
  /** FNV-1a 64 of the contents, 16 hex digits. */
  readonly checksum: string;
  readonly sizeBytes: number;
  readonly acl: Acl;
  /** Entry times (the master's stamp), never a replica's clock. */
  readonly createdMs: number;
  readonly modifiedMs: number;
}

export interface CommandError {
  readonly type: 'error';
  readonly code: ErrorCode;
  readonly message: string;
}
export interface SessionCreated {
  readonly type: 'session-created';
  readonly session: number;
}
export interface SessionClosed {
  readonly type: 'session-closed';
}
export interface SessionExpired {
  readonly type: 'session-expired';
}
export interface Opened {
  readonly type: 'opened';
  readonly handle: number;
  readonly created: boolean;
  readonly stat: NodeStat;
}
export interface Closed {
  readonly type: 'closed';
}
export interface ContentsSet {
  readonly type: 'contents-set';
  readonly contentGeneration: number;
  readonly checksum: string;
}
export interface Deleted {
  readonly type: 'deleted';
}
export interface AclSet {
  readonly type: 'acl-set';
  readonly aclGeneration: number;
}
export interface Acquired {
  readonly type: 'acquired';
  readonly sequencer: string;
}
/** The request waits in the lock's FIFO queue; a `lock-granted` event follows when it is granted. */
export interface Queued {
  readonly type: 'queued';
}
export interface Released {
  readonly type: 'released';
}
export interface WaitCancelled {
  readonly type: 'wait-cancelled';
}
export interface LockDelayEnded {
  readonly type: 'lock-delay-ended';
  /** How many waiters the end of the delay let in. */
  readonly grantedCount: number;
}

export type CommandSuccess =
  | SessionCreated
  | SessionClosed
  | SessionExpired
  | Opened
  | Closed
  | ContentsSet
  | Deleted
  | AclSet
  | Acquired
  | Queued
  | Released
  | WaitCancelled
  | LockDelayEnded;

export type CommandResult = CommandSuccess | CommandError;

// ---------------------------------------------------------------------------------------------
// Events, addressed to one (session, handle) each, in the order the entry caused them.
// An event caused by a handle's own command is not sent to that handle: its result says it.

interface EventBase {
  readonly session: number;
  readonly handle: number;
  /** The node of the handle the event is addressed to. */
  readonly path: string;
}
export interface ContentsModifiedEvent extends EventBase {
  readonly type: 'contents-modified';
  readonly contentGeneration: number;
}
export interface ChildAddedEvent extends EventBase {
  readonly type: 'child-added';
  readonly child: string;
}
export interface ChildRemovedEvent extends EventBase {
  readonly type: 'child-removed';
  readonly child: string;
}
export interface ChildModifiedEvent extends EventBase {
  readonly type: 'child-modified';
  readonly child: string;
}
/** Someone else acquired the lock on this handle's node. */
export interface LockAcquiredEvent extends EventBase {
  readonly type: 'lock-acquired';
  readonly mode: LockMode;
}
/** This handle's queued Acquire was granted (always delivered). */
export interface LockGrantedEvent extends EventBase {
  readonly type: 'lock-granted';
  readonly mode: LockMode;
  readonly sequencer: string;
}
/** This handle holds the lock and another handle asked for it in a conflicting mode. */
export interface ConflictingLockRequestEvent extends EventBase {
  readonly type: 'conflicting-lock-request';
  readonly mode: LockMode;
}
/** This handle's node was deleted by someone else; any lock or wait it had is gone. */
export interface HandleInvalidEvent extends EventBase {
  readonly type: 'handle-invalid';
}

export type MachineEvent =
  | ContentsModifiedEvent
  | ChildAddedEvent
  | ChildRemovedEvent
  | ChildModifiedEvent
  | LockAcquiredEvent
  | LockGrantedEvent
  | ConflictingLockRequestEvent
  | HandleInvalidEvent;

// ---------------------------------------------------------------------------------------------
// Queries (read-only, no log entry) and their results

export interface GetContentsAndStat {
  readonly type: 'GetContentsAndStat';
  readonly session: number;
  readonly handle: number;
}
export interface GetStat {
  readonly type: 'GetStat';
  readonly session: number;
  readonly handle: number;
}
export interface ReadDir {
  readonly type: 'ReadDir';
  readonly session: number;
  readonly handle: number;
}
/**
 * Reads by name, without a session or handle: one round trip instead of Open, read and Close.
 * They are what a follower answers for a stale read (any replica has the whole tree), and what
 * the CLI uses. (When ACLs are enforced these will need the asking session.)
 */
export interface ReadPath {
  readonly type: 'ReadPath';
  readonly path: string;
}
export interface StatPath {
  readonly type: 'StatPath';
  readonly path: string;
}
export interface ListPath {
  readonly type: 'ListPath';
  readonly path: string;
}
export interface CheckSequencer {
  readonly type: 'CheckSequencer';
  readonly sequencer: string;
}
export interface ListSessions {
  readonly type: 'ListSessions';
}
export interface ListLocks {
  readonly type: 'ListLocks';
  /** Only this node's lock; all locks with a holder, a waiter or a lock-delay if absent. */
  readonly path?: string;
  /** The time `heldMs` is measured to; the last applied entry's time if absent. */
  readonly nowMs?: number;
}

export type Query =
  | GetContentsAndStat
  | GetStat
  | ReadDir
  | ReadPath
  | StatPath
  | ListPath
  | CheckSequencer
  | ListSessions
  | ListLocks;
export type QueryType = Query['type'];

export interface DirEntry {
  readonly name: string;
  readonly isDirectory: boolean;
  readonly isEphemeral: boolean;
}
export interface SessionInfo {
  readonly session: number;
  readonly clientName: string;
  readonly leaseMs: number;
  readonly createdMs: number;
  readonly lastSeq: number;
  readonly handleCount: number;
}
export interface LockHolderInfo {
  readonly session: number;
  readonly handle: number;
  readonly mode: LockMode;
  readonly sinceMs: number;
  readonly heldMs: number;
}
export interface LockWaiterInfo {
  readonly session: number;
  readonly handle: number;
  readonly mode: LockMode;
  readonly sinceMs: number;
}
export interface LockInfo {
  readonly path: string;
  /** Absent when the node no longer exists but its lock-delay is still pending. */
  readonly instance?: number;
  readonly lockGeneration?: number;
  readonly holders: readonly LockHolderInfo[];
  /** In FIFO order. */
  readonly waiters: readonly LockWaiterInfo[];
  readonly lockDelayEndsMs?: number;
}

export interface ContentsAndStat {
  readonly type: 'contents-and-stat';
  readonly contents: Uint8Array;
  readonly stat: NodeStat;
}
export interface StatResult {
  readonly type: 'stat';
  readonly stat: NodeStat;
}
export interface DirListing {
  readonly type: 'dir';
  /** Sorted by name (code unit order). */
  readonly entries: readonly DirEntry[];
}
export interface SequencerStatus {
  readonly type: 'sequencer-status';
  readonly isCurrent: boolean;
}
export interface SessionList {
  readonly type: 'sessions';
  readonly sessions: readonly SessionInfo[];
}
export interface LockList {
  readonly type: 'locks';
  readonly locks: readonly LockInfo[];
}

export type QueryResult =
  | ContentsAndStat
  | StatResult
  | DirListing
  | SequencerStatus
  | SessionList
  | LockList
  | CommandError;
