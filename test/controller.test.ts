// The Kafka-style controller example (examples/controller) against a real cell: three broker
// processes register ephemeral files and elect a controller, which keeps the partition
// assignment. A broker is killed (-9), then the controller: each time the assignment converges
// to the living brokers within the session lease plus the grace period, every version of it
// covers every partition, and no two controllers ever wrote in the same term; a write by the
// deposed controller's term is refused.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPaxlockError, LIMITS, PaxlockClient } from '@paxlock/client';
import {
  parseAssignment,
  rebalance,
  termNumber,
  type Assignment,
} from '../examples/controller/assignment.ts';
import type { LocalCell } from '../scripts/cell.ts';
import { eventually, useCell } from './helpers.ts';

const root = resolve(import.meta.dirname, '..');
const PARTITIONS = 12;
const LEASE_MS = 3_000;

interface Line {
  readonly t: number;
  readonly broker: string;
  readonly event: string;
  readonly generation?: number;
  readonly term?: string;
  readonly partitions?: string[];
}

interface Broker {
  readonly id: string;
  readonly child: ChildProcess;
  readonly lines: Line[];
  readonly exited: Promise<void>;
}

describe('the controller example', () => {
  const theCell = useCell('controller');
  let cell: LocalCell;
  let observer: PaxlockClient;
  const brokers: Broker[] = [];

  function startBroker(id: string): Broker {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        resolve(root, 'examples/controller/broker.ts'),
        id,
        '--partitions',
        String(PARTITIONS),
        '--lease-ms',
        String(LEASE_MS),
      ],
      {
        cwd: root,
        env: { ...process.env, PAXLOCK_CELL: cell.clientAddresses.join(',') },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const lines: Line[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        lines.push(JSON.parse(line) as Line);
      } catch {
        // not one of the broker's JSON lines
      }
    });
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    const broker = { id, child, lines, exited };
    brokers.push(broker);
    return broker;
  }

  async function assignment(): Promise<{ value: Assignment | null; generation: number }> {
    const handle = await observer.open('assignment', { create: true });
    try {
      const { contents, stat } = await handle.readWithStat();
      return { value: parseAssignment(contents), generation: stat.contentGeneration };
    } finally {
      await handle.close();
    }
  }

  async function convergedTo(living: readonly string[], what: string): Promise<Assignment> {
    const want = [...living].sort().join();
    return eventually(
      async () => {
        const { value } = await assignment();
        if (value === null) return undefined;
        return [...new Set(value.partitions)].sort().join() === want ? value : undefined;
      },
      what,
      120_000,
    );
  }

  beforeAll(async () => {
    cell = theCell();
    observer = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'observer',
      findMasterTimeoutMs: 60_000,
    });
  });
  afterAll(async () => {
    for (const b of brokers)
      if (b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
    await Promise.all(brokers.map((b) => b.exited));
    await observer.close();
  });

  it('rebalances when a broker dies and carries on when the controller dies', async () => {
    for (const id of ['b1', 'b2', 'b3']) startBroker(id);
    const first = await convergedTo(['b1', 'b2', 'b3'], 'an assignment over three brokers');
    expect(first.partitions).toHaveLength(PARTITIONS);

    // Kill a broker that is not the controller.
    const victim = brokers.find((b) => b.id !== first.controller)!;
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    const survivors = ['b1', 'b2', 'b3'].filter((id) => id !== victim.id);
    const second = await convergedTo(survivors, 'an assignment without the dead broker');
    const brokerConvergedMs = Date.now() - killedAt;
    console.log(
      `[figure] broker kill -9 -> assignment without it: ${brokerConvergedMs} ms (lease ${LEASE_MS} ms)`,
    );
    expect(brokerConvergedMs).toBeLessThan(LEASE_MS + LIMITS.graceDefaultMs);
    expect(second.controller).toBe(first.controller);

    // Kill the controller.
    const controller = brokers.find((b) => b.id === second.controller)!;
    const { generation: deposedGeneration } = await assignment();
    const controllerKilledAt = Date.now();
    controller.child.kill('SIGKILL');
    await controller.exited;
    const last = survivors.filter((id) => id !== controller.id);
    const third = await convergedTo(last, 'an assignment by a new controller over the last broker');
    const controllerConvergedMs = Date.now() - controllerKilledAt;
    console.log(
      `[figure] controller kill -9 -> new controller's assignment: ${controllerConvergedMs} ms (lease ${LEASE_MS} ms, lock-delay 2000 ms)`,
    );
    expect(controllerConvergedMs).toBeLessThan(LEASE_MS + 2_000 + LIMITS.graceDefaultMs);
    expect(third.controller).toBe(last[0]);
    expect(termNumber(third.term)).toBeGreaterThan(termNumber(second.term));

    // A write made on the deposed controller's view of the file (its generation) is refused.
    const handle = await observer.open('assignment');
    const stale = await handle
      .write(JSON.stringify({ ...second, partitions: second.partitions }), {
        ifGeneration: deposedGeneration,
      })
      .catch((err: unknown) => err);
    await handle.close();
    expect(isPaxlockError(stale, 'CAS_MISMATCH')).toBe(true);

    // Every version any controller wrote covers every partition, terms only grow with the
    // generation, and no term had two controllers.
    const writes = brokers
      .flatMap((b) => b.lines)
      .filter((l) => l.event === 'assignment')
      .sort((a, b) => a.generation! - b.generation!);
    expect(writes.length).toBeGreaterThanOrEqual(3);
    const controllerOfTerm = new Map<string, string>();
    let lastTerm = 0;
    for (const write of writes) {
      expect(write.partitions).toHaveLength(PARTITIONS);
      expect(write.partitions!.every((p) => typeof p === 'string' && p !== '')).toBe(true);
      expect(termNumber(write.term!)).toBeGreaterThanOrEqual(lastTerm);
      lastTerm = termNumber(write.term!);
      expect(controllerOfTerm.get(write.term!) ?? write.broker).toBe(write.broker);
      controllerOfTerm.set(write.term!, write.broker);
    }
    expect(new Set(writes.map((w) => w.generation)).size).toBe(writes.length);

    const remaining = brokers.find((b) => b.id === last[0])!;
    remaining.child.kill('SIGTERM');
    await remaining.exited;
  });
});

describe('rebalance (the controller example assignment)', () => {
  const counts = (owners: readonly string[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const o of owners) m.set(o, (m.get(o) ?? 0) + 1);
    return m;
  };

  it('covers every partition with living brokers, loads within one, and moves as little as it can', () => {
    const three = rebalance([], ['a', 'b', 'c'], 12);
    expect(three).toHaveLength(12);
    expect([...counts(three).values()]).toEqual([4, 4, 4]);
    const two = rebalance(three, ['a', 'c'], 12);
    expect(new Set(two)).toEqual(new Set(['a', 'c']));
    expect([...counts(two).values()].sort()).toEqual([6, 6]);
    // Partitions of the survivors stayed where they were.
    for (let i = 0; i < 12; i++) if (three[i] !== 'b') expect(two[i]).toBe(three[i]);
    const grown = rebalance(two, ['a', 'c', 'd'], 12);
    expect([...counts(grown).values()].sort()).toEqual([4, 4, 4]);
    expect(grown.filter((o, i) => o !== two[i])).toHaveLength(4);
    const uneven = rebalance([], ['a', 'b', 'c', 'd', 'e'], 12);
    expect(
      Math.max(...counts(uneven).values()) - Math.min(...counts(uneven).values()),
    ).toBeLessThanOrEqual(1);
  });
});
