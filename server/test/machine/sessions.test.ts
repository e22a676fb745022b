// Proves sessions: deterministic ids, exactly-once replies for a repeated seq (the recorded
// result, no second application, no events), STALE_SEQ for older seqs, unknown and ended
// sessions answered SESSION_EXPIRED, and what CloseSession and ExpireSession clean up.
import { describe, expect, test } from 'vitest';
import { EventMask } from '@paxlock/shared';
import { bytes, errorCode, Harness, ROOT } from './harness.ts';

describe('sessions', () => {
  test('ids are deterministic counters and ListSessions reports them', () => {
    const h = new Harness();
    expect(h.session('a', 10_000)).toBe(1);
    h.nowMs = 2_000;
    expect(h.session('b')).toBe(2);
    h.handle(2, `${ROOT}/f`);
    expect(h.query({ type: 'ListSessions' })).toEqual({
      type: 'sessions',
      sessions: [
        {
          session: 1,
          clientName: 'a',
          leaseMs: 10_000,
          createdMs: 1_000,
          lastSeq: 0,
          handleCount: 0,
        },
        {
          session: 2,
          clientName: 'b',
          leaseMs: 12_000,
          createdMs: 2_000,
          lastSeq: 1,
          handleCount: 1,
        },
      ],
    });
  });

  test('a retried CreateSession with the same nonce gets the same session while it lives', () => {
    const h = new Harness();
    const create = {
      type: 'CreateSession',
      clientName: 'a',
      leaseMs: 12_000,
      nonce: 'r4nd0m-N0nce',
    };
    expect(h.run(create).result).toEqual({ type: 'session-created', session: 1 });
    expect(h.run(create).result).toEqual({ type: 'session-created', session: 1 });
    expect(h.run({ ...create, nonce: 'other' }).result).toEqual({
      type: 'session-created',
      session: 2,
    });
    expect(h.run({ type: 'CreateSession', clientName: 'a', leaseMs: 12_000 }).result).toEqual({
      type: 'session-created',
      session: 3,
    });
    expect(h.query({ type: 'ListSessions' })).toMatchObject({
      sessions: [{ session: 1 }, { session: 2 }, { session: 3 }],
    });
    // Once the session is gone the nonce is free again.
    h.run({ type: 'ExpireSession', session: 1 });
    expect(h.run(create).result).toEqual({ type: 'session-created', session: 4 });
    expect(errorCode(h.run({ ...create, nonce: 'not a nonce' }).result)).toBe('BAD_REQUEST');
  });

  test('a repeated seq is answered from the record and not applied again', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const watcher = h.handle(t, ROOT, { directory: true, eventMask: EventMask.childAdded });
    const open = h.openCommand(s, `${ROOT}/f`, { create: 'must' });
    const first = h.run(open);
    expect(first.result).toMatchObject({ type: 'opened', created: true, handle: 2 });
    expect(first.events).toEqual([
      { type: 'child-added', session: t, handle: watcher, path: ROOT, child: 'f' },
    ]);
    const digest = h.machine.digest();
    const retry = h.run(open);
    expect(retry.result).toEqual(first.result);
    expect(retry.events).toEqual([]);
    // Only the applied index and time moved: no second node, no second handle.
    expect(h.query({ type: 'ListSessions' })).toMatchObject({
      sessions: [{ handleCount: 1 }, { handleCount: 1 }],
    });
    expect(h.machine.digest()).not.toBe(digest);
  });

  test('a retry in the same entry is answered from the record too', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    const command = {
      type: 'SetContents',
      session: s,
      seq: h.nextSeq(s),
      handle: f,
      contents: bytes('x'),
    };
    const { results } = h.entry(command, command);
    expect(results[1]).toEqual(results[0]);
    expect(h.stat(s, f)).toMatchObject({ stat: { contentGeneration: 2 } });
  });

  test('an older seq is STALE_SEQ', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    h.setContents(s, f, 'a');
    expect(
      errorCode(
        h.run({ type: 'SetContents', session: s, seq: 1, handle: f, contents: bytes('b') }).result,
      ),
    ).toBe('STALE_SEQ');
    expect(h.contents(s, f)).toBe('a');
  });

  test('a failed command is not recorded, so its retry is applied afresh', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const a = h.handle(s, `${ROOT}/f`);
    const b = h.handle(t, `${ROOT}/f`);
    h.acquire(s, a);
    const attempt = {
      type: 'Acquire',
      session: t,
      seq: h.nextSeq(t),
      handle: b,
      mode: 'exclusive',
      wait: false,
    };
    expect(errorCode(h.run(attempt).result)).toBe('LOCK_HELD');
    h.send('Release', s, { handle: a });
    expect(h.run(attempt).result).toMatchObject({ type: 'acquired' });
    expect(h.run(attempt).result).toMatchObject({ type: 'acquired' });
  });

  test('commands for unknown, closed or expired sessions are SESSION_EXPIRED', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    expect(errorCode(h.send('Close', 99, { handle: 1 }).result)).toBe('SESSION_EXPIRED');
    expect(h.send('CloseSession', s).result).toEqual({ type: 'session-closed' });
    expect(errorCode(h.open(s, `${ROOT}/f`).result)).toBe('SESSION_EXPIRED');
    expect(errorCode(h.send('CloseSession', s).result)).toBe('SESSION_EXPIRED');
    expect(h.run({ type: 'ExpireSession', session: t }).result).toEqual({
      type: 'session-expired',
    });
    expect(errorCode(h.run({ type: 'ExpireSession', session: t }).result)).toBe('SESSION_EXPIRED');
    expect(errorCode(h.query({ type: 'GetStat', session: t, handle: 1 }))).toBe('SESSION_EXPIRED');
    expect(h.query({ type: 'ListSessions' })).toEqual({ type: 'sessions', sessions: [] });
  });

  test('expiry closes handles, cancels waits and releases locks, granting other sessions only', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const held = h.handle(s, `${ROOT}/a`);
    const otherHeld = h.handle(t, `${ROOT}/b`);
    h.acquire(s, held);
    h.acquire(t, otherHeld);
    // s queues on t's lock; t queues on s's lock; s also queues a second handle on its own lock.
    const sWaits = h.handle(s, `${ROOT}/b`);
    h.acquire(s, sWaits, 'exclusive', true);
    const tWaits = h.handle(t, `${ROOT}/a`);
    h.acquire(t, tWaits, 'exclusive', true);
    const { events } = h.run({ type: 'ExpireSession', session: s });
    expect(events).toEqual([
      {
        type: 'lock-granted',
        session: t,
        handle: tWaits,
        path: `${ROOT}/a`,
        mode: 'exclusive',
        sequencer: `S1:x:2:2:${ROOT}/a`,
      },
    ]);
    expect(h.locks()).toMatchObject({
      locks: [
        { path: `${ROOT}/a`, holders: [{ handle: tWaits }], waiters: [] },
        { path: `${ROOT}/b`, holders: [{ handle: otherHeld }], waiters: [] },
      ],
    });
  });

  test("a dying session's own queued handle is not granted the lock it releases", () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const a = h.handle(s, `${ROOT}/f`);
    const b = h.handle(s, `${ROOT}/f`);
    const c = h.handle(t, `${ROOT}/f`);
    h.acquire(s, a);
    h.acquire(s, b, 'exclusive', true);
    h.acquire(t, c, 'exclusive', true);
    const { events } = h.send('CloseSession', s);
    expect(events).toEqual([
      {
        type: 'lock-granted',
        session: t,
        handle: c,
        path: `${ROOT}/f`,
        mode: 'exclusive',
        sequencer: `S1:x:2:2:${ROOT}/f`,
      },
    ]);
  });
});
