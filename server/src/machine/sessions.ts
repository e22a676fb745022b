// Sessions (Burrows 2006, section 2.8): created, closed and expired through the log, with the
// last applied request seq and its result, so that a retried command is answered from the record
// instead of being applied twice (DESIGN.md, Sessions). KeepAlives are not commands: the master
// holds leases in memory and issues ExpireSession when one runs out.
//
// Closing a session is the client letting go: locks are released cleanly. Expiry is the holder
// being lost: locks are released with each handle's lock-delay. Either way every handle closes
// (in handle order), waits are cancelled and the session's ephemeral nodes go.

import { ErrorCode, type CreateSession, type SessionCreated } from '@paxlock/shared';
import { fail, type Context } from './context.ts';
import { closeHandle } from './files.ts';
import { grantWaiters } from './locks.ts';

/**
 * Creates a session. A retry of a creation (the same nonce) while its session lives gets that
 * session back: CreateSession has no seq, so the nonce is what makes it exactly-once. Once that
 * session has ended, the nonce is free and a late retry creates a new session.
 */
export function createSession(ctx: Context, command: CreateSession): SessionCreated {
  if (command.nonce !== undefined) {
    const existing = ctx.t.sessionByNonce(command.nonce);
    if (existing !== undefined) return { type: 'session-created', session: existing };
  }
  const session = ctx.t.nextId('next_session');
  ctx.t.insertSession(session, {
    clientName: command.clientName,
    leaseMs: command.leaseMs,
    nowMs: ctx.nowMs,
    nonce: command.nonce ?? null,
  });
  return { type: 'session-created', session };
}

/** Ends a session; `isLost` (expiry) applies lock-delay to the locks it held. */
export function endSession(ctx: Context, session: number, isLost: boolean): void {
  if (ctx.t.lastSeq(session) === undefined)
    fail(ErrorCode.SESSION_EXPIRED, `session ${session} does not exist`);
  const handles = ctx.t.handlesOfSession(session);
  // Waits go first, without granting anything, so that closing one handle cannot grant a lock
  // to another handle of the same dying session. The queues move once everything is closed.
  const waitedPaths = new Set<string>();
  for (const handle of handles) {
    const waiter = ctx.t.waiter(handle.id);
    if (waiter === undefined) continue;
    ctx.t.deleteWaiter(handle.id);
    waitedPaths.add(waiter.path);
  }
  for (const handle of handles) closeHandle(ctx, handle, isLost);
  for (const path of [...waitedPaths].sort()) grantWaiters(ctx, path);
  ctx.t.deleteSession(session);
}
