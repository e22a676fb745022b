// The client library under faults on a real five-process cell (issue 5, "done"):
// - a lock holder whose master is killed keeps its lock, its session goes connected ->
//   (jeopardy ->) safe and never expires, its handles are told to re-read, and it writes on;
// - a holder frozen (SIGSTOP) past its lease and grace loses the lock: a second client gets it
//   only after the holder's session expired at the master plus the lock-delay, with a strictly
//   larger sequencer; on SIGCONT the holder's withLock signal fires before it acts again, its
//   session reports expired, and a fencing guard and CheckSequencer refuse its sequencer;
// - a queued acquire whose grant event could not be pushed (the grant was applied by a new
//   master while the waiter was frozen) still completes, by the re-check after a reread;
// - two campaigners: exactly one leader at a time across a master kill and across the
//   leader's process being frozen past its lease and grace, checked with sequencers.
// Holders and campaigners that get frozen run in child processes (test/fixtures), which print
// what happens as JSON lines; every process is started and stopped by the test, by pid.
// Figures are printed, not asserted against the wall clock.

import { spawn, type ChildProcess } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FencingGuard, PaxlockClient, type RereadEvent, type SessionState } from '@paxlock/client';
import { parseSequencer, type Epoch } from '@paxlock/shared';
import type { LocalCell } from '../scripts/cell.ts';
import { currentMaster, eventually, tempDir, useCell } from './helpers.ts';
import type { CampaignerOptions } from './fixtures/campaigner.ts';
import type { HolderOptions } from './fixtures/holder.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string): string =>
  fileURLToPath(new URL(`./fixtures/${name}.ts`, import.meta.url));

/** One line a fixture printed. */
interface Line {
  readonly type: string;
  readonly t: number;
  readonly [key: string]: unknown;
}

/** A fixture running in its own process; its JSON lines are collected as they arrive. */
class Fixture {
  readonly name: string;
  readonly lines: Line[] = [];
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  #stderr = '';

  constructor(script: string, name: string, options: object) {
    this.name = name;
    this.process = spawn(
      process.execPath,
      ['--import', 'tsx', fixture(script), JSON.stringify(options)],
      { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.exited = new Promise((resolve) => this.process.once('exit', () => resolve()));
    createInterface({ input: this.process.stdout! }).on('line', (text) => {
      try {
        this.lines.push(JSON.parse(text) as Line);
      } catch (err: unknown) {
        if (!(err instanceof SyntaxError)) throw err;
        this.#stderr += `${text}\n`;
      }
    });
    this.process.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
    });
  }

  get pid(): number {
    const pid = this.process.pid;
    if (pid === undefined) throw new Error(`${this.name} has no pid`);
    return pid;
  }

  get isRunning(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  linesOf(type: string): Line[] {
    return this.lines.filter((l) => l.type === type);
  }

  /** Waits for a line of `type` (printed after `since`, if given) and returns it. */
  async next(type: string, since = 0, timeoutMs = 90_000): Promise<Line> {
    return eventually(
      () => {
        const line = this.lines.find((l) => l.type === type && l.t >= since);
        if (line === undefined && !this.isRunning)
          throw new Error(`${this.name} exited: ${this.#stderr.slice(-2_000)}`);
        return line;
      },
      `${this.name} to print ${type}`,
      timeoutMs,
    );
  }

  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    if (this.isRunning) process.kill(this.pid, signal);
  }

  send(line: string): void {
    this.process.stdin!.write(`${line}\n`);
  }

  /** Stops the process by its pid (thawing it first) and waits for it to exit. */
  async stop(): Promise<void> {
    if (!this.isRunning) return;
    process.kill(this.pid, 'SIGCONT');
    process.kill(this.pid, 'SIGKILL');
    await this.exited;
  }
}

function generation(sequencer: unknown): number {
  const parsed = typeof sequencer === 'string' ? parseSequencer(sequencer) : undefined;
  if (parsed === undefined) throw new Error(`not a sequencer: ${String(sequencer)}`);
  return parsed.lockGeneration;
}

describe('the client library under faults', () => {
  const theCell = useCell('client-faults');
  let cell: LocalCell;
  let observer: PaxlockClient;
  const fixtures = new Set<Fixture>();
  const start = (script: string, name: string, options: object): Fixture => {
    const started = new Fixture(script, name, options);
    fixtures.add(started);
    return started;
  };

  beforeAll(async () => {
    cell = theCell();
    await currentMaster(cell);
    observer = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'observer',
      findMasterTimeoutMs: 60_000,
    });
    await observer.mkdir('faults', { parents: true });
  });
  afterAll(async () => {
    await Promise.all([...fixtures].map(async (f) => f.stop()));
    await observer.close();
  });

  /** Kills the master with SIGKILL; returns its id and when. */
  async function killMaster(): Promise<{ id: number; epoch: Epoch; at: number }> {
    const master = await currentMaster(cell);
    const at = Date.now();
    await cell.signal(master.id, 'SIGKILL');
    return { id: master.id, epoch: master.epoch, at };
  }

  /** Restarts a killed replica and waits until it follows the master and has caught up with it. */
  async function restart(id: number): Promise<void> {
    const { applied } = await currentMaster(cell);
    const address = cell.config.replicas.find((r) => r.id === id)?.client ?? '';
    cell.start(id);
    // (Not "applied equal to the master's": the master applies on, and a loaded machine may
    // never catch the two equal at one look.)
    await eventually(
      async () => {
        const status = await observer.replicaStatus(address).catch(() => undefined);
        return status?.role === 'follower' && status.applied >= applied ? true : undefined;
      },
      `replica ${id} catching up after its restart`,
      90_000,
    );
  }

  it('keeps a lock held across kill -9 of the master: connected -> (jeopardy ->) safe, reread, writes go on', async () => {
    const client = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'kill-holder',
      // Shorter than a fail-over (about two master leases), so jeopardy is likely; the grace
      // period is long, so the session must come back safe.
      leaseMs: 1_500,
      graceMs: 30_000,
      findMasterTimeoutMs: 60_000,
    });
    const states: SessionState[] = [];
    client.on('state', (state) => states.push(state));
    const failovers: { epoch: Epoch; at: number }[] = [];
    client.on('master-failover', (epoch) => failovers.push({ epoch, at: Date.now() }));
    const handle = await client.open('faults/kill-lock', { create: true, lockDelayMs: 5_000 });
    const rereads: RereadEvent[] = [];
    handle.on('event', (event) => {
      if (event.type === 'reread') rereads.push(event);
    });
    const lock = await handle.acquire();
    const data = await client.open('faults/kill-data', { create: true });
    await data.write('before kill');

    const killed = await killMaster();
    await data.write('after kill');
    const writtenAt = Date.now();
    const master = await currentMaster(cell);
    expect(master.id).not.toBe(killed.id);

    // The lock is still held by the same session and handle, at the new master.
    const [info] = await observer.listLocks('faults/kill-lock');
    expect(info?.holders.map((h) => [h.session, h.handle, h.mode])).toEqual([
      [client.session, handle.id, 'exclusive'],
    ]);
    expect(await observer.checkSequencer(lock.sequencer)).toBe(true);
    expect(client.state).toBe('connected');
    expect(lock.isHeld).toBe(true);
    // Never expired: connected throughout, or jeopardy and then safe again.
    expect([[], ['jeopardy', 'connected']]).toContainEqual(states);
    // The lock's signal fired exactly when the session went into jeopardy.
    expect(lock.signal.aborted).toBe(states.includes('jeopardy'));
    expect(failovers.length).toBeGreaterThanOrEqual(1);
    expect(failovers.at(-1)?.epoch).toEqual(master.epoch);
    expect(rereads.map((r) => r.reason)).toContain('master-failover');
    expect((await data.read()).toString()).toBe('after kill');
    console.log(
      `[figure] kill -9 of the master under a lock holder: the client saw the new master ` +
        `${(failovers[0]?.at ?? Number.NaN) - killed.at} ms after the kill, its next write was ` +
        `acknowledged after ${writtenAt - killed.at} ms; states ${JSON.stringify(states)}`,
    );

    await lock.release();
    await handle.close();
    await data.close();
    await client.close();
    await restart(killed.id);
  });

  it('goes into jeopardy when the local lease runs out even while no call looks at the session', async () => {
    const client = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'lease-timer',
      leaseMs: 1_500,
      graceMs: 60_000,
      findMasterTimeoutMs: 60_000,
    });
    const handle = await client.open('faults/lease-timer', { create: true, lockDelayMs: 0 });
    const lock = await handle.acquire();
    // Wait out two leases on purpose: KeepAlives move the lease end past the one at connect.
    const pastFirstEnd = Date.now() + 2 * 1_500;
    await eventually(() => (Date.now() > pastFirstEnd ? true : undefined), 'two leases');
    const seen: { jeopardyAt?: number } = {};
    client.on('jeopardy', () => {
      seen.jeopardyAt = Date.now();
    });
    // Freeze every replica: nothing answers, and finding the master takes a handshake timeout
    // per replica, during which the KeepAlive loop does not look at the session state. Only
    // the lease timer can put the session into jeopardy on time.
    const ids = cell.config.replicas.map((r) => r.id).filter((id) => cell.isRunning(id));
    for (const id of ids) await cell.signal(id, 'SIGSTOP');
    // (leaseRemainingMs reads the lease without moving it on.)
    const leaseEndAt = Date.now() + client.leaseRemainingMs;
    try {
      await eventually(() => seen.jeopardyAt, 'jeopardy', 30_000);
      expect(lock.signal.aborted).toBe(true);
    } finally {
      for (const id of ids) await cell.signal(id, 'SIGCONT');
    }
    const lateMs = Math.round((seen.jeopardyAt ?? 0) - leaseEndAt);
    console.log(
      `[figure] with every replica frozen, jeopardy came ${lateMs} ms after the local lease ran out`,
    );
    // The lease timer fires at the lease end; without it the session would wait for the
    // KeepAlive loop to look again, after a sweep of five handshake timeouts (about 5 s).
    expect(lateMs).toBeLessThan(1_000);
    // The replicas were frozen as long as the session's lease: the master may have expired
    // it by now (its lease for the session ends a round trip after ours), or it comes back safe.
    const after = await eventually(
      () => (client.state !== 'jeopardy' ? client.state : undefined),
      'the session to leave jeopardy',
      60_000,
    );
    expect(['connected', 'expired']).toContain(after);
    console.log(`[figure] after the replicas resumed the session was ${after}`);
    if (after === 'connected') {
      await lock.release();
      await handle.close();
    }
    await client.close();
  });

  it('ends up with one connection to the new master however many calls wait through a fail-over', async () => {
    const client = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'many-calls',
      findMasterTimeoutMs: 60_000,
    });
    const handle = await client.open('faults/many-calls', { create: true, contents: 'x' });
    // Every TCP socket this process opens from here on: status probes, and the connections to
    // the new master of this client and of the observer (whose KeepAlives reconnect too).
    const sockets: Socket[] = [];
    const onSocket = (message: unknown): void => {
      sockets.push((message as { socket: Socket }).socket);
    };
    subscribe('net.client.socket', onSocket);
    let killedId: number;
    try {
      killedId = (await killMaster()).id;
      // Reads go out concurrently (commands go one at a time): each finds the master anew.
      const reads = await Promise.all(Array.from({ length: 8 }, async () => handle.read()));
      expect(reads.map((r) => r.toString())).toEqual(Array.from({ length: 8 }, () => 'x'));
      // The observer reconnects when its next call or KeepAlive needs the master; make it call
      // now, so that both clients have found the new master before the sockets are counted.
      expect(await observer.exists('faults/many-calls')).toBe(true);
      const openNow = (): number => sockets.filter((s) => !s.destroyed).length;
      await eventually(
        () => (openNow() <= 2 ? true : undefined),
        'all but two sockets to close',
        15_000,
      ).catch(() => undefined);
      console.log(
        `[figure] ${sockets.length} sockets opened through the fail-over, ${openNow()} still open`,
      );
      // The probes are closed, and so is every connection but the one each client uses.
      expect(openNow()).toBe(2);
    } finally {
      unsubscribe('net.client.socket', onSocket);
    }
    await handle.close();
    await client.close();
    await restart(killedId);
  });

  it('hands the lock of a holder frozen past its lease and grace to a waiter only after expiry plus lock-delay, and fences the old holder', async () => {
    const path = 'faults/frozen-lock';
    const lockDelayMs = 3_000;
    const holder = start('holder', 'frozen-holder', {
      cell: cell.clientAddresses,
      name: 'frozen-holder',
      path,
      leaseMs: 2_000,
      graceMs: 1_000,
      lockDelayMs,
      actEveryMs: 50,
    } satisfies HolderOptions);
    const holderSession = (await holder.next('connected'))['session'];
    const oldSequencer = (await holder.next('acquired'))['sequencer'] as string;
    // The resource the lock protects has seen the holder's sequencer.
    const guard = new FencingGuard();
    expect(guard.admit(oldSequencer)).toBe(true);

    const second = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'second',
      findMasterTimeoutMs: 60_000,
    });
    const handle = await second.open(path, { create: true, lockDelayMs: 0 });
    expect(await handle.tryAcquire()).toBeNull();
    await holder.next('act');

    const stoppedAt = Date.now();
    holder.signal('SIGSTOP');
    const acquiring = handle.acquire().then((lock) => ({ lock, at: Date.now() }));
    // While the holder is frozen its session expires at the master: the lock is free but in
    // lock-delay, with the second client queued.
    const delayed = await eventually(async () => {
      const [info] = await observer.listLocks(path);
      return info?.lockDelayEndsMs !== undefined && info.holders.length === 0 ? info : undefined;
    }, 'the frozen holder to lose the lock at the master');
    expect(delayed.waiters.map((w) => w.session)).toEqual([second.session]);
    const expiredAtMaster = (delayed.lockDelayEndsMs ?? 0) - lockDelayMs;
    expect((await observer.listSessions()).map((s) => s.session)).not.toContain(holderSession);

    const { lock, at: acquiredAt } = await acquiring;
    // Granted only once the lock-delay was over (the master's clock and ours are on one
    // machine; a few ms of slack for the two processes' clocks).
    expect(acquiredAt).toBeGreaterThanOrEqual((delayed.lockDelayEndsMs ?? 0) - 50);
    expect(generation(lock.sequencer)).toBeGreaterThan(generation(oldSequencer));
    expect(guard.admit(lock.sequencer)).toBe(true);
    expect(guard.admit(oldSequencer)).toBe(false);
    expect(() => {
      guard.check(oldSequencer);
    }).toThrow(/stale sequencer/);
    expect(await second.checkSequencer(oldSequencer)).toBe(false);
    expect(await second.checkSequencer(lock.sequencer)).toBe(true);
    expect(holder.isRunning).toBe(true);

    const resumedAt = Date.now();
    holder.signal('SIGCONT');
    const fired = await holder.next('signal', resumedAt);
    const done = await holder.next('done', resumedAt);
    // The holder never acted on the lock after it woke up: the signal fired first.
    expect(holder.linesOf('act').filter((l) => l.t >= resumedAt)).toEqual([]);
    expect(fired['code']).toBe('LOCK_LOST');
    expect(fired['state']).toBe('expired');
    expect(done['state']).toBe('expired');
    // Frozen past lease and grace, it still reports jeopardy before expiry.
    expect(
      holder
        .linesOf('state')
        .map((l) => l['state'])
        .slice(0, 2),
    ).toEqual(['jeopardy', 'expired']);
    console.log(
      `[figure] frozen holder (lease 2000 ms, grace 1000 ms, lock-delay ${lockDelayMs} ms): ` +
        `expired at the master ${expiredAtMaster - stoppedAt} ms after SIGSTOP; the waiter got ` +
        `the lock ${acquiredAt - expiredAtMaster} ms after that expiry (lock-delay honoured: ` +
        `${acquiredAt - expiredAtMaster >= lockDelayMs - 50}); the holder's signal fired ` +
        `${fired.t - resumedAt} ms after SIGCONT (sequencers ${oldSequencer} -> ${lock.sequencer})`,
    );

    await holder.exited;
    await lock.release();
    await handle.close();
    await second.close();
  });

  it('completes a queued acquire whose grant was applied by a new master while the waiter was frozen', async () => {
    const path = 'faults/lost-grant';
    const first = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'first',
      findMasterTimeoutMs: 60_000,
    });
    const handle = await first.open(path, { create: true, lockDelayMs: 0 });
    const held = await handle.acquire();
    const waiter = start('holder', 'frozen-waiter', {
      cell: cell.clientAddresses,
      name: 'frozen-waiter',
      path,
      leaseMs: 30_000,
      graceMs: 30_000,
      lockDelayMs: 0,
      actEveryMs: 200,
    } satisfies HolderOptions);
    const waiterSession = (await waiter.next('connected'))['session'];
    await eventually(async () => {
      const [info] = await observer.listLocks(path);
      return info?.waiters.some((w) => w.session === waiterSession) === true ? true : undefined;
    }, 'the waiter to queue for the lock');

    // Freeze the waiter, kill the master, and release: the new master grants the lock to the
    // waiter while no connection of the waiter's is attached, so the grant is never pushed.
    waiter.signal('SIGSTOP');
    const killed = await killMaster();
    await held.release();
    const [info] = await observer.listLocks(path);
    expect(info?.holders.map((h) => h.session)).toEqual([waiterSession]);
    const resumedAt = Date.now();
    waiter.signal('SIGCONT');
    const acquired = await waiter.next('acquired', resumedAt);
    expect(generation(acquired['sequencer'])).toBeGreaterThan(generation(held.sequencer));
    expect(waiter.linesOf('reread').length).toBeGreaterThanOrEqual(1);
    console.log(
      `[figure] a grant applied while the waiter was frozen across a fail-over reached it ` +
        `${acquired.t - resumedAt} ms after SIGCONT (by the re-check after reread)`,
    );
    waiter.send('release');
    expect((await waiter.next('done', resumedAt))['state']).toBe('connected');
    await waiter.exited;
    await handle.close();
    await first.close();
    await restart(killed.id);
  });

  it('keeps exactly one leader at a time across a master kill and a frozen leader, with growing sequencers', async () => {
    const dir = tempDir('heartbeats');
    const heartbeatFile = join(dir, 'heartbeats.jsonl');
    writeFileSync(heartbeatFile, '');
    try {
      const campaign = (name: string): Fixture =>
        start('campaigner', name, {
          cell: cell.clientAddresses,
          name,
          path: 'faults/election',
          leaseMs: 2_000,
          graceMs: 1_000,
          lockDelayMs: 2_000,
          actEveryMs: 100,
          heartbeatFile,
        } satisfies CampaignerOptions);
      const campaigners = [campaign('c1'), campaign('c2')];
      const heartbeats = (): { name: string; sequencer: string; t: number }[] =>
        readFileSync(heartbeatFile, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as { name: string; sequencer: string; t: number });
      /** The campaigner acting as leader now: the author of heartbeats after `since`. */
      const actingSince = async (since: number, what: string): Promise<string> =>
        eventually(() => {
          const recent = heartbeats().filter((h) => h.t > since);
          return recent.length >= 5 ? recent[recent.length - 1]?.name : undefined;
        }, what);

      await actingSince(0, 'a first leader');

      // A master kill under the leader.
      const killed = await killMaster();
      await actingSince(killed.at, 'a leader acting after the master kill');
      await restart(killed.id);

      // The leader frozen past its lease and grace, then resumed.
      const frozenName = await actingSince(Date.now(), 'the current leader');
      const frozen = campaigners.find((c) => c.name === frozenName)!;
      const other = campaigners.find((c) => c !== frozen)!;
      const stoppedAt = Date.now();
      frozen.signal('SIGSTOP');
      const taken = await other.next('leader', stoppedAt);
      await eventually(
        () => (heartbeats().some((h) => h.sequencer === taken['sequencer']) ? true : undefined),
        'the new leader to act',
      );
      const resumedAt = Date.now();
      frozen.signal('SIGCONT');
      const lost = await frozen.next('lost', resumedAt);
      await frozen.next('connected', resumedAt); // a new session, campaigning again
      await eventually(
        () => (heartbeats().filter((h) => h.t > lost.t).length >= 5 ? true : undefined),
        'the leader to go on acting',
      );

      // Every term, in the order the terms began, has a strictly larger sequencer.
      const terms = campaigners
        .flatMap((c) =>
          c
            .linesOf('leader')
            .map((l) => ({ name: c.name, sequencer: String(l['sequencer']), t: l.t })),
        )
        .sort((a, b) => a.t - b.t);
      const generations = terms.map((term) => generation(term.sequencer));
      for (let i = 1; i < generations.length; i++)
        expect(generations[i]).toBeGreaterThan(generations[i - 1]!);
      // The resource (the heartbeat file, in the order the acts happened) never sees a term
      // go back: a guard admits every act, so no deposed leader acted after its successor.
      const guard = new FencingGuard();
      const acts = heartbeats();
      const refused = acts.filter((h) => !guard.admit(h.sequencer));
      expect(refused).toEqual([]);
      // Each term acted within [became leader, lost], and the terms' acting intervals do
      // not overlap: a term's last act precedes the next term's first.
      const spans = terms.map((term) => {
        const own = acts.filter((h) => h.sequencer === term.sequencer);
        const lostLine = campaigners
          .find((c) => c.name === term.name)
          ?.linesOf('lost')
          .find((l) => l['sequencer'] === term.sequencer);
        return {
          name: term.name,
          sequencer: term.sequencer,
          leaderAt: term.t,
          lostAt: lostLine?.t,
          first: own[0]?.t,
          last: own[own.length - 1]?.t,
        };
      });
      for (const span of spans) {
        if (span.first !== undefined) expect(span.first).toBeGreaterThanOrEqual(span.leaderAt);
        if (span.last !== undefined && span.lostAt !== undefined)
          expect(span.last).toBeLessThanOrEqual(span.lostAt);
      }
      const acting = spans.filter((s) => s.first !== undefined);
      for (let i = 1; i < acting.length; i++)
        expect(acting[i]!.first!).toBeGreaterThanOrEqual(acting[i - 1]!.last!);
      // The frozen leader did not act after it woke up, and learned of its loss.
      expect(acts.filter((h) => h.name === frozen.name && h.t >= resumedAt)).toEqual([]);
      expect(generation(taken['sequencer'])).toBeGreaterThan(generation(lost['sequencer']));
      console.log(
        `[figure] election: terms ${spans
          .map((s) => `${s.name}@${generation(s.sequencer)}`)
          .join(' -> ')}; ${acts.length} acts, 0 refused; after freezing ${frozen.name} the ` +
          `other took over ${taken.t - stoppedAt} ms later; the frozen one learned of its loss ` +
          `${lost.t - resumedAt} ms after SIGCONT`,
      );
    } finally {
      await Promise.all([...fixtures].map(async (f) => f.stop()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
