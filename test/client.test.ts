// The client library against a real five-replica cell: every call of the files, locks and
// election API, events as an emitter and as an async iterator, and the fencing guard. The
// fault scenarios (master killed under a lock holder, a frozen holder, campaigners across
// fail-overs) are in client-faults.test.ts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FencingGuard,
  isPaxlockError,
  PaxlockClient,
  PaxlockError,
  type HandleEvent,
} from '@paxlock/client';
import type { LocalCell } from '../scripts/cell.ts';
import { useCell } from './helpers.ts';

async function rejection(promise: Promise<unknown>): Promise<PaxlockError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof PaxlockError))
    throw new Error(`expected a PaxlockError, got ${String(err)}`);
  return err;
}

describe('the client library', () => {
  const theCell = useCell('client');
  let cell: LocalCell;
  let a: PaxlockClient;
  let b: PaxlockClient;
  beforeAll(async () => {
    cell = theCell();
    a = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'a',
      findMasterTimeoutMs: 60_000,
    });
    b = await PaxlockClient.connect({
      cell: cell.clientAddresses.join(','),
      name: 'b',
      findMasterTimeoutMs: 60_000,
    });
  });
  afterAll(async () => {
    await a.close();
    await b.close();
  });

  it('connects, learns the cell name, and resolves names against the cell root', () => {
    expect(a.state).toBe('connected');
    expect(a.session).toBeGreaterThan(0);
    expect(a.cellName).toBe('local');
    expect(a.resolve('config/x')).toBe('/ls/local/config/x');
    expect(a.resolve('/config/x')).toBe('/ls/local/config/x');
    expect(a.resolve('/ls/local/y')).toBe('/ls/local/y');
    expect(() => a.resolve('bad//name')).toThrow(PaxlockError);
  });

  it('writes, reads, stats, lists and removes files and directories', async () => {
    await a.mkdir('t1/deep/er', { parents: true });
    await a.mkdir('t1/deep/er', { parents: true });
    expect((await rejection(a.mkdir('t1'))).code).toBe('EXISTS');
    const written = await a.writeFile('t1/deep/f', 'hello');
    expect(written.contentGeneration).toBe(1);
    expect((await b.readFile('/ls/local/t1/deep/f')).toString()).toBe('hello');
    const again = await a.writeFile('t1/deep/f', Buffer.from([0, 1, 2, 255]));
    expect(again.contentGeneration).toBe(2);
    expect([...(await b.readFile('t1/deep/f'))]).toEqual([0, 1, 2, 255]);
    const stat = await a.stat('t1/deep/f');
    expect(stat).toMatchObject({
      path: '/ls/local/t1/deep/f',
      isDirectory: false,
      contentGeneration: 2,
      sizeBytes: 4,
    });
    expect((await a.stat('t1/deep')).isDirectory).toBe(true);
    expect((await a.readdir('t1/deep')).map((e) => [e.name, e.isDirectory])).toEqual([
      ['er', true],
      ['f', false],
    ]);
    expect(await a.exists('t1/deep/f')).toBe(true);
    expect(await a.exists('t1/nope')).toBe(false);
    expect((await rejection(a.readFile('t1/nope'))).code).toBe('NOT_FOUND');
    expect((await rejection(a.remove('t1'))).code).toBe('NOT_EMPTY');
    await a.remove('t1', { recursive: true });
    expect(await a.exists('t1')).toBe(false);
  });

  it('compare-and-sets with ifGeneration (0 means create only)', async () => {
    const first = await a.writeFile('cas', 'v1', { ifGeneration: 0 });
    expect(first.contentGeneration).toBe(1);
    expect((await rejection(a.writeFile('cas', 'again', { ifGeneration: 0 }))).code).toBe('EXISTS');
    await a.writeFile('cas', 'v2', { ifGeneration: 1 });
    expect((await rejection(b.writeFile('cas', 'late', { ifGeneration: 1 }))).code).toBe(
      'CAS_MISMATCH',
    );
    expect((await a.readFile('cas')).toString()).toBe('v2');
    expect((await rejection(a.writeFile('cas-missing', 'x', { ifGeneration: 3 }))).code).toBe(
      'NOT_FOUND',
    );
  });

  it('rejects a file over 256 KiB with TOO_LARGE and keeps the old contents', async () => {
    await a.writeFile('big', Buffer.alloc(256 * 1024, 7));
    expect((await rejection(a.writeFile('big', Buffer.alloc(256 * 1024 + 1)))).code).toBe(
      'TOO_LARGE',
    );
    expect((await a.readFile('big')).length).toBe(256 * 1024);
  });

  it('delivers handle events to an emitter and an async iterator, and handle-invalid on delete', async () => {
    await a.mkdir('watched', { parents: true });
    const dir = await a.open('watched', {
      directory: true,
      events: ['child-added', 'child-removed'],
    });
    const seen: HandleEvent[] = [];
    dir.on('event', (e) => seen.push(e));
    const file = await a.open('watched/f', { create: true, events: 'all' });
    const iterated: HandleEvent[] = [];
    const iterating = (async () => {
      for await (const event of file) {
        iterated.push(event);
        if (event.type === 'handle-invalid') break;
      }
    })();
    await b.writeFile('watched/f', 'changed');
    await b.writeFile('watched/g', 'new');
    await b.remove('watched/g');
    await b.remove('watched/f');
    await iterating;
    expect(iterated.map((e) => e.type).filter((t) => t !== 'reread')).toEqual([
      'contents-modified',
      'handle-invalid',
    ]);
    expect(file.isValid).toBe(false);
    // The directory's event for the same delete may come just after the file's.
    await expect.poll(() => seen.filter((e) => e.type === 'child-removed').length).toBe(2);
    const dirEvents = seen
      .filter((e) => e.type !== 'reread')
      .map((e) => `${e.type}:${'child' in e ? e.child : ''}`);
    // The file's own creation (by another handle) is an event for the directory too.
    expect(dirEvents).toEqual([
      'child-added:f',
      'child-added:g',
      'child-removed:g',
      'child-removed:f',
    ]);
    await dir.close();
  });

  it('hands an exclusive lock over in FIFO order with strictly growing sequencers', async () => {
    const ha = await a.open('locks/l1', { create: true, lockDelayMs: 0 }).catch(async () => {
      await a.mkdir('locks', { parents: true });
      return a.open('locks/l1', { create: true, lockDelayMs: 0 });
    });
    const hb = await b.open('locks/l1', { create: true, lockDelayMs: 0 });
    const la = await ha.acquire();
    expect(la.isHeld).toBe(true);
    expect(await a.checkSequencer(la.sequencer)).toBe(true);
    expect(ha.sequencer()).toBe(la.sequencer);
    expect(hb.sequencer()).toBeNull();
    expect(await hb.tryAcquire()).toBeNull();
    const waiting = hb.acquire();
    await expect
      .poll(async () => (await a.listLocks('locks/l1'))[0]?.waiters.map((w) => w.session))
      .toEqual([b.session]);
    expect((await a.listLocks('locks/l1'))[0]?.holders.map((h) => h.session)).toEqual([a.session]);
    await la.release();
    expect(la.signal.aborted).toBe(true);
    const lb = await waiting;
    expect(lb.isHeld).toBe(true);
    const guard = new FencingGuard();
    expect(guard.admit(lb.sequencer)).toBe(true);
    expect(guard.admit(la.sequencer)).toBe(false);
    expect(() => {
      guard.check(la.sequencer);
    }).toThrow(/stale sequencer/);
    expect(await a.checkSequencer(la.sequencer)).toBe(false);
    expect(await a.checkSequencer(lb.sequencer)).toBe(true);
    await lb.release();
    await ha.close();
    await hb.close();
  });

  it('shares a shared lock, and cancels a wait on abort without leaving the lock held', async () => {
    await a.mkdir('locks', { parents: true });
    const ha = await a.open('locks/s', { create: true, lockDelayMs: 0 });
    const hb = await b.open('locks/s', { create: true, lockDelayMs: 0 });
    const sa = await ha.acquire({ mode: 'shared' });
    const sb = await hb.acquire({ mode: 'shared' });
    expect(sa.mode).toBe('shared');
    expect(sb.isHeld).toBe(true);
    await sb.release();
    const controller = new AbortController();
    const waiting = hb.acquire({ mode: 'exclusive', signal: controller.signal });
    await expect.poll(async () => (await a.listLocks('locks/s'))[0]?.waiters.length).toBe(1);
    controller.abort(new Error('gave up'));
    await expect(waiting).rejects.toThrow('gave up');
    expect((await a.listLocks('locks/s'))[0]?.waiters).toEqual([]);
    const timedOut = await rejection(hb.acquire({ timeoutMs: 300 }));
    expect(timedOut.code).toBe('TIMEOUT');
    await sa.release();
    const after = await hb.tryAcquire();
    expect(after).not.toBeNull();
    await after?.release();
    await ha.close();
    await hb.close();
  });

  it('runs withLock serially and releases on return and on throw', async () => {
    const order: string[] = [];
    const run = (client: PaxlockClient, name: string): Promise<string> =>
      client.withLock(
        'locks/with',
        async (signal, lock) => {
          expect(signal.aborted).toBe(false);
          expect(lock.isHeld).toBe(true);
          order.push(`${name}:in`);
          await new Promise((resolve) => setTimeout(resolve, 50));
          order.push(`${name}:out`);
          return name;
        },
        { lockDelayMs: 0 },
      );
    const results = await Promise.all([run(a, 'a'), run(b, 'b')]);
    expect(results.sort()).toEqual(['a', 'b']);
    expect(order.join(' ')).toMatch(/^(a:in a:out b:in b:out|b:in b:out a:in a:out)$/);
    const thrown = await a
      .withLock('locks/with', () => {
        throw new Error('boom');
      })
      .catch((err: unknown) => err);
    expect(thrown).toBeInstanceOf(Error);
    expect((await a.listLocks('locks/with'))[0]?.holders ?? []).toEqual([]);
  });

  it('elects one leader, reports it to observers, and hands over on resign', async () => {
    const ea = a.election('elect/one');
    const eb = b.election('elect/one');
    await a.mkdir('elect', { parents: true });
    const observed: (string | null)[] = [];
    const stop = new AbortController();
    const observing = (async () => {
      for await (const leader of ea.observe({ signal: stop.signal }))
        observed.push(leader?.value ?? null);
    })();
    const la = await ea.campaign('alpha');
    expect(ea.isLeader).toBe(true);
    const contender = eb.campaign('beta');
    expect((await eb.leader())?.value).toBe('alpha');
    await la.resign();
    const lb = await contender;
    expect(lb.value).toBe('beta');
    expect((await ea.leader())?.sequencer).toBe(lb.sequencer);
    await expect.poll(() => observed.includes('beta')).toBe(true);
    stop.abort();
    await observing;
    expect(observed[observed.length - 1]).toBe('beta');
    expect(observed).toContain('alpha');
    await lb.resign();
    expect(await eb.leader()).toBeNull();
  });

  it('reads by name without a session (session: false), writing nothing to the log', async () => {
    await a.writeFile('no-session', 'readable');
    const before = await a.listSessions();
    const reader = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'no-session',
      session: false,
    });
    expect(reader.session).toBe(0);
    expect(reader.cellName).toBe('local');
    expect((await reader.readFile('no-session')).toString()).toBe('readable');
    expect((await reader.stat('no-session')).sizeBytes).toBe(8);
    expect(
      (
        await reader.read('no-session', { consistency: 'stale', maxStalenessMs: 5_000 })
      ).contents.toString(),
    ).toBe('readable');
    expect((await reader.listSessions()).map((x) => x.session).sort()).toEqual(
      before.map((x) => x.session).sort(),
    );
    expect((await rejection(reader.writeFile('no-session', 'x'))).code).toBe('BAD_REQUEST');
    await reader.close();
    expect(reader.state).toBe('closed');
  });

  it('fails calls after close with CLIENT_CLOSED and reports bad names with BAD_PATH', async () => {
    const c = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'short-lived' });
    const sessions = await c.listSessions();
    expect(sessions.some((s) => s.session === c.session && s.clientName === 'short-lived')).toBe(
      true,
    );
    await c.close();
    expect(c.state).toBe('closed');
    const err = await rejection(c.readFile('x'));
    expect(err.code).toBe('CLIENT_CLOSED');
    expect(isPaxlockError(await rejection(a.readFile('/ls/local/a b')), 'BAD_PATH')).toBe(true);
    expect((await a.listSessions()).some((s) => s.session === c.session)).toBe(false);
  });
});
