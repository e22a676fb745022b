// What every command handler gets: the tables, the cell, the entry's time and the list its
// events go into, plus the one way a handler fails. A failure is thrown as CommandFailure and
// caught by machine.ts, which rolls the command's SAVEPOINT back: a failing command changes
// nothing and emits nothing, however far it got. The few commands in machine.ts's NO_SAVEPOINT
// have none to roll back, so their handlers must fail before their first write (asserted).
// Anything else thrown is a bug and aborts the whole entry (STYLE.md, Errors).

import { assert, basename, ErrorCode, type MachineEvent, type NodeStat } from '@paxlock/shared';
import type { HandleRow, NodeRow, Tables } from './tables.ts';

export interface Context {
  readonly t: Tables;
  readonly cell: string;
  /** The entry's time: max(previous entry time, master's stamp). The only clock there is. */
  readonly nowMs: number;
  readonly events: MachineEvent[];
}

export class CommandFailure extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function fail(code: ErrorCode, message: string): never {
  throw new CommandFailure(code, message);
}

export function nodeStat(row: NodeRow): NodeStat {
  return {
    path: row.path,
    isDirectory: row.is_directory === 1,
    isEphemeral: row.is_ephemeral === 1,
    instance: row.instance,
    contentGeneration: row.content_generation,
    lockGeneration: row.lock_generation,
    aclGeneration: row.acl_generation,
    checksum: row.checksum,
    sizeBytes: row.size_bytes,
    acl: { read: row.acl_read, write: row.acl_write, changeAcl: row.acl_change },
    createdMs: row.created_ms,
    modifiedMs: row.modified_ms,
  };
}

/** The session's own handle, live or dead; BAD_HANDLE if absent or another session's. */
export function ownHandle(t: Tables, session: number, handleId: number): HandleRow {
  const handle = t.handle(handleId);
  if (handle?.session !== session)
    fail(ErrorCode.BAD_HANDLE, `handle ${handleId} is not open in session ${session}`);
  return handle;
}

/** The session's own handle and its node; BAD_HANDLE if the node was deleted or re-created. */
export function liveHandle(
  t: Tables,
  session: number,
  handleId: number,
): { handle: HandleRow; node: NodeRow } {
  const handle = ownHandle(t, session, handleId);
  const node = t.node(handle.path);
  if (node?.instance !== handle.instance) {
    fail(
      ErrorCode.BAD_HANDLE,
      `handle ${handleId}: ${handle.path} instance ${handle.instance} no longer exists`,
    );
  }
  return { handle, node };
}

/**
 * Fails as liveHandle does, for a handle that one of the narrow live-handle joins in tables.ts
 * (contentsTarget, lockTarget, livePath) did not find: those find exactly the handles liveHandle
 * accepts, so liveHandle throws the BAD_HANDLE it would have thrown with the same message.
 */
export function failNotLive(t: Tables, session: number, handleId: number): never {
  liveHandle(t, session, handleId);
  assert(false, `handle ${handleId} of session ${session} is live but its join found nothing`);
}

/** Sends a child-* event to the live handles on `parent` that subscribed to `bit`. */
export function notifyParent(
  ctx: Context,
  parent: { readonly path: string; readonly instance: number },
  bit: number,
  type: 'child-added' | 'child-removed' | 'child-modified',
  childPath: string,
): void {
  const child = basename(childPath);
  for (const watcher of ctx.t.watchers(parent.path, parent.instance, bit, 0)) {
    ctx.events.push({
      type,
      session: watcher.session,
      handle: watcher.id,
      path: parent.path,
      child,
    });
  }
}
