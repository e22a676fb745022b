// @paxlock/client: sessions with jeopardy and grace, files and handles, locks with sequencers
// and a fencing guard, and leader election. docs/client.md is the guide.
export { Connection } from './connection.ts';
export type { Push, Reply, Request } from './connection.ts';
export { defaultCell, findMaster, LOCAL_CELL, parseCellList, PaxlockClient } from './client.ts';
export type { CallOptions, ClientEvents, ClientOptions, ReadAnswer, ReadOptions, SessionCommandInput } from './client.ts';
export {
  ClientErrorCode,
  isPaxlockError,
  PaxlockError,
  PaxlockError as ConnectionError,
} from './errors.ts';
export type { PaxlockErrorCode } from './errors.ts';
export { CLIENT_CLOCK_DRIFT, SessionLease } from './session.ts';
export type { SessionState } from './session.ts';
export { DEFAULT_LOCK_DELAY_MS, eventMaskOf, Handle } from './files.ts';
export type {
  HandleEvent,
  HandleEvents,
  OpenOptions,
  RereadEvent,
  WatchableEvent,
  WriteFileOptions,
  WriteOptions,
} from './files.ts';
export { FencingGuard, Lock } from './locks.ts';
export type { AcquireOptions, WithLockOptions } from './locks.ts';
export { DEFAULT_ELECTION_LOCK_DELAY_MS, Election } from './election.ts';
export type { ElectionOptions, LeaderInfo, Leadership } from './election.ts';
// From @paxlock/shared, so applications need only this package.
export { encodeSequencer, ErrorCode, LIMITS, parseSequencer } from '@paxlock/shared';
export type { DirEntry, LockInfo, LockMode, NodeStat, Sequencer, SessionInfo, ReplicaStatus, Epoch } from '@paxlock/shared';
