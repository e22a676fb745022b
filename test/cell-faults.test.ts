// Fault tests on a real five-process cell (issue 4, "what done looks like" 3 to 6): kill -9 of
// the master, SIGSTOP of the master past its lease, two and then three replicas down, and a
// replica that restarts after many writes and catches up from the log. Every process is
// started by the test and stopped by the test, by pid. Figures are printed, not asserted.

import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Connection, ConnectionError, PaxlockClient } from '@paxlock/client';
import type { LocalCell } from '../scripts/cell.ts';
import { caughtUp, currentMaster, eventually, statusOf, useCell } from './helpers.ts';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const openFile = (path: string, extra: { ephemeral?: boolean; lockDelayMs?: number } = {}) =>
  ({ type: 'Open', path, create: 'may', ephemeral: extra.ephemeral ?? false, directory: false, eventMask: 0, lockDelayMs: extra.lockDelayMs ?? 0 }) as const;

describe('a five-replica cell under faults', () => {
  const theCell = useCell('faults');
  let cell: LocalCell;
  beforeAll(async () => {
    cell = theCell();
    await currentMaster(cell);
  });

  it('survives kill -9 of the master: the session, its lock and its ephemeral file live on', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'survivor', findMasterTimeoutMs: 60_000 });
    const eph = await client.command(openFile('/ls/local/eph-survivor', { ephemeral: true }));
    const lockNode = await client.command(openFile('/ls/local/lock-survivor', { lockDelayMs: 5_000 }));
    if (eph.type !== 'opened' || lockNode.type !== 'opened') throw new Error('open failed');
    const acquired = await client.command({ type: 'Acquire', handle: lockNode.handle, mode: 'exclusive', wait: false });
    expect(acquired.type).toBe('acquired');

    const failoverMs: number[] = [];
    for (let round = 0; round < 3; round++) {
      const master = await currentMaster(cell);
      const epochBefore = master.epoch;
      const killedAt = Date.now();
      await cell.signal(master.id, 'SIGKILL');
      const written = await client.command({ type: 'SetContents', handle: eph.handle, contents: Buffer.from(`after kill ${round}`) });
      failoverMs.push(Date.now() - killedAt);
      expect(written.type).toBe('contents-set');
      const after = await currentMaster(cell);
      expect(after.id).not.toBe(master.id);
      expect(after.epoch.round * 1000 + after.epoch.replica).toBeGreaterThan(epochBefore.round * 1000 + epochBefore.replica);

      // The session did not expire: its lock is still held by it, its ephemeral file is there.
      const locks = await client.query({ type: 'ListLocks', path: '/ls/local/lock-survivor' });
      expect(locks).toMatchObject({ type: 'locks', locks: [{ holders: [{ session: client.session, mode: 'exclusive' }] }] });
      const stat = await client.query({ type: 'GetContentsAndStat', session: client.session, handle: eph.handle });
      expect(stat).toMatchObject({ type: 'contents-and-stat', stat: { isEphemeral: true } });
      if (stat.type === 'contents-and-stat') expect(Buffer.from(stat.contents).toString()).toBe(`after kill ${round}`);

      cell.start(master.id); // back to five for the next round; it catches up from the log
    }
    console.log(`[figure] kill -9 of the master to the next acknowledged write: median ${median(failoverMs)} ms (runs: ${failoverMs.join(', ')})`);
    await client.close();
  });

  it('hands mastership over on SIGTERM: the successor takes over without waiting out the lease', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'handover', findMasterTimeoutMs: 60_000 });
    const eph = await client.command(openFile('/ls/local/eph-handover', { ephemeral: true }));
    const lockNode = await client.command(openFile('/ls/local/lock-handover', { lockDelayMs: 5_000 }));
    if (eph.type !== 'opened' || lockNode.type !== 'opened') throw new Error('open failed');
    expect((await client.command({ type: 'Acquire', handle: lockNode.handle, mode: 'exclusive', wait: false })).type).toBe('acquired');

    const handoverMs: number[] = [];
    const outcomes: string[] = [];
    for (let round = 0; round < 3; round++) {
      const master = await currentMaster(cell);
      const logBefore = readFileSync(cell.logPath(master.id), 'utf8').length;
      const stoppedAt = Date.now();
      const exited = cell.signal(master.id, 'SIGTERM');
      const written = await client.command({ type: 'SetContents', handle: eph.handle, contents: Buffer.from(`after handover ${round}`) });
      handoverMs.push(Date.now() - stoppedAt);
      expect(written.type).toBe('contents-set');
      await exited;
      expect(cell.replicas.get(master.id)?.process.exitCode).toBe(0);
      const after = await currentMaster(cell);
      expect(after.id).not.toBe(master.id);
      // It was a hand-over, not an election after the lease ran out: the stopping master named
      // a successor, that successor is the new master, and its log says it ran because of the
      // resignation. (The logs are piped through this process: the last lines may land a moment
      // after the exit.) Whether the old master saw the new one before it closed (at most 1 s)
      // depends on the machine's speed, so it is reported, not asserted.
      const stoppedLog = await eventually(() => {
        const text = readFileSync(cell.logPath(master.id), 'utf8').slice(logBefore);
        return text.includes('replica stopped') ? text : undefined;
      }, `replica ${master.id} to log its stop`, 10_000);
      const resigning = stoppedLog.split('\n').find((line) => line.includes('"master resigning"'));
      const successor = resigning === undefined ? undefined : (JSON.parse(resigning) as { successor?: number }).successor;
      expect(successor).toBe(after.id);
      expect(readFileSync(cell.logPath(after.id), 'utf8')).toContain('master resigned: taking over');
      outcomes.push(stoppedLog.includes('mastership handed over') ? 'handed over' : 'closed before the successor was master');

      // The session lives on: its lock is still held by it, its ephemeral file is there.
      const locks = await client.query({ type: 'ListLocks', path: '/ls/local/lock-handover' });
      expect(locks).toMatchObject({ type: 'locks', locks: [{ holders: [{ session: client.session, mode: 'exclusive' }] }] });
      const stat = await client.query({ type: 'GetContentsAndStat', session: client.session, handle: eph.handle });
      if (stat.type !== 'contents-and-stat') throw new Error(`unexpected ${stat.type}`);
      expect(Buffer.from(stat.contents).toString()).toBe(`after handover ${round}`);

      cell.start(master.id);
      await caughtUp(cell, master.id, `replica ${master.id} back after its graceful stop`);
    }
    console.log(`[figure] SIGTERM of the master to the next acknowledged write (hand-over): median ${median(handoverMs)} ms (runs: ${handoverMs.join(', ')}; ${outcomes.join(', ')})`);
    await client.close();
  });

  it('gives mastership up on SIGUSR2 and carries on as a follower', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'step-down', findMasterTimeoutMs: 60_000 });
    const file = await client.command(openFile('/ls/local/step-down'));
    if (file.type !== 'opened') throw new Error('open failed');
    const master = await currentMaster(cell);
    const pid = cell.pid(master.id);
    const signalledAt = Date.now();
    process.kill(pid, 'SIGUSR2');
    const written = await client.command({ type: 'SetContents', handle: file.handle, contents: Buffer.from('after step-down') });
    const stepDownMs = Date.now() - signalledAt;
    expect(written.type).toBe('contents-set');
    const after = await currentMaster(cell);
    expect(after.id).not.toBe(master.id);
    // Still the same process, now a follower of the new master.
    expect(cell.isRunning(master.id)).toBe(true);
    expect(cell.pid(master.id)).toBe(pid);
    const address = cell.config.replicas.find((r) => r.id === master.id)?.client;
    if (address === undefined) throw new Error(`no address for replica ${master.id}`);
    const old = await eventually(async () => {
      const status = await statusOf(address);
      return status?.role === 'follower' && status.masterId === after.id ? status : undefined;
    }, `replica ${master.id} to follow replica ${after.id}`);
    expect(old.id).toBe(master.id);
    expect(readFileSync(cell.logPath(after.id), 'utf8')).toContain('master resigned: taking over');
    console.log(`[figure] SIGUSR2 of the master to the next acknowledged write: ${stepDownMs} ms (master ${master.id} -> ${after.id})`);
    await client.close();
  });

  it('never lets a master frozen past its lease serve a read or acknowledge a write; it rejoins as a follower', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'frozen-test', findMasterTimeoutMs: 60_000 });
    const file = await client.command(openFile('/ls/local/frozen'));
    if (file.type !== 'opened') throw new Error('open failed');
    await client.command({ type: 'SetContents', handle: file.handle, contents: Buffer.from('v1') });

    const old = await currentMaster(cell);
    const oldAddress = cell.config.replicas.find((r) => r.id === old.id)!.client;
    // Open the connection before the freeze: requests sent while it is stopped wait in the
    // kernel and are the first thing it reads when it wakes.
    const direct = await Connection.open(oldAddress);
    await cell.signal(old.id, 'SIGSTOP');
    try {
      // The rest of the cell elects a new master (after the old lease runs out) and moves on.
      const written = await client.command({ type: 'SetContents', handle: file.handle, contents: Buffer.from('v2') });
      expect(written.type).toBe('contents-set');
      const fresh = await currentMaster(cell);
      expect(fresh.id).not.toBe(old.id);

      const read = direct.request({ type: 'query', query: { type: 'GetContentsAndStat', session: client.session, handle: file.handle } }, 15_000);
      const write = direct.request(
        { type: 'command', command: { type: 'SetContents', session: client.session, seq: 1_000_000, handle: file.handle, contents: Buffer.from('stale master') } },
        15_000,
      );
      await cell.signal(old.id, 'SIGCONT');
      const [readReply, writeReply] = await Promise.all([read, write]);
      // Whatever it answers, it is not a read of its old state and not an acknowledgement.
      expect(readReply.type).not.toBe('query-result');
      expect(writeReply.type).not.toBe('result');
      expect(['redirect', 'error']).toContain(readReply.type);
      expect(['redirect', 'error']).toContain(writeReply.type);
    } finally {
      if (cell.isRunning(old.id)) await cell.signal(old.id, 'SIGCONT');
      direct.close();
    }
    const rejoined = await eventually(
      async () => (await statusOf(oldAddress).catch(() => undefined))?.role === 'follower' ? true : undefined,
      'the old master rejoins as a follower',
    );
    expect(rejoined).toBe(true);
    const contents = await client.query({ type: 'GetContentsAndStat', session: client.session, handle: file.handle });
    if (contents.type !== 'contents-and-stat') throw new Error('read failed');
    expect(Buffer.from(contents.contents).toString()).toBe('v2');
    await client.close();
  });

  it('serves with two replicas down, fails writes with NO_QUORUM with three down, and loses no acknowledged write', async () => {
    // Calls give up after 10 s, so the failure with three down comes within a bounded time
    // (by default a call waits through jeopardy until the session is safe or expired).
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'quorum', findMasterTimeoutMs: 10_000, callTimeoutMs: 10_000 });
    const file = await client.command(openFile('/ls/local/quorum'));
    if (file.type !== 'opened') throw new Error('open failed');
    const master = await currentMaster(cell);
    const followers = cell.config.replicas.map((r) => r.id).filter((id) => id !== master.id);

    const healthOf = async (id: number): Promise<{ status: number; health: boolean; role: string }> => {
      const response = await fetch(`http://${cell.config.replicas.find((r) => r.id === id)!.client}/health`);
      const body = (await response.json()) as { health: boolean; role: string };
      return { status: response.status, health: body.health, role: body.role };
    };

    await cell.signal(followers[0]!, 'SIGKILL');
    await cell.signal(followers[1]!, 'SIGKILL');
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      const value = `two-down-${i}`;
      const r = await client.command({ type: 'SetContents', handle: file.handle, contents: Buffer.from(value) });
      expect(r.type).toBe('contents-set');
      acked.push(value);
    }
    // GET /health: the master still serves, so it says healthy.
    expect(await healthOf(master.id)).toEqual({ status: 200, health: true, role: 'master' });

    await cell.signal(followers[2]!, 'SIGKILL');
    const stuck = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'stuck', findMasterTimeoutMs: 10_000 }).then(
      () => null,
      (err: unknown) => err,
    );
    const failedAt = Date.now();
    const write = await client
      .command({ type: 'SetContents', handle: file.handle, contents: Buffer.from('three-down') })
      .then(() => null, (err: unknown) => err);
    console.log(`[figure] with three replicas down, a write failed after ${Date.now() - failedAt} ms`);
    expect(stuck).toBeInstanceOf(ConnectionError);
    expect(write).toBeInstanceOf(ConnectionError);
    expect((write as ConnectionError).code).toBe('NO_QUORUM');
    expect((write as ConnectionError).message).toMatch(/no quorum: 2 of 5 replicas reachable/);
    // Neither survivor is part of a working cell now, and GET /health says so (503).
    const survivors = [master.id, followers[3]!];
    const unhealthy = await eventually(async () => {
      const all = await Promise.all(survivors.map(healthOf));
      return all.every((h) => h.status === 503 && !h.health) ? all : undefined;
    }, 'both survivors reporting unhealthy');
    expect(unhealthy.map((h) => h.role)).not.toContain('master');

    for (const id of followers.slice(0, 3)) cell.start(id);
    await currentMaster(cell);
    const after = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'after', findMasterTimeoutMs: 60_000 });
    const reopened = await after.command(openFile('/ls/local/quorum'));
    if (reopened.type !== 'opened') throw new Error('open failed');
    const read = await after.query({ type: 'GetContentsAndStat', session: after.session, handle: reopened.handle });
    if (read.type !== 'contents-and-stat') throw new Error('read failed');
    // The last acknowledged value, or the unacknowledged one if it was chosen after all.
    expect([acked[acked.length - 1], 'three-down']).toContain(Buffer.from(read.contents).toString());
    expect(read.stat.contentGeneration).toBeGreaterThanOrEqual(1 + acked.length);
    client.abandon();
    await after.close();
  });

  it('catches up a replica restarted after many writes, from the log', async () => {
    const master = await currentMaster(cell);
    const laggard = cell.config.replicas.map((r) => r.id).find((id) => id !== master.id)!;
    await cell.signal(laggard, 'SIGKILL');
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'writer', findMasterTimeoutMs: 60_000 });
    const file = await client.command(openFile('/ls/local/catch-up'));
    if (file.type !== 'opened') throw new Error('open failed');
    const writes = 300;
    const startedAt = Date.now();
    await Promise.all(
      Array.from({ length: writes }, (_, i) => client.command({ type: 'SetContents', handle: file.handle, contents: Buffer.from(`w${i}`) })),
    );
    const writeMs = Date.now() - startedAt;
    const restartedAt = Date.now();
    cell.start(laggard);
    const done = await caughtUp(cell, laggard, 'the restarted replica catching up');
    console.log(`[figure] ${writes} writes (${writeMs} ms) while a replica was down; it caught up ${done.replica.applied} slots ${Date.now() - restartedAt} ms after its restart`);
    expect(done.replica.digest).toBe(done.master.digest);
    await client.close();
  });
});

describe('a cell that compacts its log', () => {
  const theCell = useCell('compact', ['--snapshot-every', '100']);
  let cell: LocalCell;
  beforeAll(async () => {
    cell = theCell();
    await currentMaster(cell);
  });

  it('catches up a replica restarted after log compaction, from a snapshot sent in chunks', async () => {
    const master = await currentMaster(cell);
    const laggard = cell.config.replicas.map((r) => r.id).find((id) => id !== master.id)!;
    await cell.signal(laggard, 'SIGKILL');
    // Sequential writes of one session: one slot each, so the log grows well past the
    // compaction point (snapshot every 100 slots, 256 slots kept behind it).
    const writer = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'writer', findMasterTimeoutMs: 60_000 });
    const file = await writer.command(openFile('/ls/local/compact'));
    if (file.type !== 'opened') throw new Error('open failed');
    for (let n = 0; n < 500; n++) await writer.command({ type: 'SetContents', handle: file.handle, contents: Buffer.alloc(2048, n) });
    const restartedAt = Date.now();
    cell.start(laggard);
    const done = await caughtUp(cell, laggard, 'the restarted replica catching up from a snapshot');
    expect(done.replica.digest).toBe(done.master.digest);
    // The replica's log reaches its file through a pipe in this process: wait for the line.
    const { readFileSync } = await import('node:fs');
    await eventually(() => (/"msg":"snapshot installed"/.test(readFileSync(cell.logPath(laggard), 'utf8')) ? true : undefined), 'the snapshot install in the replica log');
    console.log(`[figure] replica restarted behind the compaction point caught up to slot ${done.replica.applied} by snapshot in ${Date.now() - restartedAt} ms`);
    await writer.close();
  });
});
