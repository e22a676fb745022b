// `pnpm bench`: the cell benchmark (issue 4). Starts its own five-replica cell on loopback (real
// processes, real fsync) in a temporary directory, drives it from this process with the
// workloads of scripts/bench-workloads.ts, prints one JSON line per workload, and stops the cell.
// Not a test: nothing is asserted; figures drift by up to 30 % between runs on these shared
// machines (`pnpm bench:compare` runs etcd beside it and quotes ratios; docs/benchmarks.md).
//
//   sequential-writes   1 client, one SetContents at a time
//   concurrent-writes   64 sessions, one write each in flight (64 in flight)
//   reads               64 sessions, one GetContentsAndStat each in flight
//   lock-uncontended    32 workers, each Acquire/Release on its own lock
//   lock-contended      16 workers queueing on one lock (wait=true); grants/s
//   sessions            N sessions held with KeepAlives for a while; server CPU, expiries
//
// Flags: --seconds S (per workload, default 5), --sessions N (default 2000), --hold S (default 20),
// --only NAME[,NAME].

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PaxlockClient, findMaster } from '../client/src/index.ts';
import type { EventPush } from '../shared/src/index.ts';
import {
  benchOptions,
  runWorkloads,
  type Driver,
  type HeldSessions,
  type KeyClient,
  type Locker,
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
          const granted = new Promise<void>((resolve) => {
            const onEvent = (e: EventPush): void => {
              if (e.event.type === 'lock-granted' && e.event.handle === handle) {
                c.off('event', onEvent);
                resolve();
              }
            };
            c.on('event', onEvent);
          });
          const a = await c.command({ type: 'Acquire', handle, mode: 'exclusive', wait: true });
          if (a.type === 'queued') await granted;
          else if (a.type !== 'acquired') throw new Error(JSON.stringify(a));
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

  async holdSessions(count: number): Promise<HeldSessions> {
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
    };
  }

  serverPids(): number[] {
    return this.#cell.config.replicas.map((r) => this.#cell.pid(r.id));
  }

  async masterPid(): Promise<number> {
    return this.#cell.pid((await findMaster(this.#cell.clientAddresses, 10_000)).status.id);
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
