// `pnpm bench:fsync`: what one durable SQLite commit costs on this disk, alone and with other
// processes committing at the same time (as five replicas do). Each writer process runs
// one-row transactions in a loop on its own database (WAL, synchronous=FULL, as paxos.db), for
// --seconds S (default 3), and reports its commit latency. Prints one JSON line per writer count.
// This is the floor under a write's latency: one such commit is on every write's critical path.
//
//   pnpm bench:fsync [--seconds S] [--writers 1,3,5]

import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type DatabaseConstructor from 'better-sqlite3';
import { percentile } from './bench-workloads.ts';

// better-sqlite3 is a dependency of the server package, so it is resolved from there.
const requireFromServer = createRequire(new URL('../server/package.json', import.meta.url));
const Database = requireFromServer('better-sqlite3') as typeof DatabaseConstructor;

interface WriterResult {
  readonly commits: number;
  readonly p50: number;
  readonly p99: number;
}

function writer(dir: string, seconds: number): WriterResult {
  const db = new Database(join(dir, 'probe.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE IF NOT EXISTS entries (slot INTEGER PRIMARY KEY, value BLOB)');
  const insert = db.prepare('INSERT OR REPLACE INTO entries (slot, value) VALUES (?, ?)');
  const commit = db.transaction((slot: number) => insert.run(slot, Buffer.alloc(300)));
  const latencies: number[] = [];
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  for (let slot = 0; process.hrtime.bigint() < end; slot++) {
    const start = process.hrtime.bigint();
    commit(slot % 1000);
    latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  db.close();
  latencies.sort((a, b) => a - b);
  return { commits: latencies.length, p50: +percentile(latencies, 50).toFixed(3), p99: +percentile(latencies, 99).toFixed(3) };
}

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

async function runWriters(count: number, seconds: number): Promise<WriterResult[]> {
  const self = fileURLToPath(import.meta.url);
  return Promise.all(
    Array.from({ length: count }, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'paxlock-fsync-'));
      try {
        const child = fork(self, ['--child', dir, String(seconds)], { execArgv: ['--import', 'tsx'] });
        return await new Promise<WriterResult>((resolve, reject) => {
          child.once('message', (m) => {
            resolve(m as WriterResult);
          });
          child.once('error', reject);
          child.once('exit', (code) => {
            if (code !== 0) reject(new Error(`writer exited with ${String(code)}`));
          });
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }),
  );
}

async function main(): Promise<void> {
  const childAt = process.argv.indexOf('--child');
  if (childAt >= 0) {
    const result = writer(process.argv[childAt + 1] ?? '.', Number(process.argv[childAt + 2]));
    process.send?.(result, () => process.exit(0));
    return;
  }
  const seconds = Number(option('--seconds', '3'));
  const counts = option('--writers', '1,3,5').split(',').map(Number);
  for (const count of counts) {
    const results = await runWriters(count, seconds);
    const p50s = results.map((r) => r.p50).sort((a, b) => a - b);
    const p99s = results.map((r) => r.p99).sort((a, b) => a - b);
    console.log(
      JSON.stringify({
        writers: count,
        commitsPerSecondEach: Math.round(results.reduce((n, r) => n + r.commits, 0) / count / seconds),
        commitMsP50: percentile(p50s, 50),
        commitMsP99: percentile(p99s, 50),
      }),
    );
  }
}

await main();
