// The workloads of the cell benchmark (issue 4), written once against a small driver interface
// so that `pnpm bench` (paxlock, scripts/bench.ts) and `pnpm bench:etcd` (scripts/bench-etcd.ts)
// run exactly the same loops and print the same JSON line shape. `pnpm bench:compare` runs both.
//
//   sequential-writes   1 client, one write of 100 bytes at a time
//   concurrent-writes   64 clients, one write each in flight (64 in flight), each its own key
//   reads               the same 64 clients, one linearizable read each in flight (master-only)
//   stale-reads         the same 64 clients, one stale read each in flight (maxStalenessMs 1000):
//                       any replica may answer (etcd: a serializable read at the client's member);
//                       adds the share answered by followers and the largest stated staleness
//   lock-uncontended    32 workers, each acquire+release on its own lock; latency is the cycle
//   lock-contended      16 workers queueing on one lock; grants/s, latency is acquire-to-grant
//   sessions            N sessions held with KeepAlives for a while; server CPU, expiries, setup
//                       time (paxlock multiplexes them over a pool of connections above 2,000 or
//                       with --multiplex: one process cannot hold 20,000 WebSockets here)
//
// Flags: --seconds S (per workload, default 5), --warmup S (each timed workload first runs this
// long unmeasured, default 3; 0 for none), --sessions N (default 2000), --hold S (default 20),
// --only NAME[,NAME], --multiplex, --cpu (each timed workload's line also gets the CPU this benchmark process
// and all server processes used during it, in percent of one core; `pnpm bench:compare` sets it).

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export const WORKLOADS = [
  'sequential-writes',
  'concurrent-writes',
  'reads',
  'stale-reads',
  'lock-uncontended',
  'lock-contended',
  'sessions',
] as const;

export interface BenchOptions {
  readonly seconds: number;
  /** Each timed workload first runs this long, unmeasured (JIT and caches warm, as in service). */
  readonly warmupSeconds: number;
  readonly sessionCount: number;
  readonly holdSeconds: number;
  readonly only: readonly string[];
  readonly cpu: boolean;
  /** Hold sessions over a pool of connections even at or below MULTIPLEX_ABOVE sessions. */
  readonly multiplex: boolean;
}

/** The staleness bound of the stale-reads workload. */
export const STALE_READ_BOUND_MS = 1_000;
/** Above this many sessions the paxlock driver multiplexes them (one process cannot hold 20,000 sockets). */
export const MULTIPLEX_ABOVE = 2_000;

export function flag(
  name: string,
  fallback: string,
  argv: readonly string[] = process.argv,
): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? (argv[i + 1] ?? fallback) : fallback;
}

export function benchOptions(argv: readonly string[] = process.argv): BenchOptions {
  const only = flag('only', '', argv).split(',').filter(Boolean);
  for (const name of only) {
    if (!(WORKLOADS as readonly string[]).includes(name))
      throw new Error(`--only: unknown workload ${name} (one of ${WORKLOADS.join(', ')})`);
  }
  return {
    seconds: Number(flag('seconds', '5', argv)),
    warmupSeconds: Number(flag('warmup', '3', argv)),
    sessionCount: Number(flag('sessions', '2000', argv)),
    holdSeconds: Number(flag('hold', '20', argv)),
    only,
    cpu: argv.includes('--cpu'),
    multiplex: argv.includes('--multiplex'),
  };
}

/** One client of the key workloads: it owns one key (paxlock: a file it has open). */
export interface KeyClient {
  write(payload: Buffer): Promise<void>;
  /** A linearizable read of the client's own key. */
  read(): Promise<void>;
  /** A read of the client's own key that may be up to `maxStalenessMs` old, from any replica. */
  staleRead(maxStalenessMs: number): Promise<StaleAnswer>;
  close(): Promise<void>;
}

/** Who answered a stale read, and how old it said its state might be. */
export interface StaleAnswer {
  /** The replica (member) that answered; null if the driver cannot tell. */
  readonly replica: number | null;
  /** True if a follower answered, false if the master (leader) did. */
  readonly byFollower: boolean;
  /** The answer's stated bound on its staleness in ms (paxlock); null when none is stated (etcd). */
  readonly stalenessMs: number | null;
}

/** One lock worker: its own session (paxlock) or lease (etcd) on a named lock. */
export interface Locker {
  /** Resolves when the lock is held (waiting in the queue if it must). */
  acquire(): Promise<void>;
  release(): Promise<void>;
  close(): Promise<void>;
}

/** Sessions being kept alive by the driver until abandon(). */
export interface HeldSessions {
  /** Sessions the driver was told have expired (their KeepAlive was refused). */
  expiries(): number;
  /** Sessions the cell still lists, asked of the cell. */
  liveAtEnd(): Promise<number | null>;
  /** Stop keeping them alive without closing them, as crashed clients would. */
  abandon(): void;
  /** Extra fields for the sessions line (how they were held, KeepAlive errors...), asked last. */
  details?(): Record<string, unknown>;
}

/** The master's (leader's) log counters, where a driver can read them. */
export interface LogCounters {
  /** Log entries chosen so far (a paxlock slot holds a batch of commands). */
  readonly slots: number;
  /** Durable (fsynced) commits of the master's log so far. */
  readonly fsyncs: number;
  /** Summed over the replicas that answered: log transactions, durable ones, seconds in those. */
  readonly cellTransactions?: number;
  readonly cellFsyncs?: number;
  readonly cellFsyncSeconds?: number;
}

export interface Driver {
  /** One client per key name, each connected and ready. */
  keyClients(keys: readonly string[]): Promise<KeyClient[]>;
  /** One worker per entry; equal names are one lock. `contended`: workers will queue. */
  lockers(locks: readonly string[], contended: boolean): Promise<Locker[]>;
  /** `multiplex`: the caller asked for --multiplex (drivers that always pool may ignore it). */
  holdSessions(count: number, multiplex: boolean): Promise<HeldSessions>;
  /** Every server process, and the master's (leader's). */
  serverPids(): number[];
  masterPid(): Promise<number>;
  /** The master's log counters, if this system exposes them. */
  logCounters?(): Promise<LogCounters | null>;
}

/**
 * Between two readings of the cell's log counters: log transactions per slot per replica, and the
 * mean time of one durable (fsynced) transaction across the replicas, in ms.
 */
function cellLogFields(before: LogCounters, after: LogCounters): Record<string, number> {
  const slots = after.slots - before.slots;
  const fsyncs = (after.cellFsyncs ?? 0) - (before.cellFsyncs ?? 0);
  if (slots <= 0 || fsyncs <= 0 || after.cellTransactions === undefined) return {};
  const transactions = after.cellTransactions - (before.cellTransactions ?? 0);
  const seconds = (after.cellFsyncSeconds ?? 0) - (before.cellFsyncSeconds ?? 0);
  return {
    logTransactionsPerSlotPerReplica: Math.round((transactions / slots / 5) * 100) / 100,
    fsyncTransactionMsMean: Math.round((seconds / fsyncs) * 1e6) / 1000,
  };
}

/** The p-th percentile (0-100) of ascending values: the nearest-rank value, NaN if none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function report(
  name: string,
  ops: number,
  elapsedMs: number,
  latencies: number[],
  extra: Record<string, unknown> = {},
): void {
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

/** A process's user and system CPU time so far, in seconds, from /proc (ticks of 1/100 s). */
function cpuTimes(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** CPU seconds (user+system) a process has used. */
export function cpuSeconds(pid: number): number {
  const { user, system } = cpuTimes(pid);
  return user + system;
}

/** CPU seconds a process has spent in the kernel (system time). */
export function systemCpuSeconds(pid: number): number {
  return cpuTimes(pid).system;
}

/** Runs `worker` in `n` parallel loops for `ms`, timing each call. */
export async function timedLoops(
  n: number,
  ms: number,
  worker: (i: number) => Promise<void>,
): Promise<{ ops: number; elapsedMs: number; latencies: number[] }> {
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

/** Runs the selected workloads against `driver`, one JSON line each. */
export async function runWorkloads(
  driver: Driver,
  options: BenchOptions,
  keyPrefix: string,
): Promise<void> {
  const shouldRun = (name: string): boolean =>
    options.only.length === 0 || options.only.includes(name);
  const ms = options.seconds * 1000;
  const warmMs = options.warmupSeconds * 1000;
  /** Runs the workload's loops unmeasured first, so both systems are measured warm. */
  const warmUp = async (n: number, worker: (i: number) => Promise<void>): Promise<void> => {
    if (warmMs > 0) await timedLoops(n, warmMs, worker);
  };
  // With --cpu: CPU of this process, of the servers and of the master (leader) while a workload
  // ran, as extra fields: per cent of one core, and microseconds per operation; with a driver
  // that reads the master's log counters, also the log entries (slots) and fsyncs per operation.
  let cpuMark = { at: 0, client: 0, server: 0, serverSystem: 0, master: 0, masterPid: 0, log: null as LogCounters | null };
  const serverCpu = (): number =>
    driver.serverPids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const serverSystemCpu = (): number =>
    driver.serverPids().reduce((sum, pid) => sum + systemCpuSeconds(pid), 0);
  const markCpu = async (): Promise<void> => {
    if (!options.cpu) return;
    const masterPid = await driver.masterPid();
    const log = (await driver.logCounters?.()) ?? null;
    const usage = process.cpuUsage();
    cpuMark = {
      at: performance.now(),
      client: (usage.user + usage.system) / 1e6,
      server: serverCpu(),
      serverSystem: serverSystemCpu(),
      master: cpuSeconds(masterPid),
      masterPid,
      log,
    };
  };
  const cpuSince = async (ops: number): Promise<Record<string, number>> => {
    if (!options.cpu) return {};
    const usage = process.cpuUsage();
    const seconds = (performance.now() - cpuMark.at) / 1000;
    const client = (usage.user + usage.system) / 1e6 - cpuMark.client;
    const server = serverCpu() - cpuMark.server;
    const serverSystem = serverSystemCpu() - cpuMark.serverSystem;
    const master = cpuSeconds(cpuMark.masterPid) - cpuMark.master;
    const perOp = (cpu: number): number => (ops === 0 ? 0 : Math.round((cpu * 1e6) / ops));
    const log = cpuMark.log === null ? null : await driver.logCounters?.();
    const logFields: Record<string, number> =
      log == null || cpuMark.log === null || ops === 0
        ? {}
        : {
            slotsPerOp: Math.round(((log.slots - cpuMark.log.slots) / ops) * 1000) / 1000,
            masterFsyncsPerOp: Math.round(((log.fsyncs - cpuMark.log.fsyncs) / ops) * 1000) / 1000,
            ...cellLogFields(cpuMark.log, log),
          };
    return {
      clientCpuPercentOfOneCore: Math.round((client / seconds) * 100),
      serverCpuPercentOfOneCore: Math.round((server / seconds) * 100),
      serverCpuUsPerOp: perOp(server),
      serverSystemCpuUsPerOp: perOp(serverSystem),
      masterCpuUsPerOp: perOp(master),
      clientCpuUsPerOp: perOp(client),
      ...logFields,
    };
  };

  if (shouldRun('sequential-writes')) {
    const [c] = await driver.keyClients([`${keyPrefix}bench-seq`]);
    const payload = Buffer.alloc(100, 7);
    await warmUp(1, () => c!.write(payload));
    await markCpu();
    const r = await timedLoops(1, ms, () => c!.write(payload));
    report('sequential-writes', r.ops, r.elapsedMs, r.latencies, await cpuSince(r.ops));
    await c!.close();
  }

  if (shouldRun('concurrent-writes') || shouldRun('reads') || shouldRun('stale-reads')) {
    const pool = await driver.keyClients(
      Array.from({ length: 64 }, (_, i) => `${keyPrefix}bench-${i}`),
    );
    if (shouldRun('concurrent-writes')) {
      const payload = Buffer.alloc(100, 9);
      await warmUp(64, (i) => pool[i]!.write(payload));
      await markCpu();
      const r = await timedLoops(64, ms, (i) => pool[i]!.write(payload));
      report('concurrent-writes', r.ops, r.elapsedMs, r.latencies, { inFlight: 64, ...(await cpuSince(r.ops)) });
    }
    if (shouldRun('reads')) {
      await warmUp(64, (i) => pool[i]!.read());
      await markCpu();
      const r = await timedLoops(64, ms, (i) => pool[i]!.read());
      report('reads', r.ops, r.elapsedMs, r.latencies, {
        inFlight: 64,
        consistency: 'linearizable',
        ...(await cpuSince(r.ops)),
      });
    }
    if (shouldRun('stale-reads')) {
      // One untimed read each first: a paxlock client opens its connections to the replicas on
      // its first stale read.
      await Promise.all(pool.map((c) => c.staleRead(STALE_READ_BOUND_MS)));
      await warmUp(64, async (i) => {
        await pool[i]!.staleRead(STALE_READ_BOUND_MS);
      });
      const answeredBy: Record<string, number> = {};
      let byFollower = 0;
      let maxStated: number | null = null;
      await markCpu();
      const r = await timedLoops(64, ms, async (i) => {
        const a = await pool[i]!.staleRead(STALE_READ_BOUND_MS);
        const key = a.replica === null ? '?' : String(a.replica);
        answeredBy[key] = (answeredBy[key] ?? 0) + 1;
        if (a.byFollower) byFollower++;
        if (a.stalenessMs !== null) maxStated = Math.max(maxStated ?? 0, a.stalenessMs);
      });
      report('stale-reads', r.ops, r.elapsedMs, r.latencies, {
        inFlight: 64,
        consistency: `stale, maxStalenessMs ${STALE_READ_BOUND_MS}`,
        followerShare: r.ops === 0 ? null : Math.round((byFollower / r.ops) * 1000) / 1000,
        maxStatedStalenessMs: maxStated,
        answeredBy,
        ...(await cpuSince(r.ops)),
      });
    }
    await Promise.all(pool.map((c) => c.close()));
  }

  if (shouldRun('lock-uncontended')) {
    const workers = await driver.lockers(
      Array.from({ length: 32 }, (_, i) => `${keyPrefix}lock-${i}`),
      false,
    );
    const cycle = async (i: number): Promise<void> => {
      await workers[i]!.acquire();
      await workers[i]!.release();
    };
    await warmUp(32, cycle);
    await markCpu();
    const r = await timedLoops(32, ms, cycle);
    report('lock-uncontended', r.ops, r.elapsedMs, r.latencies, {
      workers: 32,
      unit: 'acquire+release cycles',
      ...(await cpuSince(r.ops)),
    });
    await Promise.all(workers.map((c) => c.close()));
  }

  if (shouldRun('lock-contended')) {
    const workers = await driver.lockers(
      Array.from({ length: 16 }, () => `${keyPrefix}the-lock`),
      true,
    );
    const contend = async (forMs: number): Promise<{ grants: number; elapsedMs: number; waitLatencies: number[] }> => {
      let grants = 0;
      const waitLatencies: number[] = [];
      const start = performance.now();
      const end = start + forMs;
      await Promise.all(
        workers.map(async (w) => {
          while (performance.now() < end) {
            const t = performance.now();
            await w.acquire();
            grants++;
            waitLatencies.push(performance.now() - t);
            await w.release();
          }
        }),
      );
      return { grants, elapsedMs: performance.now() - start, waitLatencies };
    };
    if (warmMs > 0) await contend(warmMs);
    await markCpu();
    const { grants, elapsedMs, waitLatencies } = await contend(ms);
    report('lock-contended', grants, elapsedMs, waitLatencies, {
      workers: 16,
      unit: 'grants (latency: acquire to grant)',
      ...(await cpuSince(grants)),
    });
    await Promise.all(workers.map((c) => c.close()));
  }

  if (shouldRun('sessions')) {
    const pids = driver.serverPids();
    const masterPid = await driver.masterPid();
    const setupStart = performance.now();
    const held = await driver.holdSessions(options.sessionCount, options.multiplex);
    const setupSeconds = Math.round((performance.now() - setupStart) / 100) / 10;
    const cpuBefore = pids.map(cpuSeconds);
    const masterBefore = cpuSeconds(masterPid);
    const clientBefore = process.cpuUsage();
    const t = performance.now();
    await new Promise((resolve) => setTimeout(resolve, options.holdSeconds * 1000));
    const elapsed = (performance.now() - t) / 1000;
    const cpuAfter = pids.map(cpuSeconds);
    const serverCpu = cpuAfter.reduce((sum, v, i) => sum + v - cpuBefore[i]!, 0) / elapsed;
    const masterCpu = (cpuSeconds(masterPid) - masterBefore) / elapsed;
    const clientUsage = process.cpuUsage(clientBefore);
    const clientCpu = options.cpu
      ? {
          clientCpuPercentOfOneCore: Math.round(
            ((clientUsage.user + clientUsage.system) / 1e6 / elapsed) * 100,
          ),
        }
      : {};
    const live = await held.liveAtEnd();
    const cores = availableParallelism();
    console.log(
      JSON.stringify({
        workload: 'sessions',
        sessions: options.sessionCount,
        setupSeconds,
        heldSeconds: Math.round(elapsed),
        sessionsLiveAtEnd: live,
        expiries: held.expiries(),
        serverCpuPercentOfOneCore: Math.round(serverCpu * 100),
        serverCpuPercentOfMachine: Math.round((serverCpu * 100) / cores),
        masterCpuPercentOfOneCore: Math.round(masterCpu * 100),
        cores,
        ...clientCpu,
        ...(held.details?.() ?? {}),
      }),
    );
    held.abandon();
  }
}
