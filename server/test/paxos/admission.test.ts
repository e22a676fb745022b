// Proves the seats of replacement disks (docs/consensus.md, Replacing a disk): a disk that does
// not hold its replica's seat is a learner that never promises or votes; the master admits it
// through the log once it has caught up; from the slot after the admission its votes count; a
// candidate does not count a replica whose seat changes hands within its Phase 1; and the
// scenario that makes a wiped acceptor dangerous loses nothing here, while the planted bug (a
// replacement that votes at once, as a fresh data directory did before) loses a chosen value.
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import type { ChosenEntry, SlotValue } from '../../src/paxos/messages.ts';
import type { PlantedBugs } from '../../src/paxos/ports.ts';
import { validateMessage } from '../../src/paxos/validate.ts';
import { appliedCommands, Cell, command, drain, ofType, solo } from './harness.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });
const noop = (stampMs: number): SlotValue => ({ type: 'noop', stampMs });
const DISK = 0x5eed_0001;

function admissions(entries: readonly ChosenEntry[]): string[] {
  return entries.flatMap((e) =>
    e.value.type === 'admit' ? [`r${e.value.replica}:${e.value.diskId}`] : [],
  );
}

/** The chosen value each up-to-date replica holds at `slot` (from what it applied). */
function chosenAt(cell: Cell, slot: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const node of cell.nodes.values()) {
    const entry = node.applied.find((e) => e.slot === slot);
    if (entry !== undefined) out.set(node.id, JSON.stringify(entry.value));
  }
  return out;
}

describe('a replacement disk', () => {
  it('is a learner: it ignores Prepares and keeps Accepts without voting', () => {
    const r = solo({ id: 2, diskId: DISK });
    expect(r.status(0)).toMatchObject({ isVoter: false, diskId: DISK });
    r.step(1, { type: 'prepare', ballot: b(3, 1), slotFirst: 1 }, 5_000);
    let ready = drain(r, 5_000);
    expect(ready.send).toEqual([]);
    expect(ready.persist.promised).toBeNull();

    r.step(
      1,
      { type: 'accept', ballot: b(3, 1), slot: 1, value: noop(9), commit: 0, round: 2 },
      5_001,
    );
    ready = drain(r, 5_001);
    expect(ready.persist.accepted).toEqual([{ slot: 1, ballot: b(3, 1), value: noop(9) }]);
    expect(ofType(ready.send, 'accepted')).toEqual([]);
    // The master's commit covering the slot makes it chosen here (accepted in that ballot).
    r.step(1, { type: 'heartbeat', ballot: b(3, 1), commit: 1, round: 3 }, 5_002);
    ready = drain(r, 5_002);
    expect(ready.commit).toEqual([{ slot: 1, value: noop(9) }]);
    expect(ofType(ready.send, 'heartbeat-ack')).toEqual([
      {
        type: 'heartbeat-ack',
        to: 1,
        ballot: b(3, 1),
        round: 3,
        commit: 1,
        diskId: DISK,
        restartWaitMs: 0,
      },
    ]);
    // It never runs for master, however long it hears nothing.
    r.tick(60_000);
    expect(ofType(drain(r, 60_000).send, 'prepare')).toEqual([]);
  });

  it('displaces the disk it replaces: the old disk, started again, is a learner and says why', () => {
    const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const capture = (level: string) => (fields: Record<string, unknown>, msg: string) => {
      lines.push({ level, msg, fields });
    };
    const logger = {
      debug: capture('debug'),
      info: capture('info'),
      warn: capture('warn'),
      error: capture('error'),
    };
    // Replica 2's founding disk, running, learns that its seat went to another disk.
    const r = solo({ id: 2, diskId: 0, logger });
    expect(r.status(0).isVoter).toBe(true);
    const admit: SlotValue = { type: 'admit', stampMs: 7, replica: 2, diskId: DISK };
    r.step(
      1,
      { type: 'accept', ballot: b(3, 1), slot: 1, value: admit, commit: 0, round: 2 },
      5_000,
    );
    drain(r, 5_000);
    r.step(1, { type: 'heartbeat', ballot: b(3, 1), commit: 1, round: 3 }, 5_001);
    expect(drain(r, 5_001).commit).toEqual([{ slot: 1, value: admit }]);
    expect(r.status(5_001)).toMatchObject({ isVoter: false, diskId: 0 });
    const warned = lines.filter((l) => l.level === 'warn');
    expect(warned).toEqual([
      {
        level: 'warn',
        msg: "this replica's seat went to another disk: this disk no longer votes; wipe its data directory and start it without --bootstrap to rejoin as a replacement disk",
        fields: { replica: 2, admitted: 2, diskId: DISK, fromSlot: 2, thisDiskId: 0 },
      },
    ]);
    expect(lines.some((l) => l.msg === 'this disk admitted: voting from the next slot on')).toBe(
      false,
    );
    // From slot 2 on it neither votes nor promises.
    r.step(
      1,
      { type: 'accept', ballot: b(3, 1), slot: 2, value: noop(8), commit: 1, round: 4 },
      5_002,
    );
    expect(ofType(drain(r, 5_002).send, 'accepted')).toEqual([]);
  });

  it('is admitted through the log once caught up, and then votes', () => {
    const cell = new Cell();
    const m = cell.elect();
    for (let i = 1; i <= 20; i++) cell.propose(m, command('c', i));
    cell.run(300);
    const x = m === 5 ? 4 : 5;
    cell.wipe(x, DISK);
    expect(cell.node(x).replica.status(cell.now).isVoter).toBe(false);
    expect(cell.runUntil(() => cell.node(x).replica.status(cell.now).isVoter)).toBe(true);
    cell.run(300);
    // Every replica applied the same admission, and knows the seat's new holder.
    for (const node of cell.nodes.values()) {
      expect(admissions(node.applied)).toEqual([`r${x}:${DISK}`]);
      expect(node.replica.admitted()).toEqual([
        expect.objectContaining({ replica: x, diskId: DISK }),
      ]);
    }
    expect(appliedCommands(cell.node(x).applied)).toEqual(appliedCommands(cell.node(m).applied));
    // Its votes now count: with two other followers down, the master, one follower and the
    // replacement are a majority.
    const others = [1, 2, 3, 4, 5].filter((id) => id !== m && id !== x);
    cell.crash(others[0] ?? 0);
    cell.crash(others[1] ?? 0);
    cell.propose(m, command('after', 1));
    expect(
      cell.runUntil(() => appliedCommands(cell.node(x).applied).includes('after:1'), 5_000),
    ).toBe(true);
  });

  it('does not count before its admission: two voters and a learner choose nothing', () => {
    const cell = new Cell();
    const m = cell.elect();
    cell.propose(m, command('c', 1));
    cell.run(300);
    const [x, y, z] = [1, 2, 3, 4, 5].filter((id) => id !== m);
    cell.crash(y ?? 0);
    cell.crash(z ?? 0);
    cell.wipe(x ?? 0, DISK);
    cell.propose(m, command('stuck', 1));
    cell.run(5_000);
    // Not chosen anywhere, and the learner was not admitted either (that takes a majority too).
    for (const node of cell.nodes.values())
      expect(appliedCommands(node.applied)).not.toContain('stuck:1');
    expect(cell.node(x ?? 0).replica.status(cell.now).isVoter).toBe(false);
    // One founding follower back: the learner is admitted and writes go through again.
    cell.restart(y ?? 0);
    const now = cell.master() ?? m;
    expect(cell.runUntil(() => cell.node(x ?? 0).replica.status(cell.now).isVoter, 20_000)).toBe(
      true,
    );
    cell.propose(cell.master() ?? now, command('later', 1));
    expect(
      cell.runUntil(() => appliedCommands(cell.node(x ?? 0).applied).includes('later:1'), 5_000),
    ).toBe(true);
  });

  it('sends its disk in every vote, and the wire checks it', () => {
    expect(
      validateMessage({ type: 'accepted', ballot: b(1, 1), slot: 1, round: 1, diskId: -1 }),
    ).toBeNull();
    expect(
      validateMessage({ type: 'accepted', ballot: b(1, 1), slot: 1, round: 1, diskId: 2 ** 48 }),
    ).toBeNull();
    // A vote without one comes from a replica older than seats: a founding disk.
    expect(
      validateMessage({ type: 'heartbeat-ack', ballot: b(1, 1), round: 1, commit: 0 }),
    ).toEqual({ type: 'heartbeat-ack', ballot: b(1, 1), round: 1, commit: 0, diskId: 0 });
    expect(
      validateMessage({ type: 'heartbeat-ack', ballot: b(1, 1), round: 1, commit: 0, diskId: 'x' }),
    ).toBeNull();
    const admit = { type: 'admit', stampMs: 1, replica: 3, diskId: DISK };
    expect(
      validateMessage({
        type: 'catch-up',
        entries: [{ slot: 4, value: admit }],
        commit: 4,
        compactedBelow: 1,
      }),
    ).toEqual({
      type: 'catch-up',
      entries: [{ slot: 4, value: admit }],
      commit: 4,
      compactedBelow: 1,
    });
    expect(
      validateMessage({
        type: 'catch-up',
        entries: [{ slot: 4, value: { ...admit, replica: 0 } }],
        commit: 4,
        compactedBelow: 1,
      }),
    ).toBeNull();
  });
});

describe('a candidate', () => {
  it('does not count a replica whose seat changes hands within its Phase 1', () => {
    const r = solo({ id: 1 });
    r.tick(10_000);
    const [prepare] = ofType(drain(r, 10_000).send, 'prepare');
    expect(prepare).toBeDefined();
    const ballot = prepare?.ballot ?? b(0, 0);
    const admit: SlotValue = { type: 'admit', stampMs: 1, replica: 3, diskId: DISK };
    // Replica 2 reports an admission of replica 3's new disk at slot 1; replica 3's promise comes
    // from its old disk (0): it must not make the majority.
    const promise = (
      diskId: number,
      accepted: { slot: number; ballot: Ballot; value: SlotValue }[],
    ) => ({
      type: 'promise' as const,
      ballot,
      slotFirst: 1,
      accepted,
      chosen: [],
      commit: 0,
      diskId,
    });
    r.step(2, promise(0, [{ slot: 1, ballot: b(1, 4), value: admit }]), 10_001);
    r.step(3, promise(0, []), 10_002);
    drain(r, 10_002);
    expect(r.status(10_002).role).toBe('candidate');
    // A promise from a disk that does not hold the seat does not count either.
    r.step(4, promise(DISK, []), 10_003);
    drain(r, 10_003);
    expect(r.status(10_003).role).toBe('candidate');
    r.step(5, promise(0, []), 10_004);
    const ready = drain(r, 10_004);
    expect(r.status(10_004).role).toBe('master');
    // And it carries the reported admission on at its slot.
    expect(ofType(ready.sendEarly, 'accept')).toContainEqual(
      expect.objectContaining({ slot: 1, value: admit }),
    );
  });
});

describe('a snapshot', () => {
  it('brings the admissions at or below its slot; the log tail brings the rest', () => {
    const r = solo({ id: 2, diskId: DISK });
    r.installSnapshot(100, 5, [
      { slot: 40, replica: 2, diskId: DISK },
      { slot: 150, replica: 4, diskId: 9 },
    ]);
    const ready = drain(r, 5);
    expect(ready.persist.admitted).toEqual([{ slot: 40, replica: 2, diskId: DISK }]);
    expect(r.admitted()).toEqual([{ slot: 40, replica: 2, diskId: DISK }]);
    expect(r.status(5)).toMatchObject({ isVoter: true, commit: 100 });
  });
});

/**
 * Slot s is chosen by the master, the soon-wiped replica X and one follower A only (the Accepts
 * to B and C are lost). Then X's disk is replaced, and the master and A crash. A new master
 * elected from {X, B, C} would not know the value at s.
 */
function wipedQuorumScenario(bugs?: PlantedBugs): { cell: Cell; slot: number; value: string } {
  const cell = new Cell(bugs === undefined ? {} : { bugs });
  const m = cell.elect();
  cell.propose(m, command('c', 1));
  cell.run(300);
  const [x, a, bb, c] = [1, 2, 3, 4, 5].filter((id) => id !== m) as [
    number,
    number,
    number,
    number,
  ];
  cell.drop = (msg) => msg.from === m && (msg.to === bb || msg.to === c);
  cell.propose(m, command('precious', 1));
  cell.run(50);
  const entry = cell.node(m).applied.find((e) => appliedCommands([e]).includes('precious:1'));
  if (entry === undefined) throw new Error('the write was not chosen by {m, x, a}');
  cell.wipe(x, DISK);
  cell.crash(m);
  cell.crash(a);
  cell.drop = () => false;
  cell.run(8_000);
  return { cell, slot: entry.slot, value: JSON.stringify(entry.value) };
}

describe('a lost disk in the quorum that chose a value', () => {
  it('cannot help elect a master that forgets it; the value survives', () => {
    const { cell, slot, value } = wipedQuorumScenario();
    // X is a learner, B and C are two of five: no master until a founding replica returns.
    expect(cell.master()).toBeNull();
    const [a] = [...cell.nodes.values()].filter((n) => !n.isUp).map((n) => n.id);
    cell.restart(a ?? 0);
    cell.elect();
    cell.run(2_000);
    const held = chosenAt(cell, slot);
    expect(held.size).toBeGreaterThanOrEqual(3);
    for (const v of held.values()) expect(v).toBe(value);
  });

  it('loses it with the planted bug (a replacement that votes at once)', () => {
    const { cell, slot, value } = wipedQuorumScenario({ voteWithoutAdmission: true });
    expect(cell.master()).not.toBeNull();
    cell.run(2_000);
    const held = [...chosenAt(cell, slot).values()];
    expect(held.length).toBeGreaterThan(0);
    expect(held.some((v) => v !== value)).toBe(true);
  });
});
