// Stale reads from followers (issue 6) on a real cell: a follower answers a stale read within
// the bound it states, a follower cut off from the master never states a bound smaller than the
// time since it last heard from it (so it refuses a tight bound), and a linearizable read is
// never answered by a follower.

import { describe, expect, it } from 'vitest';
import { Connection, PaxlockClient } from '@paxlock/client';
import type { LocalCell } from '../scripts/cell.ts';
import { currentMaster, eventually, runningStatuses, useCell } from './helpers.ts';

describe('stale reads', () => {
  const theCell = useCell('stale');

  it('are answered by followers within their stated bound, and spread over the replicas', async () => {
    const cell: LocalCell = theCell();
    const client = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'stale-reader',
      findMasterTimeoutMs: 60_000,
    });
    await client.writeFile('stale/value', 'v1').catch(async () => {
      await client.mkdir('stale', { parents: true });
      return client.writeFile('stale/value', 'v1');
    });
    const master = await currentMaster(cell);
    // Once every replica has applied the write, any stale read must see it.
    await eventually(async () => {
      const all = await runningStatuses(cell);
      return all.length === 5 && all.every((s) => s.applied >= master.applied) ? true : undefined;
    }, 'every replica caught up');
    const answeredBy = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const read = await client.read('stale/value', {
        consistency: 'stale',
        maxStalenessMs: 5_000,
      });
      expect(read.contents.toString()).toBe('v1');
      expect(read.stalenessMs).not.toBeNull();
      expect(read.stalenessMs!).toBeLessThanOrEqual(5_000);
      if (read.replica !== null) answeredBy.add(read.replica);
    }
    console.log(
      `[figure] 20 stale reads answered by replicas ${[...answeredBy].sort().join(',')} (master ${master.id})`,
    );
    expect([...answeredBy].some((id) => id !== master.id)).toBe(true);
    // The linearizable default never goes to a follower.
    const linear = await client.read('stale/value');
    expect(linear.stalenessMs).toBeNull();
    await client.close();
  });

  it('refuses a tight bound at a follower cut off from the master, and never understates its staleness', async () => {
    const cell: LocalCell = theCell();
    const master = await currentMaster(cell);
    const follower = cell.config.replicas.find((r) => r.id !== master.id)!;
    const connection = await Connection.open(follower.client);
    const query = { type: 'StatPath', path: '/ls/local' } as const;
    // Before the cut: a follower in touch with the master answers a loose bound.
    const before = await eventually(async () => {
      const reply = await connection.request(
        { type: 'query', query, maxStalenessMs: 2_000 },
        2_000,
      );
      return reply.type === 'query-result' ? reply : undefined;
    }, 'a stale read answered by a follower');
    expect(before.replica).toBe(follower.id);

    // A linearizable read at a follower is redirected, never answered.
    const linear = await connection.request({ type: 'query', query }, 2_000);
    expect(linear.type).toBe('redirect');

    await cell.signal(master.id, 'SIGSTOP');
    const stoppedAt = Date.now();
    try {
      // Every answer from now on states a bound at least as long as the follower has been cut
      // off; soon a tight bound is refused (redirect) rather than answered.
      const refused = await eventually(async () => {
        const sentAt = Date.now();
        const reply = await connection.request(
          { type: 'query', query, maxStalenessMs: 300 },
          2_000,
        );
        if (reply.type === 'query-result') {
          expect(reply.stalenessMs! + 20).toBeGreaterThanOrEqual(sentAt - stoppedAt);
          return undefined;
        }
        return reply;
      }, 'a tight stale read refused');
      expect(refused.type).toBe('redirect');
      console.log(
        `[figure] a 300 ms stale read was refused ${Date.now() - stoppedAt} ms after the master stopped`,
      );
    } finally {
      await cell.signal(master.id, 'SIGCONT');
      connection.close();
    }
  });
});
