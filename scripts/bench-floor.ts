// `pnpm bench:floor`: the floor under paxlock's write figures on this machine. Five bare Node
// processes do only what any five-replica design must do for one write: the client sends it to
// the master over WebSocket; the master sends it to the four followers, appends it to a file and
// fsyncs; each follower appends and fsyncs and answers; once two followers and the master hold
// it, the master answers the client. No SQLite, no state machine, no sessions, no validation,
// no msgpack: raw binary frames. Whatever paxlock does, it cannot beat these figures by much, so
// they tell which targets this machine can meet at all (docs/benchmarks.md).
//
// Both sides batch as paxlock does: whatever arrived in one event-loop turn shares one append
// and one fsync, and the master's own fsync runs after its Accepts are sent.
//
//   pnpm bench:floor [--seconds S] [--writes N] [--no-fsync]
//
// Prints one JSON line per workload: sequential writes (one client, N writes one at a time;
// p50/p99) and concurrent writes (64 connections, one write each in flight, for S seconds;
// writes/s, p50/p99, writes per master fsync, and the CPU microseconds each process spent per
// write: compare with paxlock's at the same load). Not a test: nothing is asserted.

import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as WsModule from 'ws';
import { percentile } from './bench-workloads.ts';

// ws is a dependency of the server package, so it is resolved from there.
const requireFromServer = createRequire(new URL('../server/package.json', import.meta.url));
const { WebSocket, WebSocketServer } = requireFromServer('ws') as typeof WsModule;

const FOLLOWERS = 4;
const QUORUM_FOLLOWERS = 2; // with the master's own copy, three of five
const CONCURRENCY = 64;
const PAYLOAD = Buffer.alloc(64, 1);

/** What a replica process hears from the driver over IPC. */
type Control =
  | { readonly type: 'followers'; readonly ports: readonly number[] }
  | { readonly type: 'cpu' };

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Appends what one turn gathered and, unless told not to, fsyncs: one durable write a turn. */
class Disk {
  readonly #fd: number;
  readonly #isSynced: boolean;
  syncs = 0;

  constructor(path: string, isSynced: boolean) {
    this.#fd = openSync(path, 'a');
    this.#isSynced = isSynced;
  }

  append(chunks: readonly Buffer[]): void {
    writeSync(this.#fd, Buffer.concat(chunks));
    if (this.#isSynced) fdatasyncSync(this.#fd);
    this.syncs++;
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Runs once a turn (setImmediate), after every socket read already queued. */
function perTurn(run: () => void): () => void {
  let isScheduled = false;
  return () => {
    if (isScheduled) return;
    isScheduled = true;
    setImmediate(() => {
      isScheduled = false;
      run();
    });
  };
}

// --- the replica processes ---------------------------------------------------------------------

function follower(disk: Disk, server: WsModule.WebSocketServer): void {
  server.on('connection', (socket) => {
    let batch: Buffer[] = [];
    let ids: number[] = [];
    const flush = perTurn(() => {
      disk.append(batch);
      for (const id of ids) {
        const ack = Buffer.allocUnsafe(4);
        ack.writeUInt32LE(id, 0);
        socket.send(ack);
      }
      batch = [];
      ids = [];
    });
    socket.on('message', (data: Buffer) => {
      ids.push(data.readUInt32LE(0));
      batch.push(data);
      flush();
    });
  });
}

function master(disk: Disk, server: WsModule.WebSocketServer, followerPorts: readonly number[]): Promise<void> {
  interface Pending {
    readonly replies: { socket: WsModule.WebSocket; request: Buffer }[];
    acks: number;
    isOwnDurable: boolean;
  }
  const inFlight = new Map<number, Pending>();
  let nextBatch = 1;
  let queued: { socket: WsModule.WebSocket; request: Buffer }[] = [];
  const links = followerPorts.map((port) => new WebSocket(`ws://127.0.0.1:${String(port)}`, { perMessageDeflate: false }));
  const answerIfChosen = (id: number, pending: Pending): void => {
    if (!pending.isOwnDurable || pending.acks < QUORUM_FOLLOWERS) return;
    inFlight.delete(id);
    for (const { socket, request } of pending.replies) socket.send(request.subarray(0, 4));
  };
  const propose = perTurn(() => {
    if (queued.length === 0) return;
    const id = nextBatch++;
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32LE(id, 0);
    const accept = Buffer.concat([header, ...queued.map((q) => q.request)]);
    const pending: Pending = { replies: queued, acks: 0, isOwnDurable: false };
    queued = [];
    inFlight.set(id, pending);
    for (const link of links) link.send(accept); // the Accepts leave before the master's own fsync
    disk.append([accept]);
    pending.isOwnDurable = true;
    answerIfChosen(id, pending);
  });
  for (const link of links) {
    link.on('message', (data: Buffer) => {
      const id = data.readUInt32LE(0);
      const pending = inFlight.get(id);
      if (pending === undefined) return;
      pending.acks++;
      answerIfChosen(id, pending);
    });
  }
  server.on('connection', (socket) => {
    socket.on('message', (request: Buffer) => {
      queued.push({ socket, request });
      propose();
    });
  });
  return Promise.all(links.map((link) => new Promise<void>((resolve, reject) => {
    link.once('open', () => resolve());
    link.once('error', reject);
  }))).then(() => undefined);
}

function replicaMain(role: string, dir: string, isSynced: boolean): void {
  const disk = new Disk(join(dir, `${role}.log`), isSynced);
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('listening', () => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
    process.send?.({ type: 'listening', port: address.port });
  });
  process.on('message', (message: Control) => {
    if (message.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send?.({ type: 'cpu', micros: user + system, syncs: disk.syncs });
    } else {
      void master(disk, server, message.ports).then(() => process.send?.({ type: 'ready' }));
    }
  });
  if (role !== 'master') follower(disk, server);
  process.on('disconnect', () => {
    disk.close();
    process.exit(0);
  });
}

// --- the driver --------------------------------------------------------------------------------

interface Report {
  readonly type: string;
  readonly port?: number;
  readonly micros?: number;
  readonly syncs?: number;
}

function nextMessage(child: ChildProcess, type: string): Promise<Report> {
  return new Promise((resolve) => {
    const onMessage = (message: Report): void => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      resolve(message);
    };
    child.on('message', onMessage);
  });
}

function connect(port: number): Promise<WsModule.WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${String(port)}`, { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** One client connection: send a write, resolve when its answer comes. */
class Writer {
  readonly #socket: WsModule.WebSocket;
  #next = 1;
  #waiting = new Map<number, () => void>();

  constructor(socket: WsModule.WebSocket) {
    this.#socket = socket;
    socket.on('message', (data: Buffer) => {
      const id = data.readUInt32LE(0);
      this.#waiting.get(id)?.();
      this.#waiting.delete(id);
    });
  }

  write(): Promise<void> {
    const id = this.#next++;
    const request = Buffer.allocUnsafe(4 + PAYLOAD.length);
    request.writeUInt32LE(id, 0);
    PAYLOAD.copy(request, 4);
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#socket.send(request);
    });
  }

  close(): void {
    this.#socket.close();
  }
}

const ms = (from: bigint): number => Number(process.hrtime.bigint() - from) / 1e6;

function summary(latencies: number[]): { latencyMsP50: number; latencyMsP99: number } {
  latencies.sort((a, b) => a - b);
  return { latencyMsP50: +percentile(latencies, 50).toFixed(2), latencyMsP99: +percentile(latencies, 99).toFixed(2) };
}

async function driverMain(): Promise<void> {
  const seconds = Number(option('--seconds') ?? 5);
  const writes = Number(option('--writes') ?? 2000);
  const isSynced = !process.argv.includes('--no-fsync');
  if (!(seconds > 0) || !Number.isSafeInteger(writes) || writes < 1) throw new Error('usage: --seconds S (> 0) --writes N (>= 1)');
  const dir = mkdtempSync(join(tmpdir(), 'paxlock-floor-'));
  const self = fileURLToPath(import.meta.url);
  const roles = ['master', ...Array.from({ length: FOLLOWERS }, (_, i) => `follower${String(i + 1)}`)];
  const children = roles.map((role) => fork(self, ['--replica', role, dir, isSynced ? 'sync' : 'nosync'], { execArgv: ['--import', 'tsx'] }));
  try {
    const ports = await Promise.all(children.map(async (child) => (await nextMessage(child, 'listening')).port ?? 0));
    const masterProcess = children[0]!;
    const ready = nextMessage(masterProcess, 'ready');
    masterProcess.send({ type: 'followers', ports: ports.slice(1) } satisfies Control);
    await ready;
    const masterPort = ports[0]!;
    console.log(JSON.stringify({ floor: 'five bare Node processes, WebSocket links, one append+fsync per replica per turn', fsync: isSynced }));

    /** CPU microseconds used so far: each replica process's, then this driver's (the client). */
    const cpuNow = async (): Promise<{ micros: number[]; masterSyncs: number }> => {
      const replies = children.map((child) => nextMessage(child, 'cpu'));
      for (const child of children) child.send({ type: 'cpu' } satisfies Control);
      const { user, system } = process.cpuUsage();
      const reports = await Promise.all(replies);
      return { micros: [...reports.map((r) => r.micros ?? 0), user + system], masterSyncs: reports[0]?.syncs ?? 0 };
    };
    const one = new Writer(await connect(masterPort));
    for (let i = 0; i < 200; i++) await one.write(); // warm-up
    const sequential: number[] = [];
    const seqCpuBefore = await cpuNow();
    for (let i = 0; i < writes; i++) {
      const start = process.hrtime.bigint();
      await one.write();
      sequential.push(ms(start));
    }
    const seqCpuAfter = await cpuNow();
    one.close();
    const seqCpu = seqCpuAfter.micros.map((after, i) => +((after - (seqCpuBefore.micros[i] ?? 0)) / writes).toFixed(1));
    console.log(JSON.stringify({
      workload: 'sequential-writes',
      ops: writes,
      ...summary(sequential),
      cpuMicrosPerWrite: { master: seqCpu[0], followers: seqCpu.slice(1, 1 + FOLLOWERS), client: seqCpu[1 + FOLLOWERS] },
    }));

    const many = await Promise.all(Array.from({ length: CONCURRENCY }, async () => new Writer(await connect(masterPort))));
    const concurrent: number[] = [];
    const cpuBefore = await cpuNow();
    const started = process.hrtime.bigint();
    const end = started + BigInt(Math.round(seconds * 1e9));
    await Promise.all(many.map(async (writer) => {
      while (process.hrtime.bigint() < end) {
        const start = process.hrtime.bigint();
        await writer.write();
        concurrent.push(ms(start));
      }
    }));
    const elapsed = ms(started) / 1000;
    const cpuAfter = await cpuNow();
    for (const writer of many) writer.close();
    const cpuPerWrite = cpuAfter.micros.map((after, i) => +((after - (cpuBefore.micros[i] ?? 0)) / concurrent.length).toFixed(1));
    const masterSyncs = cpuAfter.masterSyncs - cpuBefore.masterSyncs;
    console.log(JSON.stringify({
      workload: 'concurrent-writes',
      ops: concurrent.length,
      seconds: +elapsed.toFixed(2),
      opsPerSecond: Math.round(concurrent.length / elapsed),
      ...summary(concurrent),
      inFlight: CONCURRENCY,
      writesPerFsync: +(concurrent.length / Math.max(1, masterSyncs)).toFixed(1),
      cpuMicrosPerWrite: { master: cpuPerWrite[0], followers: cpuPerWrite.slice(1, 1 + FOLLOWERS), client: cpuPerWrite[1 + FOLLOWERS] },
    }));
  } finally {
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else {
        child.once('exit', () => resolve());
        child.disconnect();
      }
    })));
    rmSync(dir, { recursive: true, force: true });
  }
}

const replicaFlag = process.argv.indexOf('--replica');
if (replicaFlag >= 0) {
  replicaMain(process.argv[replicaFlag + 1] ?? '', process.argv[replicaFlag + 2] ?? '', process.argv[replicaFlag + 3] === 'sync');
} else {
  await driverMain();
}
