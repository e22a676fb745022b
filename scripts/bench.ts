// `pnpm bench`: the cell benchmark (issue 4). Starts its own five-replica cell on loopback (real
// processes, real fsync) in a temporary directory, drives it from this process with the
// workloads of scripts/bench-workloads.ts, prints one JSON line per workload, and stops the cell.
// Not a test: nothing is asserted; figures drift by up to 30 % between runs on these shared
// machines (`pnpm bench:compare` runs etcd beside it and quotes ratios; docs/benchmarks.md).
//
//   sequential-writes   1 client, one SetContents at a time
//   concurrent-writes   64 sessions, one write each in flight (64 in flight)
//   reads               64 sessions, one GetContentsAndStat each in flight (the master answers)
//   stale-reads         the same 64, one client.read(path, {consistency:'stale', maxStalenessMs:
//                       1000}) each in flight, spread by the client over the five replicas
//   lock-uncontended    32 workers, each Acquire/Release on its own lock
//   lock-contended      16 workers queueing on one lock (wait=true); grants/s
//   sessions            N sessions held with KeepAlives for a while; server CPU, expiries. Up to
//                       2,000 (without --multiplex) each is a PaxlockClient on its own WebSocket;
//                       above, raw CreateSession/KeepAlive frames over a pool of 100 connections
//                       to the master (the wire protocol names the session in each KeepAlive).
//
// Flags: --seconds S (per workload, default 5), --sessions N (default 2000), --hold S (default 20),
// --only NAME[,NAME], --multiplex.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Connection, PaxlockClient, findMaster } from '../client/src/index.ts';
import type { EventPush } from '../shared/src/index.ts';
import {
  MULTIPLEX_ABOVE,
  benchOptions,
  runWorkloads,
  type Driver,
  type HeldSessions,
  type KeyClient,
  type Locker,
  type LogCounters,
} from './bench-workloads.ts';
import { LocalCell } from './cell.ts';

async function openFile(client: PaxlockClient, path: string): Promise<number> {
  const r = await client.command({
    type: 'Open',
    path,
    create: 'may',
    ephemeral: false,
    directory: false,
    eventMask: 0,
    lockDelayMs: 0,
  });
  if (r.type !== 'opened') throw new Error(`open ${path}: ${JSON.stringify(r)}`);
  return r.handle;
}

/** How long a queued contended worker waits for its grant before the benchmark fails. */
const GRANT_WAIT_MS = 30_000;

/** The workloads' driver for a paxlock cell: one session (one WebSocket) per client or worker. */
class PaxlockDriver implements Driver {
  readonly #cell: LocalCell;

  constructor(cell: LocalCell) {
    this.#cell = cell;
  }

  #connect(name: string): Promise<PaxlockClient> {
    return PaxlockClient.connect({
      cell: this.#cell.clientAddresses,
      name,
      findMasterTimeoutMs: 60_000,
    });
  }

  async keyClients(keys: readonly string[]): Promise<KeyClient[]> {
    return Promise.all(
      keys.map(async (path) => {
        const c = await this.#connect(path.slice(path.lastIndexOf('/') + 1));
        const handle = await openFile(c, path);
        return {
          write: async (contents: Buffer) => {
            await c.command({ type: 'SetContents', handle, contents });
          },
          read: async () => {
            await c.query({ type: 'GetContentsAndStat', session: c.session, handle });
          },
          staleRead: async (maxStalenessMs: number) => {
            const r = await c.read(path, { consistency: 'stale', maxStalenessMs });
            // The master answers a stale read with staleness 0 and its own id; a follower with
            // its bound (> 0 whenever it answers, as the bound counts from its probe's send).
            const master = await this.#masterId();
            return {
              replica: r.replica,
              byFollower: r.replica !== null && r.replica !== master,
              stalenessMs: r.stalenessMs,
            };
          },
          close: () => c.close(),
        };
      }),
    );
  }

  async lockers(locks: readonly string[], contended: boolean): Promise<Locker[]> {
    return Promise.all(
      locks.map(async (path, i) => {
        const c = await this.#connect(`${contended ? 'contend' : 'lock'}${i}`);
        const handle = await openFile(c, path);
        const acquire = async (): Promise<void> => {
          if (!contended) {
            const a = await c.command({ type: 'Acquire', handle, mode: 'exclusive', wait: false });
            if (a.type !== 'acquired') throw new Error(JSON.stringify(a));
            return;
          }
          // A grant that never comes (a missed event) ends the benchmark with an error, not a
          // silent stall with every other worker queued behind this one.
          let timer: NodeJS.Timeout | undefined;
          let onEvent: ((e: EventPush) => void) | undefined;
          const granted = new Promise<void>((resolve, reject) => {
            onEvent = (e: EventPush): void => {
              if (e.event.type === 'lock-granted' && e.event.handle === handle) resolve();
            };
            c.on('event', onEvent);
            timer = setTimeout(() => {
              reject(
                new Error(
                  `worker ${String(i)}: queued, and no lock-granted event within ${String(GRANT_WAIT_MS)} ms`,
                ),
              );
            }, GRANT_WAIT_MS);
          });
          try {
            const a = await c.command({ type: 'Acquire', handle, mode: 'exclusive', wait: true });
            if (a.type === 'queued') await granted;
            else if (a.type !== 'acquired') throw new Error(JSON.stringify(a));
          } finally {
            clearTimeout(timer);
            if (onEvent !== undefined) c.off('event', onEvent);
            granted.catch(() => undefined); // settled or abandoned: never an unhandled rejection
          }
        };
        return {
          acquire,
          release: async () => {
            await c.command({ type: 'Release', handle });
          },
          close: () => c.close(),
        };
      }),
    );
  }

  #master: Promise<number> | null = null;

  /** The master's replica id, asked once (the benchmark does not fail the master over). */
  #masterId(): Promise<number> {
    return (this.#master ??= findMaster(this.#cell.clientAddresses, 10_000).then(
      (m) => m.status.id,
    ));
  }

  async holdSessions(count: number, multiplex: boolean): Promise<HeldSessions> {
    if (multiplex || count > MULTIPLEX_ABOVE) return this.#holdMultiplexed(count);
    const clients: PaxlockClient[] = [];
    let expired = 0;
    for (let i = 0; i < count; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, count - i) }, (_, j) => this.#connect(`held${i + j}`)),
      );
      for (const c of batch) c.on('expired', () => expired++);
      clients.push(...batch);
    }
    return {
      expiries: () => expired,
      liveAtEnd: async () => {
        const listed = await clients[0]!.query({ type: 'ListSessions' });
        return listed.type === 'sessions' ? listed.sessions.length : null;
      },
      abandon: () => {
        for (const c of clients) c.abandon();
      },
      details: () => ({ mode: 'one PaxlockClient (WebSocket) per session', connections: count }),
    };
  }

  /**
   * Holds `count` sessions with raw frames over POOL_SIZE connections to the master: each
   * session is created with CreateSession (lease 12 s, a nonce so a retry after a timeout is the
   * same creation), then kept alive every 3 s (the client's lease/4) on its pool connection, the
   * sessions spread evenly over the 3 s in TICK_MS buckets. A KeepAlive answered SESSION_EXPIRED
   * counts as an expiry; at the end ListSessions says which are missing.
   */
  async #holdMultiplexed(count: number): Promise<HeldSessions> {
    const POOL_SIZE = Math.min(100, count);
    const LEASE_MS = 12_000;
    const INTERVAL_MS = 3_000;
    const TICK_MS = 50;
    const BUCKETS = INTERVAL_MS / TICK_MS;
    const CREATES_IN_FLIGHT = 400;
    const REQUEST_TIMEOUT_MS = 20_000;

    const { address } = await findMaster(this.#cell.clientAddresses, 30_000);
    const pool = await Promise.all(
      Array.from({ length: POOL_SIZE }, () => Connection.open(address, 10_000)),
    );
    // Session ids by index (0: not created yet), expired ones, last acknowledged KeepAlive.
    const ids = new Float64Array(count);
    const dead = new Uint8Array(count);
    const lastAck = new Float64Array(count);
    let expired = 0;
    let keepAlives = 0;
    let keepAliveErrors = 0;
    let keepAliveTimeouts = 0;
    let maxAckGapMs = 0;
    let lateTicks = 0;
    const ackLatencies: number[] = [];
    let firstError: string | null = null;
    const noteError = (what: string): void => {
      firstError ??= what;
    };

    const keepAlive = (i: number): void => {
      const session = ids[i]!;
      if (session === 0 || dead[i] === 1) return;
      const sent = performance.now();
      keepAlives++;
      pool[i % POOL_SIZE]!.request(
        { type: 'keep-alive', session, eventSeqSeen: 0 },
        REQUEST_TIMEOUT_MS,
      ).then(
        (reply) => {
          const now = performance.now();
          if (reply.type === 'keep-alive-ack') {
            maxAckGapMs = Math.max(maxAckGapMs, now - lastAck[i]!);
            lastAck[i] = now;
            if (ackLatencies.length < 200_000) ackLatencies.push(now - sent);
          } else if (reply.type === 'error' && reply.code === 'SESSION_EXPIRED') {
            if (dead[i] === 0) expired++;
            dead[i] = 1;
          } else {
            keepAliveErrors++;
            noteError(JSON.stringify(reply).slice(0, 200));
          }
        },
        (err: unknown) => {
          keepAliveTimeouts++;
          noteError(String(err));
        },
      );
    };

    // The KeepAlive clock: bucket b (sessions with index ≡ b mod BUCKETS) every TICK_MS; a late
    // timer catches up on the buckets it missed, so the rate stays even under load.
    const clockStart = performance.now();
    let ticksDone = 0;
    const clock = setInterval(() => {
      const due = Math.floor((performance.now() - clockStart) / TICK_MS);
      if (due - ticksDone > 1) lateTicks += due - ticksDone - 1;
      for (; ticksDone <= due; ticksDone++) {
        for (let i = ticksDone % BUCKETS; i < count; i += BUCKETS) keepAlive(i);
      }
    }, TICK_MS);

    // Create the sessions, CREATES_IN_FLIGHT at a time; each joins the KeepAlive clock at once.
    const nonceBase = randomBytes(6).toString('hex');
    let next = 0;
    let createRetries = 0;
    const creator = async (): Promise<void> => {
      for (let i = next++; i < count; i = next++) {
        const deadline = performance.now() + 60_000;
        for (;;) {
          const reply = await pool[i % POOL_SIZE]!.request(
            {
              type: 'command',
              command: {
                type: 'CreateSession',
                clientName: `mux${i}`,
                leaseMs: LEASE_MS,
                nonce: `${nonceBase}-${i}`,
              },
            },
            REQUEST_TIMEOUT_MS,
          ).catch((err: unknown) => {
            if (performance.now() > deadline) throw err;
            return null;
          });
          if (reply?.type === 'result' && reply.result.type === 'session-created') {
            ids[i] = reply.result.session;
            lastAck[i] = performance.now();
            break;
          }
          // A timeout, or the master's core refusing a proposal for a moment (a redirect with
          // no master: its lease lapsed under the machine's load): retry with the same nonce.
          const transient =
            reply === null ||
            (reply.type === 'redirect' && reply.master === null) ||
            (reply.type === 'error' && (reply.code === 'NO_QUORUM' || reply.code === 'TIMEOUT'));
          if (!transient || performance.now() > deadline)
            throw new Error(`CreateSession ${i}: ${JSON.stringify(reply).slice(0, 300)}`);
          createRetries++;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: CREATES_IN_FLIGHT }, creator));
    } catch (err: unknown) {
      clearInterval(clock);
      for (const c of pool) c.close();
      throw err;
    }

    let missingAtEnd: number | null = null;
    let listError: string | null = null;
    const sorted = (): number[] => [...ackLatencies].sort((a, b) => a - b);
    return {
      expiries: () => expired,
      liveAtEnd: async () => {
        const reply = await pool[0]!
          .request({ type: 'query', query: { type: 'ListSessions' } }, 30_000)
          .catch((err: unknown) => {
            listError = String(err);
            return null;
          });
        if (reply?.type !== 'query-result' || reply.result.type !== 'sessions') {
          listError ??= JSON.stringify(reply).slice(0, 300);
          return null;
        }
        const listed = new Set(reply.result.sessions.map((s) => s.session));
        missingAtEnd = 0;
        for (const id of ids) if (id !== 0 && !listed.has(id)) missingAtEnd++;
        return listed.size;
      },
      abandon: () => {
        clearInterval(clock);
        for (const c of pool) c.close();
      },
      details: () => {
        const s = sorted();
        const at = (p: number): number =>
          Math.round((s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN) * 10) /
          10;
        return {
          mode: `multiplexed: raw CreateSession/KeepAlive frames over ${POOL_SIZE} connections to the master`,
          connections: POOL_SIZE,
          keepAliveIntervalMs: INTERVAL_MS,
          keepAlivesSent: keepAlives,
          keepAliveMsP50: at(50),
          keepAliveMsP99: at(99),
          maxAckGapMs: Math.round(maxAckGapMs),
          keepAliveErrors,
          keepAliveTimeouts,
          createRetries,
          lateClockTicks: lateTicks,
          missingAtEnd,
          ...(firstError === null ? {} : { firstError }),
          ...(listError === null ? {} : { listError }),
        };
      },
    };
  }

  serverPids(): number[] {
    return this.#cell.config.replicas.map((r) => this.#cell.pid(r.id));
  }

  async masterPid(): Promise<number> {
    return this.#cell.pid((await findMaster(this.#cell.clientAddresses, 10_000)).status.id);
  }

  /**
   * From the master's /metrics: its commit index (slots chosen) and its paxos.db fsyncs; from
   * every replica's: paxos.db transactions, durable ones, and the time spent in those.
   */
  async logCounters(): Promise<LogCounters | null> {
    const master = await findMaster(this.#cell.clientAddresses, 10_000);
    const read = async (address: string): Promise<(name: string) => number | null> => {
      const text = await (await fetch(`http://${address}/metrics`)).text();
      return (name) => {
        const line = text.split('\n').find((l) => l.startsWith(`${name} `));
        return line === undefined ? null : Number(line.slice(name.length + 1));
      };
    };
    const value = await read(master.address);
    const slots = value('paxlock_commit_index');
    const fsyncs = value('paxlock_log_fsyncs_total');
    if (slots === null || fsyncs === null) return null;
    let cellTransactions = 0;
    let cellFsyncs = 0;
    let cellFsyncSeconds = 0;
    for (const address of this.#cell.clientAddresses) {
      const of = await read(address).catch(() => null);
      if (of === null) continue;
      cellTransactions += of('paxlock_log_commits_total') ?? 0;
      cellFsyncs += of('paxlock_log_fsyncs_total') ?? 0;
      cellFsyncSeconds += of('paxlock_log_fsync_seconds_total') ?? 0;
    }
    return { slots, fsyncs, cellTransactions, cellFsyncs, cellFsyncSeconds };
  }
}

async function main(): Promise<void> {
  const options = benchOptions();
  const dir = mkdtempSync(join(tmpdir(), 'paxlock-bench-'));
  const cell = new LocalCell({
    dir,
    basePort: 23_000 + (process.pid % 50) * 100,
    logLevel: 'warn',
  });
  cell.startAll();
  try {
    const { status } = await findMaster(cell.clientAddresses, 60_000);
    console.log(
      JSON.stringify({
        cell: 'five local replica processes, paxos.db synchronous=FULL',
        master: status.id,
      }),
    );
    await runWorkloads(new PaxlockDriver(cell), options, '/ls/local/');
  } finally {
    await cell.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
