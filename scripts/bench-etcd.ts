// `pnpm bench:etcd`: the same workloads as `pnpm bench` (scripts/bench-workloads.ts), against
// etcd 3.4 as five loopback members, the bar issue 4 sets. Starts its own cluster (each member
// its own process, data in a temporary directory, removed after), drives it from this process
// through etcd's gRPC-gateway JSON API over HTTP/1.1 keep-alive connections (no npm dependency),
// prints the same JSON lines as `pnpm bench`, and stops the members by pid (also on SIGINT).
// Not part of CI: it needs the etcd binary (`apt-get install -y etcd-server` on Debian 12, or
// ETCD_BIN=/path/to/etcd). How each workload maps onto etcd: docs/benchmarks.md.
//
// stale-reads maps to serializable Range requests (answered by the client's member, unbounded).
//
// Flags: those of `pnpm bench`, plus --etcd-target all|leader (default all: client i talks to
// member i mod 5, as an etcd client balancing over its endpoints; leader: everything to the leader).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  benchOptions,
  flag,
  runWorkloads,
  type Driver,
  type HeldSessions,
  type KeyClient,
  type Locker,
} from './bench-workloads.ts';

/** paxlock's default session lease (LIMITS.sessionLeaseDefaultMs) and its client's KeepAlive interval (lease/4). */
const LEASE_TTL_SECONDS = 12;
const KEEPALIVE_INTERVAL_MS = 3_000;

export const ETCD_INSTALL_HINT =
  'etcd not found. This benchmark needs an etcd 3.4 binary: on Debian 12 `apt-get install -y etcd-server` ' +
  '(etcd 3.4.23; the package may also start a system etcd on 2379/2380, which this benchmark does not use), ' +
  'or set ETCD_BIN=/path/to/etcd.';

/** The etcd binary's version; without an etcd to run, says how to install one and exits 2. */
export function etcdVersionOrExit(): string {
  const bin = process.env['ETCD_BIN'] ?? 'etcd';
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) {
    console.error(ETCD_INSTALL_HINT);
    process.exit(2);
  }
  return /etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? r.stdout.trim();
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

async function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

interface Member {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly agent: Agent;
  process: ChildProcess | null;
  memberId: string;
}

/** Five etcd members on 127.0.0.1, each its own process. */
class EtcdCluster {
  readonly members: Member[];
  readonly #dir: string;

  constructor(dir: string, basePort: number, count = 5) {
    this.#dir = dir;
    this.members = Array.from({ length: count }, (_, i) => ({
      name: `m${i + 1}`,
      clientPort: basePort + 10 + i + 1,
      peerPort: basePort + 20 + i + 1,
      agent: new Agent({ keepAlive: true, maxSockets: Infinity }),
      process: null,
      memberId: '',
    }));
  }

  start(): void {
    const bin = process.env['ETCD_BIN'] ?? 'etcd';
    const initialCluster = this.members
      .map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`)
      .join(',');
    for (const m of this.members) {
      const log = createWriteStream(join(this.#dir, `${m.name}.log`), { flags: 'a' });
      const child = spawn(
        bin,
        [
          '--name',
          m.name,
          '--data-dir',
          join(this.#dir, m.name),
          '--listen-client-urls',
          `http://127.0.0.1:${m.clientPort}`,
          '--advertise-client-urls',
          `http://127.0.0.1:${m.clientPort}`,
          '--listen-peer-urls',
          `http://127.0.0.1:${m.peerPort}`,
          '--initial-advertise-peer-urls',
          `http://127.0.0.1:${m.peerPort}`,
          '--initial-cluster',
          initialCluster,
          '--initial-cluster-state',
          'new',
          '--initial-cluster-token',
          `paxlock-bench-${process.pid}`,
          '--logger',
          'zap',
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout.pipe(log);
      child.stderr.pipe(log);
      m.process = child;
    }
  }

  pid(m: Member): number {
    const pid = m.process?.pid;
    if (pid === undefined) throw new Error(`${m.name} has no process`);
    return pid;
  }

  /** POSTs a JSON body to a member's gateway and returns the parsed reply (the first line of a stream). */
  async post(m: Member, path: string, body: unknown): Promise<Record<string, unknown>> {
    const data = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: m.clientPort,
          method: path === '/health' ? 'GET' : 'POST',
          path,
          agent: m.agent,
          headers:
            path === '/health'
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 200) {
              reject(new Error(`${m.name} ${path}: HTTP ${res.statusCode}: ${text}`));
              return;
            }
            try {
              resolve(JSON.parse(text.split('\n')[0]!) as Record<string, unknown>);
            } catch (err: unknown) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(path === '/health' ? undefined : data);
    });
  }

  /** Waits until every member reports healthy (which needs a leader and a quorum). */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const m of this.members) {
        if (m.process?.exitCode !== null || m.process.signalCode !== null) {
          const tail = readFileSync(join(this.#dir, `${m.name}.log`), 'utf8')
            .split('\n')
            .slice(-15)
            .join('\n');
          throw new Error(`etcd member ${m.name} exited during start-up:\n${tail}`);
        }
      }
      const healthy = await Promise.all(
        this.members.map((m) =>
          this.post(m, '/health', null).then(
            (r) => r['health'] === 'true',
            () => false,
          ),
        ),
      );
      if (healthy.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error(`etcd cluster not healthy within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    for (const m of this.members) {
      const status = await this.post(m, '/v3/maintenance/status', {});
      m.memberId = String((status['header'] as Record<string, unknown>)['member_id']);
    }
  }

  async leader(): Promise<Member> {
    const status = await this.post(this.members[0]!, '/v3/maintenance/status', {});
    const leader = this.members.find((m) => m.memberId === String(status['leader']));
    if (leader === undefined) throw new Error(`no member is leader ${String(status['leader'])}`);
    return leader;
  }

  /** SIGTERM to each member by pid, SIGKILL (by pid) after 5 s; waits for the exits. */
  async stop(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        const child = m.process;
        if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null)
          return;
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        process.kill(child.pid, 'SIGTERM');
        const timer = setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null && child.pid !== undefined)
            process.kill(child.pid, 'SIGKILL');
        }, 5_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    for (const m of this.members) m.agent.destroy();
  }
}

/** The workloads' driver for etcd: lease for session, v3lock for locks, KV put/range for files. */
class EtcdDriver implements Driver {
  readonly #cluster: EtcdCluster;
  readonly #target: 'all' | 'leader';
  #leader: Member;
  #next = 0;

  constructor(cluster: EtcdCluster, target: 'all' | 'leader', leader: Member) {
    this.#cluster = cluster;
    this.#target = target;
    this.#leader = leader;
  }

  /** The member the next client talks to. */
  #member(): Member {
    if (this.#target === 'leader') return this.#leader;
    const members = this.#cluster.members;
    return members[this.#next++ % members.length]!;
  }

  async #grant(m: Member): Promise<string> {
    const r = await this.#cluster.post(m, '/v3/lease/grant', { TTL: LEASE_TTL_SECONDS });
    if (typeof r['ID'] !== 'string') throw new Error(`lease grant: ${JSON.stringify(r)}`);
    return r['ID'];
  }

  /** One KeepAlive; true if the lease is still alive (TTL > 0). */
  async #keepAlive(m: Member, id: string): Promise<boolean> {
    const r = await this.#cluster.post(m, '/v3/lease/keepalive', { ID: id });
    const result = r['result'] as Record<string, unknown> | undefined;
    return Number(result?.['TTL'] ?? 0) > 0;
  }

  async keyClients(keys: readonly string[]): Promise<KeyClient[]> {
    return Promise.resolve(
      keys.map((name) => {
        const m = this.#member();
        const key = b64(name);
        return {
          write: async (payload: Buffer) => {
            await this.#cluster.post(m, '/v3/kv/put', { key, value: payload.toString('base64') });
          },
          // Linearizable is the default for Range (serializable: false).
          read: async () => {
            await this.#cluster.post(m, '/v3/kv/range', { key });
          },
          // stale-reads: a serializable Range is answered by the member from its own state, with
          // no ReadIndex round and no bound on its age (etcd states none).
          staleRead: async () => {
            await this.#cluster.post(m, '/v3/kv/range', { key, serializable: true });
            return {
              replica: Number(m.name.slice(1)),
              byFollower: m !== this.#leader,
              stalenessMs: null,
            };
          },
          close: () => Promise.resolve(),
        };
      }),
    );
  }

  async lockers(locks: readonly string[], _contended: boolean): Promise<Locker[]> {
    return Promise.all(
      locks.map(async (name) => {
        const m = this.#member();
        // Like clientv3/concurrency: the worker's session is a lease it keeps alive; the lock's
        // key is name/<lease>, and Lock waits (server-side) for the keys created before it.
        const lease = await this.#grant(m);
        const timer = setInterval(() => {
          this.#keepAlive(m, lease).catch(() => undefined);
        }, KEEPALIVE_INTERVAL_MS);
        let key: string | null = null;
        return {
          acquire: async () => {
            const r = await this.#cluster.post(m, '/v3/lock/lock', { name: b64(name), lease });
            if (typeof r['key'] !== 'string') throw new Error(`lock: ${JSON.stringify(r)}`);
            key = r['key'];
          },
          release: async () => {
            await this.#cluster.post(m, '/v3/lock/unlock', { key });
            key = null;
          },
          close: async () => {
            clearInterval(timer);
            await this.#cluster.post(m, '/v3/lease/revoke', { ID: lease });
          },
        };
      }),
    );
  }

  async holdSessions(count: number, _multiplex: boolean): Promise<HeldSessions> {
    const held: { m: Member; id: string }[] = [];
    for (let i = 0; i < count; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, count - i) }, async () => {
          const m = this.#member();
          return { m, id: await this.#grant(m) };
        }),
      );
      held.push(...batch);
    }
    let expired = 0;
    let errors = 0;
    const timers: NodeJS.Timeout[] = [];
    const starts: NodeJS.Timeout[] = [];
    // Independent clients' KeepAlives are spread over the interval, not sent in one burst.
    for (const { m, id } of held) {
      const start = setTimeout(() => {
        const timer = setInterval(() => {
          this.#keepAlive(m, id).then(
            (alive) => {
              if (!alive) {
                expired++;
                clearInterval(timer);
              }
            },
            () => errors++,
          );
        }, KEEPALIVE_INTERVAL_MS);
        timers.push(timer);
      }, Math.random() * KEEPALIVE_INTERVAL_MS);
      starts.push(start);
    }
    const ids = new Set(held.map((h) => h.id));
    return {
      expiries: () => expired,
      liveAtEnd: async () => {
        const r = await this.#cluster.post(this.#leader, '/v3/lease/leases', {});
        const leases = (r['leases'] ?? []) as { ID: string }[];
        if (errors > 0) console.error(`etcd sessions: ${errors} KeepAlive requests failed`);
        return leases.filter((l) => ids.has(l.ID)).length;
      },
      abandon: () => {
        for (const t of starts) clearTimeout(t);
        for (const t of timers) clearInterval(t);
      },
    };
  }

  serverPids(): number[] {
    return this.#cluster.members.map((m) => this.#cluster.pid(m));
  }

  async masterPid(): Promise<number> {
    this.#leader = await this.#cluster.leader();
    return this.#cluster.pid(this.#leader);
  }
}

async function main(): Promise<void> {
  const version = etcdVersionOrExit();
  const options = benchOptions();
  const target = flag('etcd-target', 'all');
  if (target !== 'all' && target !== 'leader') throw new Error('--etcd-target: all or leader');

  let basePort = 28_000 + (process.pid % 40) * 100;
  for (let tries = 0; ; tries++) {
    const ports = Array.from({ length: 5 }, (_, i) => [
      basePort + 11 + i,
      basePort + 21 + i,
    ]).flat();
    if ((await Promise.all(ports.map(isPortFree))).every(Boolean)) break;
    if (tries >= 20) throw new Error('no free ports for etcd');
    basePort = 28_000 + ((basePort - 28_000 + 100) % 4_000);
  }

  const dir = mkdtempSync(join(tmpdir(), 'paxlock-bench-etcd-'));
  const cluster = new EtcdCluster(dir, basePort);
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= cluster.stop().finally(() => {
      rmSync(dir, { recursive: true, force: true });
    }));
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`bench-etcd: ${signal}, stopping the etcd members`);
    void stop().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  cluster.start();
  try {
    await cluster.waitHealthy(60_000);
    const leader = await cluster.leader();
    console.log(
      JSON.stringify({
        cell: `five local etcd ${version} members (default flags, WAL fsync), gRPC-gateway JSON over HTTP/1.1`,
        master: Number(leader.name.slice(1)),
        target,
      }),
    );
    await runWorkloads(new EtcdDriver(cluster, target, leader), options, 'bench/');
  } finally {
    await stop();
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1])
  await main();
