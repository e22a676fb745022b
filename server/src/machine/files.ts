// The namespace (Burrows 2006, section 2.3): a strict tree of directories and files under
// `/ls/<cell>`, each permanent or ephemeral, with Chubby's per-node metadata (instance number,
// content, lock and ACL generations, a 64-bit checksum, three ACL names inherited from the parent
// at creation, entry times). Files are read and written whole. Handles are bound to the node's
// instance, so a handle on a deleted (or deleted and re-created) node is dead: BAD_HANDLE.
//
// Ephemeral nodes go away when nothing needs them: an ephemeral file when its last live handle
// closes, an ephemeral directory when it has no live handle and no children. Removal cascades to
// an ephemeral parent that this leaves empty and unopened.

import {
  checksum64,
  EMPTY_CHECKSUM,
  ErrorCode,
  EventMask,
  LIMITS,
  parentOf,
  parsePath,
} from '@paxlock/shared';
import type { AclSet, ContentsSet, Open, Opened, SetACL, SetContents } from '@paxlock/shared';
import { assert } from '@paxlock/shared';
import {
  fail,
  failNotLive,
  liveHandle,
  nodeStat,
  notifyParent,
  ownHandle,
  type Context,
} from './context.ts';
import { dropHandleLock, dropLockOfDeletedNode } from './locks.ts';
import type { HandleRow, NodeRow } from './tables.ts';

const EMPTY = new Uint8Array(0);

function parentNode(ctx: Context, node: NodeRow): NodeRow {
  assert(node.parent !== null, `${node.path} has no parent`);
  const parent = ctx.t.node(node.parent);
  assert(parent !== undefined, `parent of ${node.path} is missing`);
  return parent;
}

export function open(ctx: Context, command: Open): Opened {
  if (parsePath(command.path)?.cell !== ctx.cell)
    fail(ErrorCode.BAD_PATH, `${command.path} is not in cell ${ctx.cell}`);
  if (ctx.t.handleCount(command.session) >= LIMITS.handlesPerSessionMax) {
    fail(
      ErrorCode.TOO_MANY,
      `session ${command.session} has ${LIMITS.handlesPerSessionMax} handles open`,
    );
  }
  let node = ctx.t.node(command.path);
  const created = node === undefined;
  if (node !== undefined) {
    if (command.create === 'must') fail(ErrorCode.EXISTS, `${command.path} exists`);
  } else {
    if (command.create === 'never') fail(ErrorCode.NOT_FOUND, `${command.path} does not exist`);
    node = createNode(ctx, command);
  }
  if (command.directory && node.is_directory === 0)
    fail(ErrorCode.NOT_A_DIRECTORY, `${command.path} is a file`);
  if (!command.directory && node.is_directory === 1)
    fail(ErrorCode.IS_A_DIRECTORY, `${command.path} is a directory`);
  const handle: HandleRow = {
    id: ctx.t.nextId('next_handle'),
    session: command.session,
    path: node.path,
    instance: node.instance,
    event_mask: command.eventMask,
    lock_delay_ms: command.lockDelayMs,
  };
  ctx.t.insertHandle(handle);
  return { type: 'opened', handle: handle.id, created, stat: nodeStat(node) };
}

function createNode(ctx: Context, command: Open): NodeRow {
  const parentPath = parentOf(command.path);
  // Only the cell root has no parent, and the cell root always exists, so it is never created.
  assert(parentPath !== undefined, `creating a cell root ${command.path}`);
  const parent = ctx.t.node(parentPath);
  if (parent === undefined) fail(ErrorCode.NOT_FOUND, `parent ${parentPath} does not exist`);
  if (parent.is_directory === 0) fail(ErrorCode.NOT_A_DIRECTORY, `parent ${parentPath} is a file`);
  const contents = command.contents ?? EMPTY;
  ctx.t.insertNode({
    path: command.path,
    parent: parentPath,
    is_directory: command.directory ? 1 : 0,
    is_ephemeral: command.ephemeral ? 1 : 0,
    contents,
    instance: ctx.t.nextId('next_instance'),
    checksum: contents.length === 0 ? EMPTY_CHECKSUM : checksum64(contents),
    acl_read: parent.acl_read,
    acl_write: parent.acl_write,
    acl_change: parent.acl_change,
    now_ms: ctx.nowMs,
  });
  notifyParent(ctx, parent, EventMask.childAdded, 'child-added', command.path);
  const node = ctx.t.node(command.path);
  assert(node !== undefined, `${command.path} vanished after insert`);
  return node;
}

/**
 * Every failure comes before the first write (the UPDATE), so a failing SetContents changes
 * nothing even without its own SAVEPOINT (machine.ts, NO_SAVEPOINT).
 */
export function setContents(ctx: Context, command: SetContents): ContentsSet {
  const node =
    ctx.t.contentsTarget(command.session, command.handle) ??
    failNotLive(ctx.t, command.session, command.handle);
  if (node.is_directory === 1) fail(ErrorCode.IS_A_DIRECTORY, `${node.path} is a directory`);
  if (command.ifGeneration !== undefined && command.ifGeneration !== node.content_generation) {
    fail(
      ErrorCode.CAS_MISMATCH,
      `${node.path} is at generation ${node.content_generation}, not ${command.ifGeneration}`,
    );
  }
  const checksum = checksum64(command.contents);
  ctx.t.setContents(node.path, command.contents, checksum, ctx.nowMs);
  const contentGeneration = node.content_generation + 1;
  for (const watcher of ctx.t.watchers(
    node.path,
    node.instance,
    EventMask.contentsModified,
    command.handle,
  )) {
    ctx.events.push({
      type: 'contents-modified',
      session: watcher.session,
      handle: watcher.id,
      path: node.path,
      contentGeneration,
    });
  }
  // Only the cell root has no parent, and it is a directory, which failed above.
  assert(
    node.parent !== null && node.parent_instance !== null,
    `parent of ${node.path} is missing`,
  );
  notifyParent(
    ctx,
    { path: node.parent, instance: node.parent_instance },
    EventMask.childModified,
    'child-modified',
    node.path,
  );
  return { type: 'contents-set', contentGeneration, checksum };
}

export function setAcl(ctx: Context, command: SetACL): AclSet {
  const { node } = liveHandle(ctx.t, command.session, command.handle);
  ctx.t.setAcl(node.path, command.acl.read, command.acl.write, command.acl.changeAcl);
  return { type: 'acl-set', aclGeneration: node.acl_generation + 1 };
}

/** Delete through a handle: the node must not be the cell root nor a non-empty directory. */
export function deleteThroughHandle(ctx: Context, session: number, handleId: number): void {
  const { handle, node } = liveHandle(ctx.t, session, handleId);
  if (node.parent === null)
    fail(ErrorCode.BAD_REQUEST, `the cell root ${node.path} cannot be deleted`);
  if (node.is_directory === 1 && ctx.t.hasChild(node.path))
    fail(ErrorCode.NOT_EMPTY, `${node.path} has children`);
  removeNode(ctx, node, handle.id);
}

/**
 * Removes a node: other live handles on it die (handle-invalid), its lock goes (lost holders
 * start lock-delay), the parent's subscribers hear child-removed, and an ephemeral parent left
 * empty and unopened goes too. `byHandle` is the deleting handle (0 for ephemeral clean-up).
 */
function removeNode(ctx: Context, node: NodeRow, byHandle: number): void {
  for (const other of ctx.t.liveHandles(node.path, node.instance)) {
    if (other.id === byHandle) continue;
    ctx.events.push({
      type: 'handle-invalid',
      session: other.session,
      handle: other.id,
      path: node.path,
    });
  }
  dropLockOfDeletedNode(ctx, node.path, byHandle);
  const parent = parentNode(ctx, node);
  ctx.t.deleteNode(node.path);
  notifyParent(ctx, parent, EventMask.childRemoved, 'child-removed', node.path);
  removeIfUnneeded(ctx, parent);
}

/** Removes an ephemeral node that no live handle and no child keeps alive. */
function removeIfUnneeded(ctx: Context, node: NodeRow): void {
  if (node.is_ephemeral === 0) return;
  if (ctx.t.liveHandleCount(node.path, node.instance) > 0) return;
  if (node.is_directory === 1 && ctx.t.hasChild(node.path)) return;
  removeNode(ctx, node, 0);
}

/**
 * Closes a handle: its lock or wait goes (`isLost` starts lock-delay: the session expired), the
 * handle row goes, and an ephemeral node it kept alive goes. Dead handles close quietly.
 */
export function closeHandle(ctx: Context, handle: HandleRow, isLost: boolean): void {
  dropHandleLock(ctx, handle, isLost);
  ctx.t.deleteHandle(handle);
  const node = ctx.t.node(handle.path);
  if (node?.instance === handle.instance) removeIfUnneeded(ctx, node);
}

export function close(ctx: Context, session: number, handleId: number): void {
  closeHandle(ctx, ownHandle(ctx.t, session, handleId), false);
}
