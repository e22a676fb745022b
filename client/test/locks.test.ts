// The lock's signal after the process was frozen (locks.ts): when a process resumes, timers and
// I/O that fell due while it was stopped run before the client's lease timer, so the signal must
// fire at the first read of `aborted`, not when the lease timer gets its turn.

import { describe, expect, it } from 'vitest';
import type { PaxlockClient } from '../src/client.ts';
import type { Handle } from '../src/files.ts';
import { Lock, LockState } from '../src/locks.ts';

/** A handle whose client reports `state`, the way PaxlockClient does: moved on to now. */
function fakeHandle(client: { readonly state: string }): Handle {
  return {
    client: client as unknown as PaxlockClient,
    path: '/ls/local/l',
    isValid: true,
  } as unknown as Handle;
}

describe('Lock', () => {
  it('fires its signal at the first read of aborted once the lease has run out, before any timer', () => {
    let leaseRanOut = false;
    const lock: Lock = new Lock(
      fakeHandle({
        get state() {
          return leaseRanOut ? 'jeopardy' : 'connected';
        },
      }),
      'exclusive',
      'S1:x:1:1:/ls/local/l',
    );
    const fired: string[] = [];
    lock.signal.addEventListener('abort', () => fired.push('abort'));
    expect(lock.signal.aborted).toBe(false);
    leaseRanOut = true; // the process slept through its lease; no timer has run yet
    expect(lock.signal.aborted).toBe(true);
    expect(fired).toEqual(['abort']);
    expect(String(lock.signal.reason)).toMatch(/LOCK_LOST|the session is jeopardy/);
    expect(() => {
      lock.signal.throwIfAborted();
    }).toThrow(/the session is jeopardy/);
    expect(lock.isHeld).toBe(false);
  });

  it('keeps one reason when reading the state fires the signal itself', () => {
    let lock: Lock | null = null;
    let leaseRanOut = false;
    const client = {
      get state() {
        // As PaxlockClient: the read moves the lease on and loses the lock synchronously.
        if (leaseRanOut) lock?.lose('the session is in jeopardy');
        return leaseRanOut ? 'jeopardy' : 'connected';
      },
    };
    lock = new Lock(fakeHandle(client), 'exclusive', 'S1:x:1:1:/ls/local/l');
    leaseRanOut = true;
    expect(lock.signal.aborted).toBe(true);
    expect((lock.signal.reason as Error).message).toBe(
      'lock /ls/local/l: the session is in jeopardy',
    );
  });
});

describe('LockState', () => {
  it('keeps a grant that arrives before the queued reply is handled (same socket read)', async () => {
    const state = new LockState(fakeHandle({ state: 'connected' }));
    state.expectGrant();
    // The grant event is dispatched first; the code awaiting the Acquire reply runs after.
    state.onGranted('S1:x:2:1:/ls/local/l');
    await expect(state.waitForGrant('exclusive', {})).resolves.toBe('S1:x:2:1:/ls/local/l');
  });

  it('asks the master at once when events may have been lost while the Acquire was on its way', async () => {
    // A fail-over while Acquire(wait) is in flight: the grant came at the old master and its push
    // was lost; the retried Acquire is answered 'queued' from the session's record. Without the
    // recheck the wait would trust a push that will never come (found by the cell simulator).
    const asked: string[] = [];
    const client = {
      state: 'connected',
      session: 7,
      query: (query: { type: string; path: string }) => {
        asked.push(`${query.type} ${query.path}`);
        return Promise.resolve({
          type: 'locks',
          locks: [
            {
              path: '/ls/local/l',
              instance: 3,
              lockGeneration: 9,
              holders: [{ session: 7, handle: 11, mode: 'exclusive', sinceMs: 1, heldMs: 0 }],
              waiters: [],
            },
          ],
        });
      },
    };
    const handle = { client, path: '/ls/local/l', id: 11, isValid: true } as unknown as Handle;
    const state = new LockState(handle);
    state.expectGrant();
    state.onReread(); // master-failover while the Acquire is unanswered
    await expect(state.waitForGrant('exclusive', { timeoutMs: 2_000 })).resolves.toBe(
      'S1:x:9:3:/ls/local/l',
    );
    expect(asked).toEqual(['ListLocks /ls/local/l']);

    // Without a reread the wait trusts the push and asks nothing.
    asked.length = 0;
    state.expectGrant();
    await expect(state.waitForGrant('exclusive', { timeoutMs: 50 })).rejects.toThrow(
      /not granted within 50 ms/,
    );
    expect(asked).toEqual([]);
  });

  it('does not take a stray grant from before the Acquire was sent', async () => {
    const state = new LockState(fakeHandle({ state: 'connected' }));
    state.onGranted('S1:x:1:1:/ls/local/l');
    state.expectGrant();
    const waiting = state.waitForGrant('exclusive', { timeoutMs: 50 });
    await expect(waiting).rejects.toThrow(/not granted within 50 ms/);
  });
});
