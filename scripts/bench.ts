// `pnpm bench`: the cell benchmark (issue 4). Starts its own five-replica cell on loopback (real
// processes, real fsync) in a temporary directory, drives it from this process with the
// workloads below, prints one JSON line per workload, and stops the cell. Not a test: nothing
// is asserted; figures drift by up to 30 % between runs on these shared machines.
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

import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { PaxlockClient, findMaster } from '../client/src/index.ts';
import type { EventPush } from '../shared/src/index.ts';
import { LocalCell } from './cell.ts';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const seconds = Number(flag('seconds', '5'));
const sessionCount = Number(flag('sessions', '2000'));
const holdSeconds = Number(flag('hold', '20'));
const only = flag('only', '').split(',').filter(Boolean);
const shouldRun = (name: string): boolean => only.length === 0 || only.includes(name);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function report(name: string, ops: number, elapsedMs: number, latencies: number[], extra: Record<string, unknown> = {}): void {
  const sorted = [...latencies].sort((a, b) => a - b);
  const round = (x: number): number => Math.round(x * 100) / 100;
  console.log(
    JSON.stringify({
      workload: name,
      ops,
      seconds: round(elapsedMs / 1000),
      opsPerSecond: Math.round((ops / elapsedMs) * 1000),
      latencyMsP50: round(percentile(sorted, 50)),
      latencyMsP99: round(percentile(sorted, 99)),
      ...extra,
    }),
  );
}

/** CPU seconds (user+system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100;
}

async function openFile(client: PaxlockClient, path: string): Promise<number> {
  const r = await client.command({ type: 'Open', path, create: 'may', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 });
  if (r.type !== 'opened') throw new Error(`open ${path}: ${JSON.stringify(r)}`);
  return r.handle;
}

/** Runs `worker` in `n` parallel loops for `ms`, timing each call. */
async function timedLoops(n: number, ms: number, worker: (i: number) => Promise<void>): Promise<{ ops: number; elapsedMs: number; latencies: number[] }> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      while (performance.now() < end) {
        const t = performance.now();
        await worker(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { ops: latencies.length, elapsedMs: performance.now() - start, latencies };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'paxlock-bench-'));
  const cell = new LocalCell({ dir, basePort: 23_000 + (process.pid % 50) * 100, logLevel: 'warn' });
  cell.startAll();
  try {
    const { status } = await findMaster(cell.clientAddresses, 60_000);
    console.log(JSON.stringify({ cell: 'five local replica processes, paxos.db synchronous=FULL', master: status.id }));
    const connect = (name: string, leaseMs?: number) =>
      PaxlockClient.connect({ cell: cell.clientAddresses, name, findMasterTimeoutMs: 60_000, ...(leaseMs === undefined ? {} : { leaseMs }) });
    const ms = seconds * 1000;

    if (shouldRun('sequential-writes')) {
      const c = await connect('seq');
      const h = await openFile(c, '/ls/local/bench-seq');
      const payload = Buffer.alloc(100, 7);
      const r = await timedLoops(1, ms, async () => {
        await c.command({ type: 'SetContents', handle: h, contents: payload });
      });
      report('sequential-writes', r.ops, r.elapsedMs, r.latencies);
      await c.close();
    }

    const pool = shouldRun('concurrent-writes') || shouldRun('reads') ? await Promise.all(Array.from({ length: 64 }, (_, i) => connect(`pool${i}`))) : [];
    const handles = await Promise.all(pool.map((c, i) => openFile(c, `/ls/local/bench-${i}`)));
    if (shouldRun('concurrent-writes')) {
      const payload = Buffer.alloc(100, 9);
      const r = await timedLoops(64, ms, async (i) => {
        await pool[i]!.command({ type: 'SetContents', handle: handles[i]!, contents: payload });
      });
      report('concurrent-writes', r.ops, r.elapsedMs, r.latencies, { inFlight: 64 });
    }
    if (shouldRun('reads')) {
      const r = await timedLoops(64, ms, async (i) => {
        await pool[i]!.query({ type: 'GetContentsAndStat', session: pool[i]!.session, handle: handles[i]! });
      });
      report('reads', r.ops, r.elapsedMs, r.latencies, { inFlight: 64 });
    }
    await Promise.all(pool.map((c) => c.close()));

    if (shouldRun('lock-uncontended')) {
      const workers = await Promise.all(Array.from({ length: 32 }, (_, i) => connect(`lock${i}`)));
      const locks = await Promise.all(workers.map((c, i) => openFile(c, `/ls/local/lock-${i}`)));
      const r = await timedLoops(32, ms, async (i) => {
        const a = await workers[i]!.command({ type: 'Acquire', handle: locks[i]!, mode: 'exclusive', wait: false });
        if (a.type !== 'acquired') throw new Error(JSON.stringify(a));
        await workers[i]!.command({ type: 'Release', handle: locks[i]! });
      });
      report('lock-uncontended', r.ops, r.elapsedMs, r.latencies, { workers: 32, unit: 'acquire+release cycles' });
      await Promise.all(workers.map((c) => c.close()));
    }

    if (shouldRun('lock-contended')) {
      const workers = await Promise.all(Array.from({ length: 16 }, (_, i) => connect(`contend${i}`)));
      const handlesC = await Promise.all(workers.map((c) => openFile(c, '/ls/local/the-lock')));
      let grants = 0;
      const waitLatencies: number[] = [];
      const start = performance.now();
      const end = start + ms;
      await Promise.all(
        workers.map(async (c, i) => {
          const h = handlesC[i]!;
          while (performance.now() < end) {
            const t = performance.now();
            const granted = new Promise<void>((resolve) => {
              const onEvent = (e: EventPush): void => {
                if (e.event.type === 'lock-granted' && e.event.handle === h) {
                  c.off('event', onEvent);
                  resolve();
                }
              };
              c.on('event', onEvent);
            });
            const a = await c.command({ type: 'Acquire', handle: h, mode: 'exclusive', wait: true });
            if (a.type === 'queued') await granted;
            else if (a.type !== 'acquired') throw new Error(JSON.stringify(a));
            grants++;
            waitLatencies.push(performance.now() - t);
            await c.command({ type: 'Release', handle: h });
          }
        }),
      );
      report('lock-contended', grants, performance.now() - start, waitLatencies, { workers: 16, unit: 'grants (latency: acquire to grant)' });
      await Promise.all(workers.map((c) => c.close()));
    }

    if (shouldRun('sessions')) {
      const master = (await findMaster(cell.clientAddresses, 10_000)).status.id;
      const pids = cell.config.replicas.map((r) => cell.pid(r.id));
      const clients: PaxlockClient[] = [];
      let expired = 0;
      for (let i = 0; i < sessionCount; i += 100) {
        const batch = await Promise.all(Array.from({ length: Math.min(100, sessionCount - i) }, (_, j) => connect(`held${i + j}`)));
        for (const c of batch) c.on('expired', () => expired++);
        clients.push(...batch);
      }
      const cpuBefore = pids.map(cpuSeconds);
      const masterBefore = cpuSeconds(cell.pid(master));
      const t = performance.now();
      await new Promise((resolve) => setTimeout(resolve, holdSeconds * 1000));
      const elapsed = (performance.now() - t) / 1000;
      const cpuAfter = pids.map(cpuSeconds);
      const serverCpu = cpuAfter.reduce((sum, v, i) => sum + v - cpuBefore[i]!, 0) / elapsed;
      const masterCpu = (cpuSeconds(cell.pid(master)) - masterBefore) / elapsed;
      const listed = await clients[0]!.query({ type: 'ListSessions' });
      console.log(
        JSON.stringify({
          workload: 'sessions',
          sessions: sessionCount,
          heldSeconds: Math.round(elapsed),
          sessionsLiveAtEnd: listed.type === 'sessions' ? listed.sessions.length : null,
          expiries: expired,
          serverCpuPercentOfOneCore: Math.round(serverCpu * 100),
          serverCpuPercentOfMachine: Math.round((serverCpu * 100) / 2),
          masterCpuPercentOfOneCore: Math.round(masterCpu * 100),
        }),
      );
      for (const c of clients) c.abandon();
    }
  } finally {
    await cell.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
