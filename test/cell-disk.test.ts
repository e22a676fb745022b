// A lost disk, with real parts (docs/cell.md, Replacing a lost disk): five replica processes,
// real SQLite with fsync, a follower's data directory deleted under it. What it proves:
//
// - a replica restarted on an empty data directory without --bootstrap is a replacement disk: it
//   says so (status isVoter false, a non-zero disk id, a loud line in its log), catches up by a
//   snapshot (the log is compacted every 100 slots), is admitted by the master through the log,
//   and its state digest agrees with the master's;
// - once admitted it votes: with two other replicas down, a write succeeds only with its vote;
// - while it is a learner it does not count: wiped again, with two other replicas down (so the
//   master and one other voter are all the voters up), no write succeeds and it stays a learner,
//   however long that lasts, since only seats' votes choose anything, the admission included;
//   when one of the two comes back, it catches up by a snapshot that carries its earlier
//   admission (compacted out of the log by then), is admitted under its new disk id, and votes;
// - no acknowledged write is lost, and a session's lock and ephemeral file live through it all;
// - --bootstrap left in by mistake does not make a wiped replica vote as the disk it replaces: its
//   peers' histories are older than --bootstrap-window-ms, so it starts as a learner all the
//   same (bootstrap-guard.ts), while the cell's own first start made five founding disks;
// - an old disk started again after its replacement was admitted is a learner for good and says
//   why; wiped, it comes back as a replacement and is admitted.
//
// Every wait polls real state (status frames, log files); every process is stopped by pid.

import { readFileSync, renameSync, rmSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError, PaxlockClient } from '@paxlock/client';
import type { ReplicaStatus } from '@paxlock/shared';
import type { LocalCell } from '../scripts/cell.ts';
import { caughtUp, currentMaster, eventually, runningStatuses, statusOf, useCell } from './helpers.ts';

const openFile = (path: string, extra: { ephemeral?: boolean } = {}) =>
  ({ type: 'Open', path, create: 'may', ephemeral: extra.ephemeral ?? false, directory: false, eventMask: 0, lockDelayMs: 0 }) as const;

function addressOf(cell: LocalCell, id: number): string {
  const address = cell.config.replicas.find((r) => r.id === id)?.client;
  if (address === undefined) throw new Error(`no replica ${String(id)}`);
  return address;
}

/** Replica `id`'s log from character `from` on (the file is appended to by each of its processes). */
function logOf(cell: LocalCell, id: number, from = 0): string {
  return readFileSync(cell.logPath(id), 'utf8').slice(from);
}

/** Count of log lines of replica `id` (from character `from` on) with this exact message. */
function linesWith(cell: LocalCell, id: number, msg: string, from = 0): number {
  return logOf(cell, id, from).split('\n').filter((line) => line.includes(`"msg":"${msg}"`)).length;
}

/** The status of replica `id` once it answers. */
async function statusWhenUp(cell: LocalCell, id: number): Promise<ReplicaStatus> {
  return eventually(async () => statusOf(addressOf(cell, id)), `replica ${String(id)} answering status`, 60_000);
}

describe('a replica whose disk was lost', () => {
  const theCell = useCell('disk', ['--snapshot-every', '100']);
  let cell: LocalCell;
  let writer: PaxlockClient;
  let writeHandle = 0;
  let lastAcked = '';
  let holder: PaxlockClient;

  /** Sequential writes to one file, one slot each; the last acknowledged value is remembered. */
  async function write(count: number, tag: string): Promise<void> {
    for (let n = 0; n < count; n++) {
      const value = `${tag}-${String(n)}`;
      const r = await writer.command({ type: 'SetContents', handle: writeHandle, contents: Buffer.from(value) });
      expect(r.type).toBe('contents-set');
      lastAcked = value;
    }
  }

  /** Followers other than `except`, in id order. */
  async function othersThan(except: number): Promise<{ master: ReplicaStatus; others: number[] }> {
    const master = await currentMaster(cell);
    return { master, others: cell.config.replicas.map((r) => r.id).filter((id) => id !== master.id && id !== except) };
  }

  beforeAll(async () => {
    cell = theCell();
    await currentMaster(cell);
    writer = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'disk-writer', findMasterTimeoutMs: 60_000 });
    const file = await writer.command(openFile('/ls/local/disk-writes'));
    if (file.type !== 'opened') throw new Error('open failed');
    writeHandle = file.handle;
    // A session holding an exclusive lock and an ephemeral file through everything below.
    holder = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'disk-holder', findMasterTimeoutMs: 60_000 });
    const lockNode = await holder.command(openFile('/ls/local/disk-lock'));
    const eph = await holder.command(openFile('/ls/local/disk-eph', { ephemeral: true }));
    if (lockNode.type !== 'opened' || eph.type !== 'opened') throw new Error('open failed');
    expect((await holder.command({ type: 'Acquire', handle: lockNode.handle, mode: 'exclusive', wait: false })).type).toBe('acquired');
  });

  let victim = 0;
  let firstDisk = 0;

  it('comes back as a learner, catches up by snapshot, is admitted, and agrees with the master', async () => {
    // Past three compactions: the wiped replica's slot 1 is long gone from every log.
    await write(310, 'before');
    const { master, others } = await othersThan(0);
    victim = others[0]!;
    expect(linesWith(cell, victim, 'replica starting: a voter')).toBe(1);
    await cell.signal(victim, 'SIGKILL');
    rmSync(cell.dataPath(victim, ''), { recursive: true, force: true });

    const logFrom = logOf(cell, victim).length;
    const startedAt = Date.now();
    cell.start(victim); // no --bootstrap: an empty directory is a replacement disk
    const first = await statusWhenUp(cell, victim);
    const admitted = await eventually(async () => {
      const s = await statusOf(addressOf(cell, victim));
      return s?.isVoter === true ? s : undefined;
    }, 'the replacement disk admitted', 60_000);
    const admittedMs = Date.now() - startedAt;
    firstDisk = admitted.diskId;
    expect(firstDisk).not.toBe(0);
    // It started as a learner, said so loudly, and was admitted through the log.
    expect(linesWith(cell, victim, 'replica starting: a learner', logFrom)).toBe(1);
    expect(logOf(cell, victim, logFrom)).toMatch(/"level":40,.*this disk does not hold its seat: it is a replacement disk/);
    expect(linesWith(cell, victim, 'this disk admitted: voting from the next slot on', logFrom)).toBe(1);
    expect(linesWith(cell, victim, 'snapshot installed', logFrom)).toBeGreaterThanOrEqual(1);
    const admitters = cell.config.replicas.filter((r) => linesWith(cell, r.id, 'admitting a replacement disk') > 0);
    expect(admitters.length).toBeGreaterThanOrEqual(1);

    const done = await caughtUp(cell, victim, 'the replacement disk caught up');
    expect(done.replica.digest).toBe(done.master.digest);
    console.log(
      `[figure] wiped replica ${String(victim)} (disk ${firstDisk.toString(16)}): first status ${first.isVoter ? 'voter' : 'learner'} at applied ${String(first.applied)}; ` +
        `admitted ${String(admittedMs)} ms after its process was started, caught up by snapshot (master ${String(master.id)})`,
    );
  });

  /** The two replicas (neither the master nor the replacement) kept down from here on. */
  let down: number[] = [];

  it('votes once admitted: with two other replicas down, writes need its vote and succeed', async () => {
    const { others } = await othersThan(victim);
    down = others.slice(0, 2);
    for (const id of down) await cell.signal(id, 'SIGKILL');
    // Up: the master, one other voter and the replacement: three seats only with its vote. The
    // writes also carry the log past two more compactions, so its admission is compacted away.
    await write(300, 'needs-replacement');
  });

  it('does not count while a learner: wiped again with two others down, nothing is chosen until a seat holder returns', async () => {
    // Calls give up after 3 s, so the failure with two voters up comes within a bounded time.
    const probe = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'disk-probe', findMasterTimeoutMs: 10_000, callTimeoutMs: 3_000 });
    const probeFile = await probe.command(openFile('/ls/local/disk-probe'));
    if (probeFile.type !== 'opened') throw new Error('open failed');

    await cell.signal(victim, 'SIGKILL');
    rmSync(cell.dataPath(victim, ''), { recursive: true, force: true });
    const logFrom = logOf(cell, victim).length;
    cell.start(victim);
    const learner = await statusWhenUp(cell, victim);
    expect(learner.isVoter).toBe(false);
    expect(learner.diskId).not.toBe(0);
    expect(learner.diskId).not.toBe(firstDisk);

    // Two voters and a learner: no write is chosen (a learner that voted would make three).
    const failedAt = Date.now();
    const failed = await probe
      .command({ type: 'SetContents', handle: probeFile.handle, contents: Buffer.from('learner-only') })
      .then(() => null, (err: unknown) => err);
    expect(failed).toBeInstanceOf(ConnectionError);
    // NO_QUORUM from a master without its lease, or NO_MASTER once no one is master.
    expect(['NO_QUORUM', 'NO_MASTER']).toContain((failed as ConnectionError).code);
    const stillLearner = await statusOf(addressOf(cell, victim));
    expect(stillLearner?.isVoter).toBe(false);
    expect(linesWith(cell, victim, 'this disk admitted: voting from the next slot on', logFrom)).toBe(0);
    console.log(`[figure] two voters and a learner up: a write failed ${(failed as ConnectionError).code} after ${String(Date.now() - failedAt)} ms; the learner stayed a learner`);

    // One seat holder back: three voters, so the learner is caught up and admitted.
    const back = down[0]!;
    const backAt = Date.now();
    cell.start(back);
    const admitted = await eventually(async () => {
      const s = await statusOf(addressOf(cell, victim));
      return s?.isVoter === true ? s : undefined;
    }, 'the second replacement disk admitted', 60_000);
    expect(admitted.diskId).toBe(learner.diskId);
    console.log(`[figure] the learner was admitted ${String(Date.now() - backAt)} ms after a third voter was started`);
    // Its snapshot carried the earlier admission, compacted out of the log since.
    const installs = logOf(cell, victim, logFrom)
      .split('\n')
      .filter((line) => line.includes('"msg":"snapshot installed"') && line.includes('"admissions":'))
      .map((line) => JSON.parse(line) as { admissions: number });
    expect(installs.length).toBeGreaterThanOrEqual(1);
    expect(installs.at(-1)?.admissions).toBeGreaterThanOrEqual(1);

    // One still down: the replacement is one of four voters up, and the last one comes back.
    await write(5, 'after-second-admission');
    probe.abandon();
    cell.start(down[1]!);
    const done = await caughtUp(cell, down[1]!, 'the last replica back');
    expect(done.replica.digest).toBe(done.master.digest);
  });

  it('lost no acknowledged write, and the holder kept its lock and ephemeral file', async () => {
    const statuses = await eventually(async () => {
      const all = await runningStatuses(cell);
      const master = all.find((s) => s.role === 'master');
      return all.length === 5 && master !== undefined && all.every((s) => s.applied === master.applied) ? all : undefined;
    }, 'all five at the same slot');
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    expect(statuses.filter((s) => s.isVoter).length).toBe(5);
    expect(Buffer.from(await writer.readFile('/ls/local/disk-writes')).toString()).toBe(lastAcked);
    const locks = await holder.query({ type: 'ListLocks', path: '/ls/local/disk-lock' });
    expect(locks).toMatchObject({ type: 'locks', locks: [{ holders: [{ session: holder.session, mode: 'exclusive' }] }] });
    expect(await writer.exists('/ls/local/disk-eph')).toBe(true);
    await holder.close();
    await writer.close();
  });

  it('is a learner all the same when --bootstrap was left in: its peers hold an older history', async () => {
    // The cell's first start: every replica asked its peers and found no older history.
    for (const r of cell.config.replicas) {
      expect(linesWith(cell, r.id, 'no peer holds an older history of the cell: this empty directory is a founding disk')).toBe(1);
    }
    const { others } = await othersThan(victim);
    const wiped = others[0]!;
    await cell.signal(wiped, 'SIGKILL');
    rmSync(cell.dataPath(wiped, ''), { recursive: true, force: true });
    const logFrom = logOf(cell, wiped).length;
    // Window 0: any history is older than it (the cell here is younger than the default 30 s window).
    cell.start(wiped, { bootstrap: true, extraArgs: ['--bootstrap-window-ms', '0'] });
    const first = await statusWhenUp(cell, wiped);
    expect(first.isVoter).toBe(false);
    expect(first.diskId).not.toBe(0);
    expect(linesWith(cell, wiped, 'replica starting: a learner', logFrom)).toBe(1);
    expect(logOf(cell, wiped, logFrom)).toMatch(/"level":40,.*--bootstrap ignored for the seat: replica \d+ has held this cell's history for/);
    const admitted = await eventually(async () => {
      const s = await statusOf(addressOf(cell, wiped));
      return s?.isVoter === true ? s : undefined;
    }, 'the wiped replica admitted', 60_000);
    expect(admitted.diskId).toBe(first.diskId);
    // Admitted and following the master: GET /health says 200 (a learner says 503).
    const health = await eventually(async () => {
      const response = await fetch(`http://${addressOf(cell, wiped)}/health`);
      const body = (await response.json()) as { isVoter: boolean; bootedAtMs: number | null };
      return response.status === 200 ? body : undefined;
    }, 'the admitted replica healthy');
    expect(health.isVoter).toBe(true);
    expect(health.bootedAtMs).toBeGreaterThan(0);
    const done = await caughtUp(cell, wiped, 'the wiped replica caught up');
    expect(done.replica.digest).toBe(done.master.digest);
  });

  it('never counts an old disk again once its replacement was admitted; wiped, it rejoins', async () => {
    const { others } = await othersThan(victim);
    const swapped = others.at(-1)!;
    // The founding disk is taken out (kept aside), and a replacement is admitted in its seat.
    await cell.signal(swapped, 'SIGKILL');
    const dir = cell.dataPath(swapped, '');
    renameSync(dir, `${dir}.old`);
    cell.start(swapped);
    const replacement = await eventually(async () => {
      const s = await statusOf(addressOf(cell, swapped));
      return s?.isVoter === true ? s : undefined;
    }, 'the replacement admitted', 60_000);
    expect(replacement.diskId).not.toBe(0);
    // The old disk is put back and started again: its seat is the replacement's now.
    await cell.signal(swapped, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    renameSync(`${dir}.old`, dir);
    const logFrom = logOf(cell, swapped).length;
    cell.start(swapped);
    // It does not know of the admission yet (it was out when it was chosen), so it starts as the
    // voter it was; its votes for later slots do not count anywhere (a master and a candidate
    // check each vote's disk against the seat). Catching up, it learns the admission and says so.
    const old = await eventually(async () => {
      const s = await statusOf(addressOf(cell, swapped));
      return s !== undefined && !s.isVoter && s.applied >= replacement.applied ? s : undefined;
    }, 'the old disk caught up and a learner', 60_000);
    expect(old.diskId).toBe(0);
    expect(linesWith(cell, swapped, "this replica's seat went to another disk: this disk no longer votes; wipe its data directory and start it without --bootstrap to rejoin as a replacement disk", logFrom)).toBe(1);
    // Started again as it is, it knows at once, and says so at start.
    await cell.signal(swapped, 'SIGTERM');
    const restartFrom = logOf(cell, swapped).length;
    cell.start(swapped);
    await statusWhenUp(cell, swapped);
    expect(linesWith(cell, swapped, 'replica starting: a learner', restartFrom)).toBe(1);
    expect(logOf(cell, swapped, restartFrom)).toMatch(/"level":40,.*"seatHolder":\d+.*this disk was replaced: this replica's seat belongs to another disk/);
    // Once it follows the master again, GET /health says why it is not healthy.
    const reason = await eventually(async () => {
      const response = await fetch(`http://${addressOf(cell, swapped)}/health`);
      const body = (await response.json()) as { reason?: string; masterId: number | null };
      return response.status === 503 && body.masterId !== null ? body.reason : undefined;
    }, 'the old disk following a master');
    expect(reason).toMatch(/^learner: this disk is not admitted yet/);
    // Writes go on among the four voters; it is not admitted back.
    const c = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'disk-swap', findMasterTimeoutMs: 10_000 });
    const f = await c.command(openFile('/ls/local/disk-swap'));
    if (f.type !== 'opened') throw new Error('open failed');
    for (let n = 0; n < 20; n++) expect((await c.command({ type: 'SetContents', handle: f.handle, contents: Buffer.from(String(n)) })).type).toBe('contents-set');
    await caughtUp(cell, swapped, 'the old disk following');
    expect((await statusOf(addressOf(cell, swapped)))?.isVoter).toBe(false);
    expect(linesWith(cell, swapped, 'this disk admitted: voting from the next slot on', logFrom)).toBe(0);
    // The way back: wipe it, start it without --bootstrap: a replacement, admitted.
    await cell.signal(swapped, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    cell.start(swapped);
    const back = await eventually(async () => {
      const s = await statusOf(addressOf(cell, swapped));
      return s?.isVoter === true ? s : undefined;
    }, 'the wiped old disk admitted', 60_000);
    expect(back.diskId).not.toBe(0);
    expect(back.diskId).not.toBe(replacement.diskId);
    await c.close();
  });
});
