// Proves the whole protocol on a five-replica cell in the synchronous harness: one master at
// startup (the lowest id first), commands chosen and applied in the same order everywhere, a
// new master after the master crashes, a value chosen but not yet learned surviving a master
// change, a restarted replica replaying and catching up, a replica behind the compaction point
// asking for a snapshot, and answers never leaving before the persist that backs them.
import { describe, expect, it } from 'vitest';
import type { ReplicaId } from '../../src/paxos/ports.ts';
import { appliedCommands, Cell, command } from './harness.ts';

function commandsOn(cell: Cell, id: ReplicaId): string[] {
  return appliedCommands(cell.node(id).applied);
}

describe('a five-replica cell', () => {
  it('elects one master at startup, the lowest id first', () => {
    const cell = new Cell();
    expect(cell.elect(5000)).toBe(1);
    expect(cell.masters()).toEqual([1]);
    for (const node of cell.nodes.values()) expect(node.replica.status(cell.now).masterId).toBe(1);
  });

  it('elects the next replica quickly when the lowest id is down at startup', () => {
    const cell = new Cell();
    cell.crash(1);
    expect(cell.elect(5000)).toBe(2);
  });

  it('chooses and applies commands in the same order on every replica', () => {
    const cell = new Cell();
    const m = cell.elect();
    for (let i = 1; i <= 50; i++) expect(cell.propose(m, command('c', i))).toEqual({ ok: true });
    cell.run(500);
    const expected = Array.from({ length: 50 }, (_, i) => `c:${i + 1}`);
    for (const id of cell.nodes.keys()) expect(commandsOn(cell, id)).toEqual(expected);
  });

  it('elects a new master after the master crashes and keeps applying in order', () => {
    const cell = new Cell();
    const first = cell.elect();
    cell.propose(first, command('a', 1));
    cell.run(200);
    cell.crash(first);
    const second = cell.elect(10_000);
    expect(second).not.toBe(first);
    expect(cell.node(second).replica.status(cell.now).ballot.replica).toBe(second);
    cell.propose(second, command('a', 2));
    cell.run(500);
    for (const id of cell.nodes.keys()) {
      if (id !== first) expect(commandsOn(cell, id)).toEqual(['a:1', 'a:2']);
    }
  });

  it('serves reads again within a bounded time after the master crashes, for many seeds', () => {
    // Bound: the old lease must run out, then at most a couple of election rounds (duels).
    const boundMs = 2 * 1000 + 2 * (1500 + 300) + 500;
    for (let seed = 1; seed <= 20; seed++) {
      const cell = new Cell({ seed });
      const first = cell.elect();
      cell.run(300);
      cell.crash(first);
      const crashedAt = cell.now;
      const second = cell.elect(boundMs);
      expect(second, `seed ${seed}`).not.toBe(first);
      expect(cell.now - crashedAt, `seed ${seed}`).toBeLessThanOrEqual(boundMs);
    }
  });

  it('keeps a value chosen but not yet learned by anyone but the master across a master change', () => {
    const cell = new Cell();
    const first = cell.elect();
    // The Accepts reach only two followers; their acks reach the master, which chooses and
    // applies the value, then crashes before any commit index leaves it.
    cell.drop = (m) => m.from === first && m.message.type === 'accept' && m.to > 3;
    cell.propose(first, command('x', 1));
    cell.deliverAll();
    expect(commandsOn(cell, first)).toEqual(['x:1']);
    cell.crash(first);
    cell.drop = () => false;
    const second = cell.elect(10_000);
    cell.propose(second, command('x', 2));
    cell.run(1000);
    for (const id of cell.nodes.keys()) {
      if (id !== first) expect(commandsOn(cell, id)).toEqual(['x:1', 'x:2']);
    }
  });

  it('replays and catches up a replica that restarts after missing many slots', () => {
    const cell = new Cell({ config: { maxBatchCommands: 1, catchUpBatchSlots: 4 } });
    const m = cell.elect();
    cell.crash(5);
    for (let i = 1; i <= 30; i++) {
      cell.propose(m, command('c', i));
      cell.run(20);
    }
    cell.restart(5);
    cell.run(3000);
    expect(commandsOn(cell, 5)).toEqual(commandsOn(cell, m));
    expect(commandsOn(cell, 5)).toHaveLength(30);
  });

  it('tells a replica behind every peer compaction point that it needs a snapshot', () => {
    const cell = new Cell({ config: { maxBatchCommands: 1, catchUpBatchSlots: 4 } });
    const m = cell.elect();
    cell.crash(5);
    for (let i = 1; i <= 30; i++) {
      cell.propose(m, command('c', i));
      cell.run(20);
    }
    for (const node of cell.nodes.values()) {
      if (!node.isUp) continue;
      node.replica.snapshotTaken(node.replica.status(cell.now).applied);
      cell.flush(node.id);
    }
    cell.restart(5);
    cell.run(1000);
    const asked = cell.node(5).readies.find((r) => r.needSnapshot !== null);
    expect(asked?.needSnapshot?.slotAtLeast).toBeGreaterThan(1);
    const shipped = [...cell.nodes.values()].flatMap((n) =>
      n.readies.flatMap((r) => r.snapshotFor),
    );
    expect(shipped.some((s) => s.to === 5)).toBe(true);
    // Installing the snapshot (as the wiring would) lets it follow the log tail again.
    const applied = cell.node(m).replica.status(cell.now).applied;
    cell.installSnapshot(5, applied);
    cell.propose(m, command('after', 1));
    cell.run(1000);
    expect(cell.node(5).replica.status(cell.now).applied).toBe(
      cell.node(m).replica.status(cell.now).applied,
    );
    expect(commandsOn(cell, 5)).toContain('after:1');
  });

  it('never sends an answer before the persist of the same Ready (persist-before-send)', () => {
    const cell = new Cell();
    const m = cell.elect();
    for (let i = 1; i <= 20; i++) cell.propose(m, command('c', i));
    cell.crash(m);
    cell.elect(10_000);
    cell.run(500);
    const answers = new Set(['promise', 'accepted', 'heartbeat-ack', 'reject', 'catch-up']);
    const early = cell.trace.filter(
      (e) => e.kind === 'send' && e.early && answers.has(e.envelope.message.type),
    );
    expect(early).toEqual([]);
    const earlyTypes = new Set(
      cell.trace.flatMap((e) => (e.kind === 'send' && e.early ? [e.envelope.message.type] : [])),
    );
    expect([...earlyTypes]).toEqual(['accept']);
  });
});
