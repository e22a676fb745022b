// Benchmark of the replicated state machine (issue 3), a script and not a timed test (STYLE.md):
// applied commands per second for small SetContents and for Acquire/Release pairs, with 1, 20 and
// 100 commands per entry (one SQLite transaction per entry; 20 is what a live cell's entries
// hold), on a file-backed state.db in the OS
// temp folder with the pragmas a replica uses (WAL, synchronous=NORMAL); then the time to
// digest, snapshot and restore a database of 100,000 nodes. Prints one JSON line per figure.
//
//   pnpm bench:machine              # defaults
//   pnpm bench:machine -- --quick   # smaller runs, for a smoke check

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type DatabaseConstructor from 'better-sqlite3';
import { StateMachine } from '../server/src/machine/index.ts';

// better-sqlite3 is a dependency of the server package, so it is resolved from there.
const requireFromServer = createRequire(new URL('../server/package.json', import.meta.url));
const Database = requireFromServer('better-sqlite3') as typeof DatabaseConstructor;

const isQuick = process.argv.includes('--quick');
const CELL = 'bench';
const dir = mkdtempSync(join(tmpdir(), 'paxlock-bench-machine-'));

function openFileDb(name: string): DatabaseConstructor.Database {
  const db = new Database(join(dir, name));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  return db;
}

function report(figure: Record<string, unknown>): void {
  console.log(JSON.stringify(figure));
}

interface Bench {
  machine: StateMachine;
  db: DatabaseConstructor.Database;
  slot: number;
  seq: number;
}

function setUp(name: string, fileCount: number): Bench {
  const db = openFileDb(name);
  const machine = StateMachine.open(db, { cell: CELL });
  const bench: Bench = { machine, db, slot: 0, seq: 0 };
  const commands: unknown[] = [{ type: 'CreateSession', clientName: 'bench', leaseMs: 12_000 }];
  for (let i = 0; i < fileCount; i++) {
    commands.push({
      type: 'Open',
      session: 1,
      seq: ++bench.seq,
      path: `/ls/${CELL}/f${i}`,
      create: 'may',
      ephemeral: false,
      directory: false,
      eventMask: 0,
      lockDelayMs: 0,
    });
  }
  machine.apply({ slot: ++bench.slot, stampMs: 1, commands });
  return bench;
}

function run(
  bench: Bench,
  options: {
    name: string;
    commandCount: number;
    perEntry: number;
    make: (i: number) => unknown;
    /** Entries per state.db commit: 1 is a transaction each; more, one open transaction (node.ts). */
    entriesPerCommit?: number;
  },
): void {
  const entriesPerCommit = options.entriesPerCommit ?? 1;
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  let errors = 0;
  let entries = 0;
  for (let done = 0; done < options.commandCount; done += options.perEntry) {
    if (entriesPerCommit > 1 && entries++ % entriesPerCommit === 0) {
      if (bench.db.inTransaction) bench.db.exec('COMMIT');
      bench.db.exec('BEGIN');
    }
    const commands: unknown[] = [];
    for (let i = done; i < done + options.perEntry; i++) commands.push(options.make(i));
    const { results } = bench.machine.apply({
      slot: ++bench.slot,
      stampMs: 1_000 + bench.slot,
      commands,
    });
    for (const result of results) if (result.type === 'error') errors++;
  }
  if (bench.db.inTransaction) bench.db.exec('COMMIT');
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  report({
    bench: options.name,
    commandsPerEntry: options.perEntry,
    ...(entriesPerCommit > 1 ? { entriesPerCommit } : {}),
    commandCount: options.commandCount,
    errorCount: errors,
    seconds: Number(seconds.toFixed(3)),
    commandsPerSecond: Math.round(options.commandCount / seconds),
    // On a loaded machine wall time includes waiting for a CPU; this rate does not.
    commandsPerCpuSecond: Math.round(options.commandCount / cpuSeconds),
  });
}

const FILES = 100;
const payload = new TextEncoder().encode('x'.repeat(64));

const PER_ENTRY = [1, 20, 100] as const;

function commandCountOf(perEntry: number): number {
  if (isQuick) return 2_000;
  return perEntry === 1 ? 20_000 : 200_000;
}

for (const perEntry of PER_ENTRY) {
  const count = commandCountOf(perEntry);
  const bench = setUp(`set-contents-${perEntry}.db`, FILES);
  run(bench, {
    name: 'SetContents 64 B',
    commandCount: count,
    perEntry,
    make: (i) => ({
      type: 'SetContents',
      session: 1,
      seq: ++bench.seq,
      handle: (i % FILES) + 1,
      contents: payload,
    }),
  });
  bench.db.close();
}

// Then one command per entry again, with 32 entries to a commit, as a replica applies them
// (node.ts: one open transaction, each entry a savepoint in it).
for (const [perEntry, entriesPerCommit] of [...PER_ENTRY.map((n) => [n, 1] as const), [1, 32] as const]) {
  const count = commandCountOf(perEntry);
  const bench = setUp(`acquire-release-${perEntry}-${entriesPerCommit}.db`, FILES);
  run(bench, {
    name: 'Acquire/Release pairs',
    commandCount: count,
    perEntry,
    entriesPerCommit,
    make: (i) => {
      const handle = (Math.floor(i / 2) % FILES) + 1;
      return i % 2 === 0
        ? { type: 'Acquire', session: 1, seq: ++bench.seq, handle, mode: 'exclusive', wait: false }
        : { type: 'Release', session: 1, seq: ++bench.seq, handle };
    },
  });
  bench.db.close();
}

// One lock, 16 sessions queued on it, each entry what a contended hand-over is in a cell (pnpm
// bench's lock-contended with held Acquires): the holder's Release, which grants the head of the
// queue, and the same holder's Acquire to queue again; 32 entries to a commit.
{
  const WORKERS = 16;
  const db = openFileDb('contended.db');
  const machine = StateMachine.open(db, { cell: CELL });
  let slot = 0;
  const seqs = new Array<number>(WORKERS + 1).fill(0);
  const entry = (commands: unknown[]): ReturnType<StateMachine['apply']> =>
    machine.apply({ slot: ++slot, stampMs: 1_000 + slot, commands });
  const ids = Array.from({ length: WORKERS }, (_, i) => i + 1); // sessions and their handles
  entry(ids.map((i) => ({ type: 'CreateSession', clientName: `w${i}`, leaseMs: 12_000 })));
  entry(ids.map((i) => ({ type: 'Open', session: i, seq: ++seqs[i]!, path: `/ls/${CELL}/lock`, create: 'may', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 })));
  entry(ids.map((i) => ({ type: 'Acquire', session: i, seq: ++seqs[i]!, handle: i, mode: 'exclusive', wait: true })));
  const count = isQuick ? 1_000 : 20_000;
  let holder = 1;
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  for (let n = 0; n < count; n++) {
    if (n % 32 === 0) {
      if (db.inTransaction) db.exec('COMMIT');
      db.exec('BEGIN');
    }
    const { events } = entry([
      { type: 'Release', session: holder, seq: ++seqs[holder]!, handle: holder },
      { type: 'Acquire', session: holder, seq: ++seqs[holder]!, handle: holder, mode: 'exclusive', wait: true },
    ]);
    const granted = events.find((e) => e.type === 'lock-granted');
    if (granted === undefined) throw new Error('a contended release granted nobody');
    holder = granted.session;
  }
  db.exec('COMMIT');
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  report({
    bench: 'contended hand-overs (Release + Acquire to queue again, 16 queued)',
    entriesPerCommit: 32,
    handOverCount: count,
    seconds: Number(seconds.toFixed(3)),
    cpuMicrosecondsPerHandOver: Math.round((cpu.user + cpu.system) / count),
  });
  db.close();
}

function time<T>(what: () => T): { value: T; ms: number } {
  const start = process.hrtime.bigint();
  const value = what();
  return { value, ms: Number((Number(process.hrtime.bigint() - start) / 1e6).toFixed(1)) };
}

function openCommand(
  bench: Bench,
  path: string,
  directory: boolean,
  contents?: Uint8Array,
): unknown {
  return {
    type: 'Open',
    session: 1,
    seq: ++bench.seq,
    path,
    create: 'must',
    ephemeral: false,
    directory,
    eventMask: 0,
    lockDelayMs: 0,
    ...(contents === undefined ? {} : { contents }),
  };
}

{
  const nodeCount = isQuick ? 10_000 : 100_000;
  const bench = setUp('snapshot.db', 0);
  const contents = new TextEncoder().encode('host-123.example.com:8080');
  let nextHandle = 1;
  const dirs: unknown[] = [];
  for (let d = 0; d < 100; d++) {
    dirs.push(openCommand(bench, `/ls/${CELL}/d${d}`, true));
    dirs.push({ type: 'Close', session: 1, seq: ++bench.seq, handle: nextHandle++ });
  }
  bench.machine.apply({ slot: ++bench.slot, stampMs: 2, commands: dirs });
  // Each node is created by Open and closed again at once, so no handles stay open.
  const built = time(() => {
    for (let i = 0; i < nodeCount; i += 500) {
      const commands: unknown[] = [];
      for (let j = i; j < i + 500; j++) {
        commands.push(openCommand(bench, `/ls/${CELL}/d${j % 100}/n${j}`, false, contents));
        commands.push({ type: 'Close', session: 1, seq: ++bench.seq, handle: nextHandle++ });
      }
      const { results } = bench.machine.apply({ slot: ++bench.slot, stampMs: 3, commands });
      if (results.some((result) => result.type === 'error'))
        throw new Error('building the tree failed');
    }
  });
  const digest = time(() => bench.machine.digest());
  const snapshot = time(() => bench.machine.snapshot());
  const restored = time(() => StateMachine.restore(snapshot.value, { cell: CELL }));
  const restoredDigest = restored.value.digest();
  const filePath = join(dir, 'restored.db');
  const toFile = time(() => {
    StateMachine.restoreToFile(snapshot.value, filePath);
  });
  const reopened = time(() => StateMachine.open(openFileDb('restored.db'), { cell: CELL }));
  report({
    bench: 'snapshot/restore',
    nodeCount: nodeCount + 101,
    buildMs: built.ms,
    snapshotBytes: snapshot.value.length,
    fileBytes: statSync(filePath).size,
    digestMs: digest.ms,
    snapshotMs: snapshot.ms,
    restoreInMemoryMs: restored.ms,
    restoreToFileMs: toFile.ms,
    reopenMs: reopened.ms,
    isDigestEqual: restoredDigest === digest.value && reopened.value.digest() === digest.value,
  });
  reopened.value.database.close();
  restored.value.database.close();
  bench.db.close();
}

rmSync(dir, { recursive: true, force: true });
