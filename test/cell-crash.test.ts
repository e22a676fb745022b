// Whole-cell crashes under write load, with real parts: six writers keep writing increasing
// counters to their own files while all five replica processes are killed with SIGKILL at
// once, twice over, with snapshots and log compaction running (--snapshot-every 40). After each
// restart every acknowledged write must be there (a file holds its writer's last acknowledged
// counter, or the one after it if the write in flight was chosen after all, never less), and
// in the end all five replicas agree on the applied slot and the state digest.
//
// SIGKILL leaves the kernel's page cache alone, so this proves the ordering (acknowledge only
// what is applied after a durable quorum; replay state.db from paxos.db; snapshots and
// compaction never drop what is not in a durable snapshot), not the fsyncs themselves.

import { beforeAll, describe, expect, it } from 'vitest';
import { PaxlockClient } from '@paxlock/client';
import type { LocalCell } from '../scripts/cell.ts';
import { currentMaster, eventually, runningStatuses, useCell } from './helpers.ts';

const WRITERS = 6;

interface Writer {
  readonly client: PaxlockClient;
  /** The highest counter the cell acknowledged. */
  acked: number;
  /** Resolves when the writer's loop has ended (its client was abandoned). */
  readonly done: Promise<void>;
}

async function startWriter(cell: LocalCell, index: number, from: number): Promise<Writer> {
  const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: `crash-writer-${String(index)}`, findMasterTimeoutMs: 60_000 });
  const handle = await client.open(`crash/w${String(index)}`, { create: true });
  const writer: { client: PaxlockClient; acked: number; done: Promise<void> } = { client, acked: from, done: Promise.resolve() };
  writer.done = (async () => {
    for (let n = from + 1; ; n++) {
      try {
        await handle.write(String(n), { timeoutMs: 30_000 });
      } catch {
        return; // the cell died under it, or the test abandoned the client
      }
      writer.acked = n;
    }
  })();
  return writer;
}

describe('a five-replica cell killed whole under write load', () => {
  const theCell = useCell('crash', ['--snapshot-every', '40']);
  let cell: LocalCell;
  beforeAll(async () => {
    cell = theCell();
    await currentMaster(cell);
    const setup = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'crash-setup', findMasterTimeoutMs: 60_000 });
    await setup.mkdir('crash', { parents: true });
    await setup.close();
  });

  it('keeps every acknowledged write across two SIGKILLs of all five replicas at once', async () => {
    const ids = cell.config.replicas.map((r) => r.id);
    let floor = Array.from({ length: WRITERS }, () => 0);
    for (let round = 1; round <= 2; round++) {
      const writers = await Promise.all(floor.map(async (from, i) => startWriter(cell, i, from)));
      // Let every writer get well past where it started (so compaction has run), then kill all.
      await eventually(() => (writers.every((w, i) => w.acked >= floor[i]! + 30) ? true : undefined), 'thirty acknowledged writes per writer', 60_000);
      await Promise.all(ids.map(async (id) => cell.signal(id, 'SIGKILL')));
      const abandonedAt = Date.now();
      for (const w of writers) w.client.abandon();
      await Promise.all(writers.map(async (w) => w.done));
      // abandon() ends calls still waiting for a master at once, not at their next attempt.
      console.log(`[figure] round ${String(round)}: the writers' pending calls ended ${String(Date.now() - abandonedAt)} ms after abandon()`);
      const acked = writers.map((w) => w.acked);

      for (const id of ids) cell.start(id);
      await currentMaster(cell);
      const reader = await PaxlockClient.connect({ cell: cell.clientAddresses, name: `crash-reader-${String(round)}`, findMasterTimeoutMs: 60_000 });
      const found = await Promise.all(acked.map(async (_, i) => Number((await reader.readFile(`crash/w${String(i)}`)).toString())));
      await reader.close();
      console.log(`[figure] round ${String(round)}: acknowledged ${acked.join(',')}; found after restart ${found.join(',')}`);
      for (let i = 0; i < WRITERS; i++) {
        // At most one write per writer was in flight at the kill: it may or may not have been chosen.
        expect(found[i]).toBeGreaterThanOrEqual(acked[i]!);
        expect(found[i]).toBeLessThanOrEqual(acked[i]! + 1);
      }
      floor = found;
    }

    const agreed = await eventually(async () => {
      const all = await runningStatuses(cell);
      if (all.length !== ids.length) return undefined;
      const applied = new Set(all.map((s) => s.applied));
      return applied.size === 1 ? new Set(all.map((s) => s.digest)) : undefined;
    }, 'all five replicas at the same applied slot', 60_000);
    expect(agreed.size).toBe(1);
  });
});
