// Proves the locks: exclusive and shared modes, try versus wait, the FIFO queue (shared waiters
// behind an exclusive waiter wait for it; a release grants the next waiters in the same entry),
// lock-delay only when a holder is lost, its end through LockDelayEnd, sequencers and
// CheckSequencer (stale after release and re-acquire, and after the node is re-created), and the
// lock events.
import { describe, expect, test } from 'vitest';
import { EventMask, type CommandResult } from '@paxlock/shared';
import { errorCode, Harness, ROOT } from './harness.ts';

const F = `${ROOT}/f`;

function sequencerOf(result: CommandResult): string {
  if (result.type !== 'acquired') throw new Error(JSON.stringify(result));
  return result.sequencer;
}

function holders(h: Harness, path = F): number[] {
  const result = h.locks(path);
  if (result.type !== 'locks') throw new Error(JSON.stringify(result));
  return result.locks[0]?.holders.map((holder) => holder.handle) ?? [];
}

function waiters(h: Harness, path = F): number[] {
  const result = h.locks(path);
  if (result.type !== 'locks') throw new Error(JSON.stringify(result));
  return result.locks[0]?.waiters.map((waiter) => waiter.handle) ?? [];
}

function isCurrent(h: Harness, sequencer: string): boolean {
  const result = h.query({ type: 'CheckSequencer', sequencer });
  if (result.type !== 'sequencer-status') throw new Error(JSON.stringify(result));
  return result.isCurrent;
}

describe('modes', () => {
  test('exclusive excludes everyone; try fails with LOCK_HELD', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F);
    const b = h.handle(s, F);
    expect(h.acquire(s, a).result).toEqual({ type: 'acquired', sequencer: `S1:x:1:2:${F}` });
    expect(errorCode(h.acquire(s, b).result)).toBe('LOCK_HELD');
    expect(errorCode(h.acquire(s, b, 'shared').result)).toBe('LOCK_HELD');
    expect(holders(h)).toEqual([a]);
  });

  test('shared holders share; exclusive is refused while they hold', () => {
    const h = new Harness();
    const s = h.session();
    const [a, b, c] = [h.handle(s, F), h.handle(s, F), h.handle(s, F)];
    expect(h.acquire(s, a, 'shared').result).toMatchObject({
      type: 'acquired',
      sequencer: `S1:s:1:2:${F}`,
    });
    expect(h.acquire(s, b, 'shared').result).toMatchObject({
      type: 'acquired',
      sequencer: `S1:s:1:2:${F}`,
    });
    expect(errorCode(h.acquire(s, c).result)).toBe('LOCK_HELD');
    expect(holders(h)).toEqual([a, b]);
  });

  test('a handle cannot acquire twice, nor release what it does not hold', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F);
    const b = h.handle(s, F);
    h.acquire(s, a);
    expect(errorCode(h.acquire(s, a).result)).toBe('LOCK_ALREADY_OWNED');
    h.acquire(s, b, 'exclusive', true);
    expect(errorCode(h.acquire(s, b, 'exclusive', true).result)).toBe('LOCK_ALREADY_OWNED');
    expect(errorCode(h.send('Release', s, { handle: b }).result)).toBe('LOCK_NOT_HELD');
    expect(errorCode(h.send('CancelWait', s, { handle: a }).result)).toBe('NOT_WAITING');
  });

  test('directories have locks too', () => {
    const h = new Harness();
    const s = h.session();
    const d = h.handle(s, `${ROOT}/d`, { directory: true });
    expect(h.acquire(s, d).result).toMatchObject({ type: 'acquired' });
  });
});

describe('the waiter queue', () => {
  test('waiters are granted in FIFO order, in the entry of the release, with lock-granted', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const holder = h.handle(s, F);
    const w1 = h.handle(t, F);
    const w2 = h.handle(t, F);
    h.acquire(s, holder);
    expect(h.acquire(t, w1, 'exclusive', true).result).toEqual({ type: 'queued' });
    expect(h.acquire(t, w2, 'exclusive', true).result).toEqual({ type: 'queued' });
    expect(waiters(h)).toEqual([w1, w2]);
    const { events } = h.send('Release', s, { handle: holder });
    expect(events).toEqual([
      {
        type: 'lock-granted',
        session: t,
        handle: w1,
        path: F,
        mode: 'exclusive',
        sequencer: `S1:x:2:2:${F}`,
      },
    ]);
    expect(holders(h)).toEqual([w1]);
    expect(waiters(h)).toEqual([w2]);
  });

  test('a release grants every shared waiter up to the first exclusive one', () => {
    const h = new Harness();
    const s = h.session();
    const [x, s1, s2, x2, s3] = [
      h.handle(s, F),
      h.handle(s, F),
      h.handle(s, F),
      h.handle(s, F),
      h.handle(s, F),
    ];
    h.acquire(s, x);
    h.acquire(s, s1, 'shared', true);
    h.acquire(s, s2, 'shared', true);
    h.acquire(s, x2, 'exclusive', true);
    h.acquire(s, s3, 'shared', true);
    const { events } = h.send('Release', s, { handle: x });
    expect(events.map((event) => [event.type, event.handle])).toEqual([
      ['lock-granted', s1],
      ['lock-granted', s2],
    ]);
    expect(holders(h)).toEqual([s1, s2]);
    expect(waiters(h)).toEqual([x2, s3]);
  });

  test('a release grants a long run of shared waiters, and none past the exclusive one behind them', () => {
    // grantWaiters reads the queue a waiter at a time and stops at the first it cannot grant.
    for (const run of [4, 9]) {
      const h = new Harness();
      const s = h.session();
      const x = h.handle(s, F);
      h.acquire(s, x);
      const shared = Array.from({ length: run }, () => h.handle(s, F));
      for (const handle of shared) h.acquire(s, handle, 'shared', true);
      const [x2, last] = [h.handle(s, F), h.handle(s, F)];
      h.acquire(s, x2, 'exclusive', true);
      h.acquire(s, last, 'shared', true);
      const { events } = h.send('Release', s, { handle: x });
      expect(events.map((event) => [event.type, event.handle])).toEqual(
        shared.map((handle) => ['lock-granted', handle]),
      );
      expect(holders(h)).toEqual(shared);
      expect(waiters(h)).toEqual([x2, last]);
    }
  });

  test('a shared request behind an exclusive waiter waits even though the holders are shared', () => {
    const h = new Harness();
    const s = h.session();
    const [a, x, b] = [h.handle(s, F), h.handle(s, F), h.handle(s, F)];
    h.acquire(s, a, 'shared');
    h.acquire(s, x, 'exclusive', true);
    expect(errorCode(h.acquire(s, b, 'shared').result)).toBe('LOCK_HELD');
    expect(h.acquire(s, b, 'shared', true).result).toEqual({ type: 'queued' });
    h.send('Release', s, { handle: a });
    expect(holders(h)).toEqual([x]);
    h.send('Release', s, { handle: x });
    expect(holders(h)).toEqual([b]);
  });

  test('cancelling the exclusive head lets the shared waiters behind it in', () => {
    const h = new Harness();
    const s = h.session();
    const [a, x, b] = [h.handle(s, F), h.handle(s, F), h.handle(s, F)];
    h.acquire(s, a, 'shared');
    h.acquire(s, x, 'exclusive', true);
    h.acquire(s, b, 'shared', true);
    const { result, events } = h.send('CancelWait', s, { handle: x });
    expect(result).toEqual({ type: 'wait-cancelled' });
    expect(events).toMatchObject([
      { type: 'lock-granted', handle: b, mode: 'shared', sequencer: `S1:s:1:2:${F}` },
    ]);
    expect(holders(h)).toEqual([a, b]);
  });

  test('closing a holding handle is a clean release that grants the next waiter', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F, { lockDelayMs: 30_000 });
    const b = h.handle(s, F);
    h.acquire(s, a);
    h.acquire(s, b, 'exclusive', true);
    h.send('Close', s, { handle: a });
    expect(holders(h)).toEqual([b]);
    expect(h.machine.pendingLockDelays()).toEqual([]);
  });

  test('closing a waiting handle removes it from the queue', () => {
    const h = new Harness();
    const s = h.session();
    const [a, b, c] = [h.handle(s, F), h.handle(s, F), h.handle(s, F)];
    h.acquire(s, a);
    h.acquire(s, b, 'exclusive', true);
    h.acquire(s, c, 'exclusive', true);
    h.send('Close', s, { handle: b });
    expect(waiters(h)).toEqual([c]);
    h.send('Release', s, { handle: a });
    expect(holders(h)).toEqual([c]);
  });

  test('the queue survives a snapshot and restore', async () => {
    const { StateMachine } = await import('../../src/machine/index.ts');
    const h = new Harness();
    const s = h.session();
    const [a, b, c] = [h.handle(s, F), h.handle(s, F), h.handle(s, F)];
    h.acquire(s, a);
    h.acquire(s, c, 'exclusive', true);
    h.acquire(s, b, 'exclusive', true);
    const restored = new Harness(StateMachine.restore(h.machine.snapshot(), { cell: 'c' }));
    const { events } = restored.run({ type: 'Release', session: s, seq: 100, handle: a });
    expect(events).toMatchObject([{ type: 'lock-granted', handle: c }]);
  });
});

describe('lock-delay', () => {
  test('a clean Release never starts lock-delay', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const a = h.handle(s, F, { lockDelayMs: 60_000 });
    const b = h.handle(t, F);
    h.acquire(s, a);
    h.send('Release', s, { handle: a });
    expect(h.acquire(t, b).result).toMatchObject({ type: 'acquired' });
  });

  test("CloseSession is clean; ExpireSession starts the handle's lock-delay", () => {
    const h = new Harness();
    const s1 = h.session();
    const s2 = h.session();
    const t = h.session();
    h.acquire(s1, h.handle(s1, `${ROOT}/one`, { lockDelayMs: 10_000 }));
    h.acquire(s2, h.handle(s2, `${ROOT}/two`, { lockDelayMs: 10_000 }));
    h.send('CloseSession', s1);
    h.run({ type: 'ExpireSession', session: s2 });
    expect(h.acquire(t, h.handle(t, `${ROOT}/one`)).result).toMatchObject({ type: 'acquired' });
    const two = h.handle(t, `${ROOT}/two`);
    expect(errorCode(h.acquire(t, two).result)).toBe('LOCK_DELAYED');
    expect(h.machine.pendingLockDelays()).toEqual([{ path: `${ROOT}/two`, endsMs: 11_000 }]);
    expect(h.locks(`${ROOT}/two`)).toMatchObject({
      locks: [{ holders: [], lockDelayEndsMs: 11_000 }],
    });
  });

  test('waiters queued during lock-delay are granted by LockDelayEnd once it is due', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const a = h.handle(s, F, { lockDelayMs: 5_000 });
    const w = h.handle(t, F);
    h.acquire(s, a);
    h.run({ type: 'ExpireSession', session: s });
    expect(h.acquire(t, w, 'exclusive', true).result).toEqual({ type: 'queued' });
    h.nowMs = 3_000;
    const early = h.run({ type: 'LockDelayEnd', path: F });
    expect(errorCode(early.result)).toBe('LOCK_DELAYED');
    expect(early.events).toEqual([]);
    h.nowMs = 6_000;
    const { result, events } = h.run({ type: 'LockDelayEnd', path: F });
    expect(result).toEqual({ type: 'lock-delay-ended', grantedCount: 1 });
    expect(events).toMatchObject([{ type: 'lock-granted', session: t, handle: w }]);
    expect(h.machine.pendingLockDelays()).toEqual([]);
    // A repeated LockDelayEnd finds nothing to do.
    expect(h.run({ type: 'LockDelayEnd', path: F }).result).toEqual({
      type: 'lock-delay-ended',
      grantedCount: 0,
    });
  });

  test('a try-acquire succeeds once the delay has run out, even before LockDelayEnd', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    h.acquire(s, h.handle(s, F, { lockDelayMs: 5_000 }));
    h.run({ type: 'ExpireSession', session: s });
    h.nowMs = 6_000;
    expect(h.acquire(t, h.handle(t, F)).result).toMatchObject({ type: 'acquired' });
  });

  test("a holder losing its handle to another's Delete starts lock-delay, inherited by a re-created node", () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const holder = h.handle(s, F, { lockDelayMs: 20_000 });
    const deleter = h.handle(t, F);
    h.acquire(s, holder);
    const { events } = h.send('Delete', t, { handle: deleter });
    expect(events).toEqual([{ type: 'handle-invalid', session: s, handle: holder, path: F }]);
    const again = h.handle(t, F);
    expect(errorCode(h.acquire(t, again).result)).toBe('LOCK_DELAYED');
    expect(h.machine.pendingLockDelays()).toEqual([{ path: F, endsMs: 21_000 }]);
  });

  test('the holder deleting its own node is a clean release', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F, { lockDelayMs: 20_000 });
    h.acquire(s, a);
    h.send('Delete', s, { handle: a });
    expect(h.machine.pendingLockDelays()).toEqual([]);
  });

  test('pendingLockDelays lists delays earliest first, the longest delay winning per path', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    h.acquire(s, h.handle(s, `${ROOT}/late`, { lockDelayMs: 50_000 }));
    h.acquire(s, h.handle(s, `${ROOT}/early`, { lockDelayMs: 2_000 }));
    h.acquire(t, h.handle(t, `${ROOT}/shared`, { lockDelayMs: 3_000 }), 'shared');
    h.acquire(s, h.handle(s, `${ROOT}/shared`, { lockDelayMs: 9_000 }), 'shared');
    h.run({ type: 'ExpireSession', session: s });
    h.nowMs = 2_000;
    h.run({ type: 'ExpireSession', session: t });
    expect(h.machine.pendingLockDelays()).toEqual([
      { path: `${ROOT}/early`, endsMs: 3_000 },
      { path: `${ROOT}/shared`, endsMs: 10_000 },
      { path: `${ROOT}/late`, endsMs: 51_000 },
    ]);
  });

  test('a lost shared holder closes the lock to newcomers while the other shared holders keep it', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const u = h.session();
    const lost = h.handle(s, F, { lockDelayMs: 4_000 });
    const kept = h.handle(t, F);
    h.acquire(s, lost, 'shared');
    h.acquire(t, kept, 'shared');
    h.run({ type: 'ExpireSession', session: s });
    expect(holders(h)).toEqual([kept]);
    const newcomer = h.handle(u, F);
    expect(errorCode(h.acquire(u, newcomer, 'shared').result)).toBe('LOCK_DELAYED');
    expect(h.acquire(u, newcomer, 'shared', true).result).toEqual({ type: 'queued' });
    h.nowMs = 5_000;
    const { result, events } = h.run({ type: 'LockDelayEnd', path: F });
    expect(result).toEqual({ type: 'lock-delay-ended', grantedCount: 1 });
    expect(events).toMatchObject([
      { type: 'lock-granted', handle: newcomer, mode: 'shared', sequencer: `S1:s:1:2:${F}` },
    ]);
  });

  test('a lock-delay of 0 lets the next waiter in at once on expiry', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    h.acquire(s, h.handle(s, F));
    const w = h.handle(t, F);
    h.acquire(t, w, 'exclusive', true);
    const { events } = h.run({ type: 'ExpireSession', session: s });
    expect(events).toMatchObject([{ type: 'lock-granted', handle: w }]);
  });
});

describe('sequencers', () => {
  test('current while held; stale after release and re-acquire', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F);
    const first = sequencerOf(h.acquire(s, a).result);
    expect(isCurrent(h, first)).toBe(true);
    h.send('Release', s, { handle: a });
    expect(isCurrent(h, first)).toBe(false);
    const second = sequencerOf(h.acquire(s, a).result);
    expect(second).not.toBe(first);
    expect(isCurrent(h, first)).toBe(false);
    expect(isCurrent(h, second)).toBe(true);
  });

  test('stale after the node is deleted and re-created, even at the same lock generation', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F);
    const first = sequencerOf(h.acquire(s, a).result);
    h.send('Delete', s, { handle: a });
    const b = h.handle(s, F);
    const second = sequencerOf(h.acquire(s, b).result);
    expect(second).toBe(`S1:x:1:3:${F}`);
    expect(isCurrent(h, first)).toBe(false);
    expect(isCurrent(h, second)).toBe(true);
  });

  test('the mode must match; malformed sequencers are BAD_REQUEST', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F);
    h.acquire(s, a, 'shared');
    expect(isCurrent(h, `S1:s:1:2:${F}`)).toBe(true);
    expect(isCurrent(h, `S1:x:1:2:${F}`)).toBe(false);
    expect(errorCode(h.query({ type: 'CheckSequencer', sequencer: 'garbage' }))).toBe(
      'BAD_REQUEST',
    );
  });
});

describe('lock events', () => {
  test('subscribed handles hear lock-acquired; holders hear conflicting-lock-request when someone queues', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const holder = h.handle(s, F, {
      eventMask: EventMask.conflictingLockRequest | EventMask.lockAcquired,
    });
    const watcher = h.handle(t, F, { eventMask: EventMask.lockAcquired });
    const waiter = h.handle(t, F);
    expect(h.acquire(s, holder).events).toEqual([
      { type: 'lock-acquired', session: t, handle: watcher, path: F, mode: 'exclusive' },
    ]);
    // A failed try emits nothing.
    expect(h.acquire(t, waiter).events).toEqual([]);
    expect(h.acquire(t, waiter, 'shared', true).events).toEqual([
      { type: 'conflicting-lock-request', session: s, handle: holder, path: F, mode: 'shared' },
    ]);
    const { events } = h.send('Release', s, { handle: holder });
    expect(events).toEqual([
      { type: 'lock-acquired', session: s, handle: holder, path: F, mode: 'shared' },
      { type: 'lock-acquired', session: t, handle: watcher, path: F, mode: 'shared' },
      {
        type: 'lock-granted',
        session: t,
        handle: waiter,
        path: F,
        mode: 'shared',
        sequencer: `S1:s:2:2:${F}`,
      },
    ]);
  });

  test('ListLocks reports holders with the time held, and waiters in order', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, F);
    const b = h.handle(s, F);
    h.acquire(s, a);
    h.nowMs = 4_000;
    h.acquire(s, b, 'shared', true);
    expect(h.query({ type: 'ListLocks', nowMs: 9_000 })).toEqual({
      type: 'locks',
      locks: [
        {
          path: F,
          instance: 2,
          lockGeneration: 1,
          holders: [{ session: s, handle: a, mode: 'exclusive', sinceMs: 1_000, heldMs: 8_000 }],
          waiters: [{ session: s, handle: b, mode: 'shared', sinceMs: 4_000 }],
        },
      ],
    });
  });
});
