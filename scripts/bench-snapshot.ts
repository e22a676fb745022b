// Benchmark of a snapshot send (docs/cell.md, Snapshots), a script and not a timed test
// (STYLE.md): how long the event loop of a replica is held while it copies its state database
// and ships it to a peer, before (db.serialize(), then the sha256, then every chunk queued on the
// socket at once) and after (runtime/state-copy.ts: the online backup API a few pages per turn,
// then the copy hashed and sent from its file, a chunk at a time within a window).
//
// For each size it builds a state.db through the real StateMachine (files of 64 KiB contents,
// WAL, synchronous=NORMAL, as a replica opens it), then runs each way of sending it to a peer
// over a loopback WebSocket (the receiver in this process only counts bytes), while a writer
// applies one small entry every 5 ms through the same connection, as a master with traffic
// would. Prints one JSON line per run: the database size, how long the copy, the hash and the
// send took, the event loop's longest delay meanwhile (perf_hooks.monitorEventLoopDelay, and
// the longest gap of a 1 ms interval probe; for the incremental copy also the longest before its
// completing step, stepGapMaxMs), the entries the writer applied meanwhile, and the most bytes
// queued on the socket at once.
//
//   pnpm bench:snapshot                    # 50 and 150 MB
//   pnpm bench:snapshot -- --sizes 20,200  # sizes in MB
//   pnpm bench:snapshot -- --quick         # 20 MB, a smoke check

import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type DatabaseConstructor from 'better-sqlite3';
import type * as WsModule from 'ws';
import { encodeFrame } from '../shared/src/index.ts';
import { StateMachine } from '../server/src/machine/index.ts';
import { copyState, removeStateCopy, sendInChunks, sha256OfFile } from '../server/src/runtime/state-copy.ts';

// better-sqlite3 and ws are dependencies of the server package, so they are resolved from there.
const requireFromServer = createRequire(new URL('../server/package.json', import.meta.url));
const Database = requireFromServer('better-sqlite3') as typeof DatabaseConstructor;
const { WebSocket, WebSocketServer } = requireFromServer('ws') as typeof WsModule;

const CELL = 'bench';
/** As node.ts sends a snapshot. */
const CHUNK_BYTES = 256 * 1024;
const WINDOW_BYTES = 4 * CHUNK_BYTES;
const CONTENTS_BYTES = 64 * 1024;
const FILES_PER_ENTRY = 32;

function sizesMb(): number[] {
  if (process.argv.includes('--quick')) return [20];
  const at = process.argv.indexOf('--sizes');
  const raw = at >= 0 ? process.argv[at + 1] : undefined;
  if (raw === undefined) return [50, 150];
  const sizes = raw.split(',').map(Number);
  if (sizes.some((n) => !Number.isFinite(n) || n <= 0 || n > 2_000)) throw new Error(`--sizes ${raw}: MB between 1 and 2000, comma-separated`);
  return sizes;
}

interface State {
  readonly db: DatabaseConstructor.Database;
  readonly machine: StateMachine;
  seq: number;
}

/** A state.db of about `mb` MB, built by applying entries: files of 64 KiB of pseudo-random bytes. */
function buildState(dir: string, mb: number): State {
  const db = new Database(join(dir, 'state.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  const machine = StateMachine.open(db, { cell: CELL });
  const state: State = { db, machine, seq: 0 };
  const apply = (commands: unknown[]): void => {
    machine.apply({ slot: machine.appliedIndex + 1, stampMs: 1_000 + machine.appliedIndex, commands });
  };
  apply([{ type: 'CreateSession', clientName: 'bench', leaseMs: 300_000 }]);
  const fileCount = Math.ceil((mb * 1024 * 1024) / CONTENTS_BYTES);
  const contents = new Uint8Array(CONTENTS_BYTES);
  for (let first = 0; first < fileCount; first += FILES_PER_ENTRY) {
    const commands: unknown[] = [];
    for (let i = first; i < Math.min(fileCount, first + FILES_PER_ENTRY); i++) {
      // Handles are numbered from 1 in the order files are opened.
      commands.push({ type: 'Open', session: 1, seq: ++state.seq, path: `/ls/${CELL}/f${String(i)}`, create: 'may', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 });
      for (let j = 0; j < contents.length; j += 4) contents.set([i & 255, j & 255, (i * 7 + j) & 255, (j >> 8) & 255], j);
      commands.push({ type: 'SetContents', session: 1, seq: ++state.seq, handle: i + 1, contents });
    }
    apply(commands);
  }
  db.pragma('wal_checkpoint(TRUNCATE)'); // as the replica's last durable snapshot leaves it
  return state;
}

/** A loopback peer link: the sender's socket, and the count of bytes the receiver has had. */
async function openLink(): Promise<{ socket: InstanceType<typeof WebSocket>; received: () => number; close: () => Promise<void> }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 16 * 1024 * 1024, perMessageDeflate: false });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  let received = 0;
  server.on('connection', (socket) => {
    socket.on('message', (data: Buffer) => {
      received += data.byteLength;
    });
  });
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('no address');
  const socket = new WebSocket(`ws://127.0.0.1:${String(address.port)}`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    received: () => received,
    close: async () => {
      socket.terminate();
      for (const client of server.clients) client.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Watch {
  /** The probe's longest gap so far. */
  gapMaxMs(): number;
  stop(): { loopDelayMaxMs: number; probeGapMaxMs: number; entriesApplied: number };
}

/** The loop-delay histogram, a 1 ms interval probe, and a writer applying an entry every 5 ms. */
async function watch(state: State): Promise<Watch> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  let last = performance.now();
  let gapMax = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    gapMax = Math.max(gapMax, now - last);
    last = now;
  }, 1);
  let entries = 0;
  const contents = new TextEncoder().encode('written while the snapshot is taken');
  const writer = setInterval(() => {
    const { machine } = state;
    machine.apply({ slot: machine.appliedIndex + 1, stampMs: 1_000 + machine.appliedIndex, commands: [{ type: 'SetContents', session: 1, seq: ++state.seq, handle: 1, contents }] });
    entries++;
  }, 5);
  // The histogram measures from its first tick on: let it and the probe start before the run.
  await new Promise((resolve) => setTimeout(resolve, 20));
  return {
    gapMaxMs: () => gapMax,
    stop: () => {
      clearInterval(probe);
      clearInterval(writer);
      histogram.disable();
      // The probe's last gap up to now counts too (a block at the very end).
      gapMax = Math.max(gapMax, performance.now() - last);
      return { loopDelayMaxMs: round(histogram.max / 1e6), probeGapMaxMs: round(gapMax), entriesApplied: entries };
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

async function untilReceived(received: () => number, bytes: number): Promise<void> {
  while (received() < bytes) await new Promise((resolve) => setTimeout(resolve, 1));
}

function frameOf(chunk: { slot: number; index: number; total: number; sha256: string; bytes: Uint8Array }): Uint8Array {
  return encodeFrame({ type: 'aux', body: { kind: 'snapshot-chunk', ...chunk, admitted: [] } });
}

/** Before: the whole database serialized, hashed, and every chunk queued at once. */
async function runSerialize(state: State, mb: number): Promise<void> {
  const link = await openLink();
  const watcher = await watch(state);
  const startedAt = performance.now();
  const bytes = state.db.serialize();
  const copiedAt = performance.now();
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const hashedAt = performance.now();
  const slot = state.machine.appliedIndex;
  const total = Math.max(1, Math.ceil(bytes.byteLength / CHUNK_BYTES));
  let sentBytes = 0;
  for (let index = 0; index < total; index++) {
    const frame = frameOf({ slot, index, total, sha256, bytes: bytes.subarray(index * CHUNK_BYTES, (index + 1) * CHUNK_BYTES) });
    sentBytes += frame.byteLength;
    link.socket.send(frame);
  }
  const peakBufferedBytes = link.socket.bufferedAmount;
  await untilReceived(link.received, sentBytes);
  const doneAt = performance.now();
  const watched = watcher.stop();
  await link.close();
  report({ mode: 'serialize', targetMb: mb, dbBytes: bytes.byteLength, copyMs: round(copiedAt - startedAt), hashMs: round(hashedAt - copiedAt), sendMs: round(doneAt - hashedAt), totalMs: round(doneAt - startedAt), ...watched, peakBufferedBytes });
}

/** After: state-copy.ts, as node.ts sends a snapshot. */
async function runIncremental(state: State, mb: number, dir: string): Promise<void> {
  const link = await openLink();
  const signal = new AbortController().signal;
  const watcher = await watch(state);
  let steps = 0;
  // The loop's longest stall up to the last step but the one that completes the copy (and commits it).
  let gapBeforeLastStepMs = 0;
  const onStep = (): void => {
    steps++;
    gapBeforeLastStepMs = watcher.gapMaxMs();
  };
  const startedAt = performance.now();
  const copy = await copyState(state.db, { dir, cell: CELL, signal, onStep });
  const copiedAt = performance.now();
  const sha256 = await sha256OfFile(copy.path, signal);
  const hashedAt = performance.now();
  let sentBytes = 0;
  let peakBufferedBytes = 0;
  await sendInChunks({
    path: copy.path,
    chunkBytes: CHUNK_BYTES,
    windowBytes: WINDOW_BYTES,
    signal,
    bufferedBytes: () => link.socket.bufferedAmount,
    send: ({ index, total, bytes }) => {
      const frame = frameOf({ slot: copy.slot, index, total, sha256, bytes });
      sentBytes += frame.byteLength;
      link.socket.send(frame);
      peakBufferedBytes = Math.max(peakBufferedBytes, link.socket.bufferedAmount);
    },
  });
  await untilReceived(link.received, sentBytes);
  const doneAt = performance.now();
  const watched = watcher.stop();
  removeStateCopy(copy.path);
  await link.close();
  report({ mode: 'incremental', targetMb: mb, dbBytes: copy.sizeBytes, copySteps: steps, stepGapMaxMs: round(gapBeforeLastStepMs), copyMs: round(copiedAt - startedAt), hashMs: round(hashedAt - copiedAt), sendMs: round(doneAt - hashedAt), totalMs: round(doneAt - startedAt), ...watched, peakBufferedBytes, slotAtStartToCopy: copy.slot });
}

function report(figure: Record<string, unknown>): void {
  console.log(JSON.stringify({ bench: 'snapshot', ...figure }));
}

for (const mb of sizesMb()) {
  const dir = mkdtempSync(join(tmpdir(), 'paxlock-bench-snapshot-'));
  try {
    const buildStartedAt = performance.now();
    const state = buildState(dir, mb);
    report({ mode: 'build', targetMb: mb, dbBytes: statSync(join(dir, 'state.db')).size, slot: state.machine.appliedIndex, buildMs: Math.round(performance.now() - buildStartedAt) });
    await runSerialize(state, mb);
    await runIncremental(state, mb, dir);
    state.db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
