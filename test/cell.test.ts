// Cell tests with real parts: five replica processes on 127.0.0.1, real SQLite files with
// fsync, real sockets. They prove the issue-4 behaviours that need no fault: a master is
// elected at startup, a write sent to a follower is redirected and applied, all five state
// digests agree afterwards, bad input never hurts the replica or other sessions, and a session
// whose client vanishes expires after its lease: its ephemeral files go, its lock is released
// only after the lock-delay, and watchers get the events. Figures are printed, never asserted
// against the clock (these machines are shared and noisy).

import { WebSocket } from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { Connection, PaxlockClient } from '@paxlock/client';
import { encodeFrame, EventMask, type EventPush, type ReplicaStatus } from '@paxlock/shared';
import type { LocalCell } from '../scripts/cell.ts';
import { eventually, statusOf, useCell } from './helpers.ts';

/** The status of all five replicas, waiting for any that is still starting up. */
async function allStatuses(cell: LocalCell): Promise<ReplicaStatus[]> {
  const once = (): Promise<ReplicaStatus[]> =>
    Promise.all(cell.clientAddresses.map(async (a) => (await statusOf(a)) ?? Promise.reject(new Error(`no status from ${a}`))));
  return eventually(once, 'all five replicas answering status');
}

describe('a five-replica cell', () => {
  const theCell = useCell('cell');
  let cell: LocalCell;
  let startedAt: number;
  beforeAll(() => {
    cell = theCell();
    startedAt = Date.now();
  });

  it('elects one master at startup and takes a first write', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'startup', findMasterTimeoutMs: 60_000 });
    const opened = await client.command({ type: 'Open', path: '/ls/local/first', create: 'must', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 });
    expect(opened.type).toBe('opened');
    console.log(`[figure] start to first acknowledged write: ${Date.now() - startedAt} ms (five processes, including their start-up)`);
    const statuses = await allStatuses(cell);
    const masters = statuses.filter((s) => s.role === 'master');
    expect(masters).toHaveLength(1);
    expect(statuses.every((s) => s.masterId === masters[0]!.id || s.role === 'master' || s.masterId === null)).toBe(true);
    await client.close();
  });

  it('redirects a write sent to a follower, applies it, and all five digests agree', async () => {
    // A follower redirects to the master it has heard from; one that has not heard from it yet
    // (just after the election) rightly answers "no master yet", so pick one that has.
    const { master, follower } = await eventually(async () => {
      const statuses = await allStatuses(cell);
      const m = statuses.find((s) => s.role === 'master');
      const f = statuses.find((s) => s.role === 'follower' && m !== undefined && s.masterId === m.id);
      return m !== undefined && f !== undefined ? { master: m, follower: f } : undefined;
    }, 'a follower that knows the master');
    const connection = await Connection.open(cell.config.replicas.find((r) => r.id === follower.id)!.client);
    const reply = await connection.request({ type: 'command', command: { type: 'CreateSession', clientName: 'redirected', leaseMs: 12_000 } }, 5_000);
    connection.close();
    expect(reply).toMatchObject({ type: 'redirect', master: cell.config.replicas.find((r) => r.id === master.id)!.client });

    if (reply.type !== 'redirect' || reply.master === null) throw new Error('expected a redirect to the master');
    const atMaster = await Connection.open(reply.master);
    const created = await atMaster.request({ type: 'command', command: { type: 'CreateSession', clientName: 'redirected', leaseMs: 12_000 } }, 10_000);
    expect(created).toMatchObject({ type: 'result', result: { type: 'session-created' } });
    if (created.type !== 'result' || created.result.type !== 'session-created') throw new Error('no session');
    const session = created.result.session;
    const opened = await atMaster.request(
      { type: 'command', command: { type: 'Open', session, seq: 1, path: '/ls/local/redirected', create: 'must', ephemeral: false, directory: false, contents: Buffer.from('via follower'), eventMask: 0, lockDelayMs: 0 } },
      10_000,
    );
    expect(opened).toMatchObject({ type: 'result', result: { type: 'opened', created: true } });
    await atMaster.request({ type: 'command', command: { type: 'CloseSession', session, seq: 2 } }, 10_000);
    atMaster.close();

    const agreed = await eventually(async () => {
      const all = await allStatuses(cell);
      const applied = new Set(all.map((s) => s.applied));
      const digests = new Set(all.map((s) => s.digest));
      return applied.size === 1 && all[0]!.applied >= 3 ? { applied: all[0]!.applied, digests } : undefined;
    }, 'all five replicas at the same applied slot');
    expect(agreed.digests.size).toBe(1);
  });

  it('serves Prometheus metrics on every replica\'s client port', async () => {
    const scrape = async (address: string): Promise<Map<string, number>> => {
      const response = await fetch(`http://${address}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const samples = new Map<string, number>();
      for (const line of (await response.text()).split('\n')) {
        if (line === '' || line.startsWith('#')) continue;
        const space = line.lastIndexOf(' ');
        samples.set(line.slice(0, space), Number(line.slice(space + 1)));
      }
      return samples;
    };
    // Once every link is up and the writes of the tests before are everywhere.
    const all = await eventually(async () => {
      const scraped = await Promise.all(cell.clientAddresses.map(scrape));
      const linked = scraped.every((m) => [...m].filter(([k, v]) => k.startsWith('paxlock_peer_connected{') && v === 1).length === 4);
      return linked && scraped.every((m) => (m.get('paxlock_applied_index') ?? 0) >= 3) ? scraped : undefined;
    }, 'every replica linked to its four peers and caught up');
    const masters = all.filter((m) => m.get('paxlock_is_master') === 1);
    expect(masters).toHaveLength(1);
    const masterId = all.indexOf(masters[0]!) + 1;
    for (const [i, m] of all.entries()) {
      expect(m.get(`paxlock_replica_info{cell="${cell.config.cell}",id="${String(i + 1)}"}`)).toBe(1);
      expect(m.get('paxlock_master_id')).toBe(masterId);
      expect(m.get('paxlock_commit_index')).toBeGreaterThanOrEqual(m.get('paxlock_applied_index')!);
      expect(m.get('paxlock_log_fsyncs_total')).toBeGreaterThanOrEqual(1);
      expect(m.get('paxlock_log_fsync_seconds_total')).toBeGreaterThan(0);
      expect(m.get('paxlock_turns_total')).toBeGreaterThan(0);
      expect(m.get('paxlock_master_changes_total')).toBeGreaterThanOrEqual(1);
      expect(m.get('paxlock_is_healthy')).toBe(1);
    }
    // The master stood for election at least once to become master.
    expect(masters[0]!.get('paxlock_candidacies_total')).toBeGreaterThanOrEqual(1);
    expect(masters[0]!.get('paxlock_lease_remaining_seconds')).toBeGreaterThan(0);
    expect(masters[0]!.get('paxlock_client_frames_total')).toBeGreaterThan(0);
    expect((await fetch(`http://${cell.clientAddresses[0]!}/metrics`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`http://${cell.clientAddresses[0]!}/`)).status).toBe(426);
  });

  it('answers GET /health on every replica: 200 with the master it knows', async () => {
    const health = await eventually(async () => {
      const all = await Promise.all(
        cell.clientAddresses.map(async (address) => {
          const response = await fetch(`http://${address}/health`);
          expect(response.headers.get('content-type')).toBe('application/json');
          return { status: response.status, body: (await response.json()) as { health: boolean; role: string; masterId: number | null; id: number } };
        }),
      );
      return all.every((h) => h.status === 200) ? all : undefined;
    }, 'all five replicas healthy');
    const masterIds = new Set(health.map((h) => h.body.masterId));
    expect(masterIds.size).toBe(1);
    const master = health.filter((h) => h.body.role === 'master');
    expect(master.map((h) => h.body.id)).toEqual([...masterIds]);
    expect(health.every((h) => h.body.health)).toBe(true);
    expect((await fetch(`http://${cell.clientAddresses[0]!}/health`, { method: 'POST' })).status).toBe(405);
  });

  it('answers bad input with an error or a closed connection, and keeps serving others', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'bystander' });
    const master = client.masterAddress!;
    const send = async (payload: Buffer | string, isBinary = true): Promise<{ closed: boolean; frames: number }> => {
      const socket = new WebSocket(`ws://${master}/`);
      await new Promise((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', reject);
      });
      let frames = 0;
      socket.on('message', () => frames++);
      const closed = new Promise<boolean>((resolve) => {
        socket.once('close', () => {
          resolve(true);
        });
        // An answered frame with a readable id keeps the connection; give it a round trip.
        socket.once('message', () => {
          setTimeout(() => {
            resolve(false);
          }, 200);
        });
      });
      socket.send(payload, { binary: isBinary });
      const wasClosed = await closed;
      socket.terminate();
      return { closed: wasClosed, frames };
    };
    const random = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 255));
    expect((await send(random)).closed).toBe(true);
    expect((await send('text frame', false)).closed).toBe(true);
    expect((await send(Buffer.from([0x92, 0x01]))).closed).toBe(true); // truncated msgpack
    expect((await send(Buffer.alloc(2 * 1024 * 1024, 1))).closed).toBe(true); // over the frame limit
    const wrongTypes = await send(Buffer.from(encodeFrame({ type: 'command', id: 5, command: { type: 'Open', session: 'x' } })));
    expect(wrongTypes).toEqual({ closed: false, frames: 1 });
    const unknownSession = await send(Buffer.from(encodeFrame({ type: 'command', id: 6, command: { type: 'Close', session: 999_999, seq: 1, handle: 1 } })));
    expect(unknownSession).toEqual({ closed: false, frames: 1 });

    // The bystander's session is untouched.
    const opened = await client.command({ type: 'Open', path: '/ls/local/still-fine', create: 'may', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 });
    expect(opened.type).toBe('opened');
    if (opened.type !== 'opened') throw new Error('open failed');
    const unknownHandle = await client.command({ type: 'Close', handle: 424_242 });
    expect(unknownHandle).toMatchObject({ type: 'error', code: 'BAD_HANDLE' });
    await client.close();
  });

  it('keeps its data across a restart of the whole cell', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'before-restart' });
    const opened = await client.command({ type: 'Open', path: '/ls/local/durable', create: 'may', ephemeral: false, directory: false, contents: Buffer.from('kept'), eventMask: 0, lockDelayMs: 0 });
    expect(opened.type).toBe('opened');
    await client.close();
    await cell.stopAll();
    cell.startAll();
    const after = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'after-restart', findMasterTimeoutMs: 60_000 });
    const reopened = await after.command({ type: 'Open', path: '/ls/local/durable', create: 'never', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 });
    if (reopened.type !== 'opened') throw new Error(`open failed: ${JSON.stringify(reopened)}`);
    const read = await after.query({ type: 'GetContentsAndStat', session: after.session, handle: reopened.handle });
    if (read.type !== 'contents-and-stat') throw new Error('read failed');
    expect(Buffer.from(read.contents).toString()).toBe('kept');
    await after.close();
  });

  it('expires a vanished client after its lease: ephemeral file gone, lock free only after lock-delay, watchers told', async () => {
    const watcher = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'watcher' });
    const dirHandle = await watcher.command({ type: 'Open', path: '/ls/local/svc', create: 'may', ephemeral: false, directory: true, eventMask: EventMask.childRemoved | EventMask.childAdded, lockDelayMs: 0 });
    expect(dirHandle.type).toBe('opened');
    const events: EventPush[] = [];
    watcher.on('event', (e) => events.push(e));

    const leaseMs = 1_500;
    const lockDelayMs = 4_000;
    const doomed = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'doomed', leaseMs });
    const eph = await doomed.command({ type: 'Open', path: '/ls/local/svc/member', create: 'must', ephemeral: true, directory: false, eventMask: 0, lockDelayMs: 0 });
    expect(eph.type).toBe('opened');
    const lockNode = await doomed.command({ type: 'Open', path: '/ls/local/svc-lock', create: 'may', ephemeral: false, directory: false, eventMask: 0, lockDelayMs });
    if (lockNode.type !== 'opened') throw new Error('open failed');
    const acquired = await doomed.command({ type: 'Acquire', handle: lockNode.handle, mode: 'exclusive', wait: false });
    expect(acquired.type).toBe('acquired');
    await eventually(() => (events.some((e) => e.event.type === 'child-added') ? true : undefined), 'child-added event');

    const vanishedAt = Date.now();
    doomed.abandon();

    const contender = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'contender' });
    const grantedEvents: EventPush[] = [];
    contender.on('event', (e) => grantedEvents.push(e));
    const contenderNode = await contender.command({ type: 'Open', path: '/ls/local/svc-lock', create: 'never', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 });
    if (contenderNode.type !== 'opened') throw new Error('open failed');

    const removed = await eventually(
      () => events.find((e) => e.event.type === 'child-removed' && e.event.child === 'member'),
      'child-removed after the lease',
    );
    const expiredAfterMs = Date.now() - vanishedAt;
    expect(removed.event).toMatchObject({ type: 'child-removed', child: 'member' });
    // The lease runs from the client's last KeepAlive, which is at most a quarter lease before
    // it vanished; expiry can never come sooner than that.
    const leaseFloorMs = leaseMs - leaseMs / 4;
    expect(expiredAfterMs).toBeGreaterThanOrEqual(leaseFloorMs);

    // Right after expiry the lock is in its lock-delay: a try fails, a wait is granted later.
    const early = await contender.command({ type: 'Acquire', handle: contenderNode.handle, mode: 'exclusive', wait: false });
    expect(early).toMatchObject({ type: 'error', code: 'LOCK_DELAYED' });
    const queued = await contender.command({ type: 'Acquire', handle: contenderNode.handle, mode: 'exclusive', wait: true });
    expect(queued.type).toBe('queued');
    const granted = await eventually(
      () => grantedEvents.find((e) => e.event.type === 'lock-granted'),
      'lock granted after the lock-delay',
    );
    const grantedAfterMs = Date.now() - vanishedAt;
    expect(granted.event.type).toBe('lock-granted');
    expect(grantedAfterMs).toBeGreaterThanOrEqual(leaseFloorMs + lockDelayMs);
    console.log(`[figure] vanished client: expired after ${expiredAfterMs} ms (lease ${leaseMs}), lock granted to the next waiter after ${grantedAfterMs} ms (lock-delay ${lockDelayMs})`);
    await contender.close();
    await watcher.close();
  });
});

describe('a replica whose state diverges', () => {
  const theCell = useCell('diverge', ['--digest-every-ms', '300']);
  let cell: LocalCell;
  beforeAll(() => {
    cell = theCell();
  });

  it('is caught by the digest comparison through the log, and stops serving loudly', async () => {
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'diverge', findMasterTimeoutMs: 60_000 });
    const opened = await client.command({ type: 'Open', path: '/ls/local/truth', create: 'must', ephemeral: false, directory: false, contents: Buffer.from('the truth'), eventMask: 0, lockDelayMs: 0 });
    expect(opened.type).toBe('opened');
    const statuses = await allStatuses(cell);
    const victim = statuses.find((s) => s.role !== 'master')!.id;
    // Wait until the victim has applied the file, then stop it and corrupt its copy by hand.
    await eventually(async () => {
      const all = await allStatuses(cell);
      return new Set(all.map((s) => s.applied)).size === 1 ? true : undefined;
    }, 'all replicas caught up');
    await cell.signal(victim, 'SIGTERM');
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(cell.dataPath(victim, 'state.db'));
    db.prepare("UPDATE nodes SET contents = ? WHERE path = '/ls/local/truth'").run(Buffer.from('a lie'));
    db.close();

    const child = cell.start(victim).process;
    const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    expect(exitCode).toBe(3);
    const { readFileSync } = await import('node:fs');
    // The replica's log reaches its file through a pipe in this process: wait for the line.
    await eventually(() => (/STATE DIGEST DIFFERS FROM THE MASTER/.test(readFileSync(cell.logPath(victim), 'utf8')) ? true : undefined), 'the divergence in the replica log');
    // The rest of the cell goes on.
    const written = await client.command({ type: 'SetContents', handle: (opened as { handle: number }).handle, contents: Buffer.from('still serving') });
    expect(written.type).toBe('contents-set');
    await client.close();
  });
});
