// A rolling restart of a whole five-process cell under a steady writer (docs/cell.md, "Rolling
// restart"): each follower in turn is stopped with SIGTERM, started again and left to catch up,
// then the master, which hands mastership over. The writer's session must never expire, its lock
// and ephemeral file must stay, and every write must be acknowledged and be there at the end.
// How long the writer stalled is printed as a figure, not asserted (it depends on the machine).

import { describe, expect, it } from 'vitest';
import { PaxlockClient } from '@paxlock/client';
import { caughtUp, currentMaster, useCell } from './helpers.ts';

const openFile = (path: string, extra: { ephemeral?: boolean; lockDelayMs?: number } = {}) =>
  ({ type: 'Open', path, create: 'may', ephemeral: extra.ephemeral ?? false, directory: false, eventMask: 0, lockDelayMs: extra.lockDelayMs ?? 0 }) as const;

describe('a rolling restart of the whole cell', () => {
  const theCell = useCell('rolling');

  it('restarts all five replicas, master last, under a writer that loses nothing', async () => {
    const cell = theCell();
    // As an operator would: start only once every replica is up and caught up.
    for (const { id } of cell.config.replicas) await caughtUp(cell, id, `replica ${id} up and caught up`);
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'roller', findMasterTimeoutMs: 60_000 });
    const states: string[] = [];
    client.on('state', (state) => states.push(state));
    const eph = await client.command(openFile('/ls/local/eph-rolling', { ephemeral: true }));
    const lockNode = await client.command(openFile('/ls/local/lock-rolling', { lockDelayMs: 5_000 }));
    if (eph.type !== 'opened' || lockNode.type !== 'opened') throw new Error('open failed');
    expect((await client.command({ type: 'Acquire', handle: lockNode.handle, mode: 'exclusive', wait: false })).type).toBe('acquired');

    // The writer: one write at a time, each naming its number, until told to stop.
    const run = { isWriting: true };
    let written = 0;
    const failures: string[] = [];
    const latencies: number[] = [];
    const writer = (async () => {
      while (run.isWriting) {
        const startedAt = Date.now();
        try {
          const reply = await client.command({ type: 'SetContents', handle: eph.handle, contents: Buffer.from(String(written + 1)) });
          latencies.push(Date.now() - startedAt);
          if (reply.type === 'contents-set') written++;
          else failures.push(JSON.stringify(reply));
        } catch (err: unknown) {
          failures.push(`write ${written + 1} threw after ${Date.now() - startedAt} ms: ${String(err)}`);
          run.isWriting = false;
        }
      }
    })();

    const firstMaster = (await currentMaster(cell)).id;
    const order = [...cell.config.replicas.map((r) => r.id).filter((id) => id !== firstMaster), firstMaster];
    for (const id of order) {
      const before = written;
      await cell.signal(id, 'SIGTERM');
      expect(cell.replicas.get(id)?.process.exitCode).toBe(0);
      cell.start(id);
      await caughtUp(cell, id, `replica ${id} caught up after its restart`);
      // Writes went on across this replica's restart (the writer is not stuck).
      await expectProgress(() => written, before);
    }
    const lastMaster = (await currentMaster(cell)).id;
    expect(lastMaster).not.toBe(firstMaster);

    run.isWriting = false;
    await writer;
    expect(failures).toEqual([]);
    expect(states).not.toContain('expired');
    const locks = await client.query({ type: 'ListLocks', path: '/ls/local/lock-rolling' });
    expect(locks).toMatchObject({ type: 'locks', locks: [{ holders: [{ session: client.session, mode: 'exclusive' }] }] });
    const stat = await client.query({ type: 'GetContentsAndStat', session: client.session, handle: eph.handle });
    if (stat.type !== 'contents-and-stat') throw new Error(`unexpected ${stat.type}`);
    expect(Buffer.from(stat.contents).toString()).toBe(String(written));

    const sorted = [...latencies].sort((a, b) => a - b);
    console.log(
      `[figure] rolling restart of five replicas (master ${firstMaster} last): ${written} writes, none failed; write latency p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms; client states ${JSON.stringify(states)}`,
    );
    await client.close();
  });
});

/** Waits until `count()` has moved past `from`: the writer made progress. */
async function expectProgress(count: () => number, from: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (count() <= from) {
    if (Date.now() > deadline) throw new Error(`no write acknowledged since ${from} within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
