// Read-only queries (Burrows 2006, section 2.6): answered from the local database without a log
// entry; the master serves them under its lease, so they see every write it has acknowledged.
// They never change the database. A client's reads go through its session's handle, with the
// same liveness rules as commands; the operator queries (sessions, locks) need no session.

import { assertNever, ErrorCode, parseSequencer } from '@paxlock/shared';
import type { CommandError, LockInfo, Query, QueryResult } from '@paxlock/shared';
import { CommandFailure, fail, liveHandle, nodeStat } from './context.ts';
import type { Tables } from './tables.ts';

function sessionHandle(t: Tables, session: number, handle: number): ReturnType<typeof liveHandle> {
  if (t.lastSeq(session) === undefined)
    fail(ErrorCode.SESSION_EXPIRED, `session ${session} does not exist`);
  return liveHandle(t, session, handle);
}

function lockInfo(t: Tables, path: string, nowMs: number): LockInfo {
  const node = t.node(path);
  const delay = t.delay(path);
  const holders = t.holders(path).map((holder) => ({
    session: holder.session,
    handle: holder.handle,
    mode: holder.mode,
    sinceMs: holder.since_ms,
    heldMs: Math.max(0, nowMs - holder.since_ms),
  }));
  const waiters = t.waiters(path).map((waiter) => ({
    session: waiter.session,
    handle: waiter.handle,
    mode: waiter.mode,
    sinceMs: waiter.since_ms,
  }));
  return {
    path,
    ...(node === undefined
      ? {}
      : { instance: node.instance, lockGeneration: node.lock_generation }),
    holders,
    waiters,
    ...(delay === undefined || delay.ends_ms <= nowMs ? {} : { lockDelayEndsMs: delay.ends_ms }),
  };
}

type NodeRow = NonNullable<ReturnType<Tables['node']>>;

function nodeAt(t: Tables, path: string): NodeRow {
  const node = t.node(path);
  if (node === undefined) fail(ErrorCode.NOT_FOUND, `${path} does not exist`);
  return node;
}

function contentsOf(t: Tables, node: NodeRow): QueryResult {
  if (node.is_directory === 1) fail(ErrorCode.IS_A_DIRECTORY, `${node.path} is a directory`);
  return { type: 'contents-and-stat', contents: t.contents(node.path), stat: nodeStat(node) };
}

function listingOf(t: Tables, node: NodeRow): QueryResult {
  if (node.is_directory === 0) fail(ErrorCode.NOT_A_DIRECTORY, `${node.path} is a file`);
  const entries = t.children(node.path).map((child) => ({
    name: child.path.slice(node.path.length + 1),
    isDirectory: child.is_directory === 1,
    isEphemeral: child.is_ephemeral === 1,
  }));
  return { type: 'dir', entries };
}

function answer(t: Tables, query: Query, timeMs: number): QueryResult {
  switch (query.type) {
    case 'GetContentsAndStat':
      return contentsOf(t, sessionHandle(t, query.session, query.handle).node);
    case 'GetStat':
      return { type: 'stat', stat: nodeStat(sessionHandle(t, query.session, query.handle).node) };
    case 'ReadDir':
      return listingOf(t, sessionHandle(t, query.session, query.handle).node);
    case 'ReadPath':
      return contentsOf(t, nodeAt(t, query.path));
    case 'StatPath':
      return { type: 'stat', stat: nodeStat(nodeAt(t, query.path)) };
    case 'ListPath':
      return listingOf(t, nodeAt(t, query.path));
    case 'CheckSequencer': {
      const sequencer = parseSequencer(query.sequencer);
      if (sequencer === undefined) fail(ErrorCode.BAD_REQUEST, 'not a sequencer');
      const node = t.node(sequencer.path);
      const isCurrent =
        node?.instance === sequencer.instance &&
        node.lock_generation === sequencer.lockGeneration &&
        t.holders(sequencer.path).some((holder) => holder.mode === sequencer.mode);
      return { type: 'sequencer-status', isCurrent };
    }
    case 'ListSessions':
      return {
        type: 'sessions',
        sessions: t.sessions().map((row) => ({
          session: row.id,
          clientName: row.client_name,
          leaseMs: row.lease_ms,
          createdMs: row.created_ms,
          lastSeq: row.last_seq,
          handleCount: row.handle_count,
        })),
      };
    case 'ListLocks': {
      const nowMs = query.nowMs ?? timeMs;
      const paths = query.path === undefined ? t.lockPaths() : [query.path];
      return { type: 'locks', locks: paths.map((path) => lockInfo(t, path, nowMs)) };
    }
    default:
      return assertNever(query);
  }
}

/** Answers a validated query; expected failures come back as an error result. */
export function runQuery(t: Tables, query: Query, timeMs: number): QueryResult {
  try {
    return answer(t, query, timeMs);
  } catch (err: unknown) {
    if (err instanceof CommandFailure) return errorResult(err);
    throw err;
  }
}

export function errorResult(err: CommandFailure): CommandError {
  return { type: 'error', code: err.code, message: err.message };
}
