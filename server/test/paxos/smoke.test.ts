// Proves the basic happy path end to end: one master at startup, commands chosen and applied
// in the same order on every replica.
import { describe, expect, it } from 'vitest';
import { appliedCommands, Cell, command } from './harness.ts';

describe('a five-replica cell', () => {
  it('elects one master at startup, the lowest id first', () => {
    const cell = new Cell();
    const m = cell.elect(5000);
    expect(m).toBe(1);
    expect(cell.masters()).toEqual([1]);
  });

  it('chooses and applies commands in the same order on every replica', () => {
    const cell = new Cell();
    const m = cell.elect();
    for (let i = 1; i <= 50; i++) expect(cell.propose(m, command('c', i))).toEqual({ ok: true });
    cell.run(500);
    const expected = Array.from({ length: 50 }, (_, i) => `c:${i + 1}`);
    for (const node of cell.nodes.values()) expect(appliedCommands(node.applied)).toEqual(expected);
  });
});
