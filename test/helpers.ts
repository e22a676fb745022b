// Helpers for the cell tests: a temporary data directory, a running cell (ports from ports.ts), and
// waiting for a condition by polling real state (never a fixed sleep).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { Connection } from '@paxlock/client';
import type { ReplicaStatus } from '@paxlock/shared';
import { LocalCell } from '../scripts/cell.ts';
import { freeBasePort } from './ports.ts';

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `paxlock-${prefix}-`));
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err: unknown) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// ---------------------------------------------------------------------------------------------
// A cell per describe block, and asking replicas about themselves.


/**
 * Starts a five-replica cell before the block's tests and stops every process (by pid) and
 * removes its data after them. The returned getter is valid inside tests.
 */
export function useCell(name: string, serverArgs: readonly string[] = []): () => LocalCell {
  let cell: LocalCell | null = null;
  let dir = '';
  beforeAll(async () => {
    dir = tempDir(name);
    cell = new LocalCell({ dir, basePort: await freeBasePort(), logLevel: 'info', serverArgs });
    cell.startAll();
  });
  afterAll(async () => {
    await cell?.stopAll();
    if (process.env['KEEP_CELL_DIR'] === undefined) rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  });
  return () => {
    if (cell === null) throw new Error('the cell is not started yet');
    return cell;
  };
}

export async function statusOf(address: string): Promise<ReplicaStatus | undefined> {
  const connection = await Connection.open(address, 1_000);
  try {
    const reply = await connection.request({ type: 'status', digest: true }, 2_000);
    return reply.type === 'status' ? reply.status : undefined;
  } finally {
    connection.close();
  }
}

/** The status of every replica whose process is running and answers. */
export async function runningStatuses(cell: LocalCell): Promise<ReplicaStatus[]> {
  const running = cell.config.replicas.filter((r) => cell.isRunning(r.id));
  const all = await Promise.all(running.map((r) => statusOf(r.client).catch(() => undefined)));
  return all.filter((s): s is ReplicaStatus => s !== undefined);
}

/** Waits for a master holding a lease, and returns its status. */
export async function currentMaster(cell: LocalCell): Promise<ReplicaStatus> {
  return eventually(async () => (await runningStatuses(cell)).find((s) => s.role === 'master' && s.leaseRemainingMs > 0), 'a master with a lease', 60_000);
}

/** Waits until the master and replica `id` have applied the same slot; returns both statuses. */
export async function caughtUp(cell: LocalCell, id: number, what: string): Promise<{ master: ReplicaStatus; replica: ReplicaStatus }> {
  return eventually(async () => {
    const all = await runningStatuses(cell);
    const master = all.find((s) => s.role === 'master');
    const replica = all.find((s) => s.id === id);
    return master !== undefined && replica !== undefined && replica.applied === master.applied ? { master, replica } : undefined;
  }, what, 60_000);
}
