// Advisory locks (Burrows 2006, sections 2.4 and 2.6): every node has a lock, held by one
// exclusive holder or by any number of shared holders, with a FIFO queue of waiters kept in the
// replicated state so that the order survives a fail-over and a release grants the next waiters
// in the same entry. A request is granted at once only if it is compatible with the holders,
// nobody is queued before it, and no lock-delay is running; otherwise it waits or fails.
//
// Lock-delay: when a holder is lost (its session expired, or its handle died because someone
// else deleted the node) the lock is closed to new grants until now + that handle's lock-delay,
// so that the lost holder's in-flight requests to a resource drain first. A clean release
// (Release, Close, CloseSession, the holder deleting the node itself) never starts a delay.
// While a delay runs, existing shared holders keep the lock but nobody new gets it, of any mode.
// The delay ends by time; the queued waiters are then granted by the LockDelayEnd command, which
// the master issues when pendingLockDelays() says a delay is due.

import { encodeSequencer, ErrorCode, EventMask } from '@paxlock/shared';
import type {
  Acquire,
  Acquired,
  LockDelayEnd,
  LockDelayEnded,
  LockMode,
  Queued,
} from '@paxlock/shared';
import { fail, failNotLive, liveHandle, type Context } from './context.ts';
import type { HandleRow, HolderRow, LockTarget } from './tables.ts';

function isDelayed(ctx: Context, path: string): boolean {
  const endsMs = ctx.t.delayEndsMs(path);
  return endsMs !== undefined && endsMs > ctx.nowMs;
}

function conflicts(mode: LockMode, holders: readonly HolderRow[]): boolean {
  if (holders.length === 0) return false;
  return mode === 'exclusive' || holders.some((holder) => holder.mode === 'exclusive');
}

/** Makes a handle a holder and tells the node's other subscribed handles. Returns the sequencer. */
function grant(
  ctx: Context,
  node: LockTarget,
  handle: { id: number; session: number },
  mode: LockMode,
  wasFree: boolean,
): string {
  const lockGeneration = wasFree
    ? ctx.t.bumpLockGeneration(node.path, node.lock_generation)
    : node.lock_generation;
  ctx.t.insertHolder({
    handle: handle.id,
    path: node.path,
    session: handle.session,
    mode,
    since_ms: ctx.nowMs,
  });
  for (const watcher of ctx.t.watchers(
    node.path,
    node.instance,
    EventMask.lockAcquired,
    handle.id,
  )) {
    ctx.events.push({
      type: 'lock-acquired',
      session: watcher.session,
      handle: watcher.id,
      path: node.path,
      mode,
    });
  }
  return encodeSequencer({ path: node.path, mode, lockGeneration, instance: node.instance });
}

/**
 * Grants queued waiters from the head of the queue while they are compatible: an exclusive head
 * needs a free lock and stops the scan; shared heads are granted until the first exclusive
 * waiter, so shared waiters behind an exclusive waiter wait for it. Returns how many were granted.
 */
export function grantWaiters(ctx: Context, path: string): number {
  // Two reads in either order: an empty queue (the common case) is the cheaper one to rule out.
  // The queue is read one waiter at a time from its head: the scan stops at the first waiter it
  // cannot grant (after an exclusive grant, without reading on), so a long queue costs one row.
  let waiter = ctx.t.nextWaiter(path, 0);
  if (waiter === undefined) return 0;
  if (isDelayed(ctx, path)) return 0;
  let node = ctx.t.node(path);
  if (node === undefined) return 0;
  const holders = ctx.t.holders(path);
  let holderCount = holders.length;
  let hasExclusive = holders.some((holder) => holder.mode === 'exclusive');
  let granted = 0;
  while (waiter !== undefined) {
    if (hasExclusive || (waiter.mode === 'exclusive' && holderCount > 0)) break;
    ctx.t.deleteWaiter(waiter.handle);
    const sequencer = grant(
      ctx,
      node,
      { id: waiter.handle, session: waiter.session },
      waiter.mode,
      holderCount === 0,
    );
    // The grant may have bumped the lock generation; later grants in this loop join that tenure.
    if (holderCount === 0) node = { ...node, lock_generation: node.lock_generation + 1 };
    ctx.events.push({
      type: 'lock-granted',
      session: waiter.session,
      handle: waiter.handle,
      path,
      mode: waiter.mode,
      sequencer,
    });
    holderCount++;
    hasExclusive = waiter.mode === 'exclusive';
    granted++;
    waiter = hasExclusive ? undefined : ctx.t.nextWaiter(path, waiter.id);
  }
  return granted;
}

/**
 * Whether an Acquire applied now would be queued (read-only: writes nothing). False when it would
 * be granted or would fail. The master uses it only to decide when to propose, never what.
 */
export function wouldQueue(ctx: Context, command: Acquire): boolean {
  if (!command.wait) return false;
  const node = ctx.t.lockTarget(command.session, command.handle);
  if (node === undefined || ctx.t.holdsOrWaits(command.handle)) return false;
  return (
    conflicts(command.mode, ctx.t.holders(node.path)) ||
    ctx.t.hasWaiter(node.path) ||
    isDelayed(ctx, node.path)
  );
}

/**
 * Every failure comes before the first write (a grant or the queue insert), so a failing Acquire
 * changes nothing even without its own SAVEPOINT (machine.ts, NO_SAVEPOINT).
 */
export function acquire(ctx: Context, command: Acquire): Acquired | Queued {
  const node =
    ctx.t.lockTarget(command.session, command.handle) ??
    failNotLive(ctx.t, command.session, command.handle);
  const handle = { id: command.handle, session: command.session };
  if (ctx.t.holdsOrWaits(handle.id)) {
    fail(
      ErrorCode.LOCK_ALREADY_OWNED,
      `handle ${handle.id} already holds or waits for ${node.path}`,
    );
  }
  const holders = ctx.t.holders(node.path);
  const isConflicting = conflicts(command.mode, holders);
  const isQueueBusy = ctx.t.hasWaiter(node.path);
  const delayed = isDelayed(ctx, node.path);
  if (!isConflicting && !isQueueBusy && !delayed) {
    const sequencer = grant(ctx, node, handle, command.mode, holders.length === 0);
    return { type: 'acquired', sequencer };
  }
  if (!command.wait) {
    if (isConflicting || isQueueBusy)
      fail(ErrorCode.LOCK_HELD, `${node.path} is held or has waiters`);
    fail(ErrorCode.LOCK_DELAYED, `${node.path} is in lock-delay`);
  }
  ctx.t.insertWaiter({
    id: ctx.t.nextId('next_waiter'),
    handle: handle.id,
    path: node.path,
    session: handle.session,
    mode: command.mode,
    since_ms: ctx.nowMs,
  });
  if (isConflicting) {
    // Holders learn that someone wants the lock (Chubby's conflicting-lock-request, which lets a
    // holder that caches a lock give it up). Only subscribed holders; in handle order.
    for (const holder of holders) {
      const holderHandle = ctx.t.handle(holder.handle);
      if (
        holderHandle === undefined ||
        (holderHandle.event_mask & EventMask.conflictingLockRequest) === 0
      )
        continue;
      ctx.events.push({
        type: 'conflicting-lock-request',
        session: holder.session,
        handle: holder.handle,
        path: node.path,
        mode: command.mode,
      });
    }
  }
  return { type: 'queued' };
}

/**
 * Removes whatever the handle has on its lock (a hold or a place in the queue), then lets the
 * queue move. `isLost` says the holder was lost rather than letting go, which starts lock-delay.
 * Returns whether the handle held the lock.
 */
export function dropHandleLock(ctx: Context, handle: HandleRow, isLost: boolean): boolean {
  const holder = ctx.t.holder(handle.id);
  if (holder !== undefined) {
    ctx.t.deleteHolder(handle.id);
    if (isLost && handle.lock_delay_ms > 0)
      ctx.t.extendDelay(holder.path, ctx.nowMs + handle.lock_delay_ms);
    grantWaiters(ctx, holder.path);
    return true;
  }
  const waiter = ctx.t.waiter(handle.id);
  if (waiter !== undefined) {
    ctx.t.deleteWaiter(handle.id);
    // The departing waiter may have been the exclusive head that shared waiters were behind.
    grantWaiters(ctx, waiter.path);
  }
  return false;
}

/**
 * dropHandleLock(handle, false) for a handle known to hold its lock. Every failure comes before
 * the first write (deleting the hold), so a failing Release changes nothing even without its own
 * SAVEPOINT (machine.ts, NO_SAVEPOINT).
 */
export function release(ctx: Context, session: number, handleId: number): void {
  const path = ctx.t.livePath(session, handleId) ?? failNotLive(ctx.t, session, handleId);
  const heldPath = ctx.t.holderPath(handleId);
  if (heldPath === undefined)
    fail(ErrorCode.LOCK_NOT_HELD, `handle ${handleId} does not hold ${path}`);
  ctx.t.deleteHolder(handleId);
  grantWaiters(ctx, heldPath);
}

export function cancelWait(ctx: Context, session: number, handleId: number): void {
  const { handle, node } = liveHandle(ctx.t, session, handleId);
  if (ctx.t.waiter(handle.id) === undefined)
    fail(ErrorCode.NOT_WAITING, `handle ${handle.id} is not queued for ${node.path}`);
  dropHandleLock(ctx, handle, false);
}

export function lockDelayEnd(ctx: Context, command: LockDelayEnd): LockDelayEnded {
  const delay = ctx.t.delay(command.path);
  // Nothing pending: an earlier LockDelayEnd already ended it. Harmless, so not an error.
  if (delay === undefined) return { type: 'lock-delay-ended', grantedCount: 0 };
  if (delay.ends_ms > ctx.nowMs)
    fail(ErrorCode.LOCK_DELAYED, `lock-delay of ${command.path} ends at ${delay.ends_ms}`);
  ctx.t.deleteDelay(command.path);
  return { type: 'lock-delay-ended', grantedCount: grantWaiters(ctx, command.path) };
}

/**
 * The lock of a node being deleted goes with it. Other handles' holds count as lost (lock-delay
 * on the path, which a re-created node of that name inherits); the deleter's own hold is a clean
 * release. Waiters are dropped: their handles die with the node and get handle-invalid.
 */
export function dropLockOfDeletedNode(ctx: Context, path: string, deleterHandle: number): void {
  let delayMs = 0;
  for (const holder of ctx.t.holders(path)) {
    if (holder.handle === deleterHandle) continue;
    delayMs = Math.max(delayMs, ctx.t.handle(holder.handle)?.lock_delay_ms ?? 0);
  }
  ctx.t.deleteHoldersOf(path);
  ctx.t.deleteWaitersOf(path);
  if (delayMs > 0) ctx.t.extendDelay(path, ctx.nowMs + delayMs);
}
