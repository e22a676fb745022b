// Proves the master's graceful resignation (Replica.resign): the master stops serving at once,
// tells every acceptor to drop the lease it granted, and names a successor that runs at once; a
// resign from any ballot but the promised one changes nothing; and on a five-replica cell the
// successor is master long before the old lease would have run out, with nothing chosen lost.
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import { validateMessage } from '../../src/paxos/validate.ts';
import { appliedCommands, Cell, command, drain, ofType, solo } from './harness.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });

describe('resign', () => {
  it('is refused by a replica that is not master', () => {
    const r = solo({ id: 2 });
    expect(r.resign(5)).toBeNull();
    expect(ofType(drain(r, 5).send, 'resign')).toEqual([]);
  });

  it('makes the master stop serving, tell every peer, and name the most up-to-date peer', () => {
    const cell = new Cell();
    const m = cell.elect();
    for (let i = 1; i <= 5; i++) cell.propose(m, command('c', i));
    cell.run(300);
    const master = cell.node(m).replica;
    expect(master.canServeReads(cell.now)).toBe(true);
    // Peers report their commit in heartbeat acks; every peer is level here, so the first wins.
    const successor = master.resign(cell.now);
    expect(successor).not.toBeNull();
    expect(successor).not.toBe(m);
    expect(master.status(cell.now).role).toBe('follower');
    expect(master.canServeReads(cell.now)).toBe(false);
    const ready = drain(master, cell.now);
    const resigns = ofType(ready.send, 'resign');
    expect(resigns.map((e) => e.to).sort()).toEqual([1, 2, 3, 4, 5].filter((id) => id !== m));
    for (const e of resigns)
      expect(e).toMatchObject({ ballot: master.status(cell.now).ballot, successor });
  });

  it('names a peer that acked it lately over one that went quiet, even at the same commit', () => {
    const cell = new Cell();
    const m = cell.elect();
    const peers = [1, 2, 3, 4, 5].filter((id) => id !== m);
    const quiet = peers[0] ?? 0;
    cell.propose(m, command('c', 1));
    cell.run(500); // every peer has acked a heartbeat carrying the same commit
    cell.crash(quiet);
    cell.run(2_000); // past the election timeout (1500): the crashed peer has not acked since
    expect(cell.node(m).replica.resign(cell.now)).toBe(peers[1]);
  });

  it('names a peer that has acked it for a whole lease over one that restarted lately', () => {
    const cell = new Cell();
    const m = cell.elect();
    const peers = [1, 2, 3, 4, 5].filter((id) => id !== m);
    const restarted = peers[0] ?? 0;
    cell.propose(m, command('c', 1));
    cell.run(500);
    cell.crash(restarted);
    cell.run(1_700); // a gap of more than an election timeout (1500) in its acks
    cell.restart(restarted);
    cell.run(500); // acking again, caught up, but for less than a lease (1000): in its restart wait
    expect(cell.node(m).replica.resign(cell.now)).toBe(peers[1]);
  });

  it('names a peer past its restart wait even when it has been master for less than a lease', () => {
    // The failure CI met: the master crashes, a new one is elected, the old one restarts at once
    // and acks the new master, which resigns before it has seen anyone ack for a whole lease.
    // Judged by unbroken acks alone every peer looked the same and the first (the restarted one,
    // in its restart wait) was named; its heartbeat acks now say how long its wait has to run.
    const cell = new Cell();
    const first = cell.elect();
    cell.propose(first, command('c', 1));
    cell.run(300);
    cell.crash(first);
    expect(cell.runUntil(() => cell.master() !== null && cell.master() !== first)).toBe(true);
    const m = cell.elect();
    const electedAt = cell.now;
    cell.restart(first);
    cell.run(400); // it acks the new master's heartbeats, caught up, still in its restart wait
    expect(cell.now - electedAt).toBeLessThan(1_000); // master for less than a lease (1000)
    const peers = [1, 2, 3, 4, 5].filter((id) => id !== m);
    const successor = cell.node(m).replica.resign(cell.now);
    expect(successor).not.toBe(first);
    // With this scenario the restarted replica is the first peer unless it was replica 5.
    if (peers[0] === first) expect(successor).toBe(peers[1]);
  });

  it('makes a successor that is still in its restart wait run the moment the wait ends', () => {
    // Restarted at 0 with durable state: it promises nobody, itself included, until 0 + lease.
    const r = solo({ id: 3, now: 0, durable: { isFresh: false, promised: b(1, 1) } });
    r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 100);
    drain(r, 100);
    r.step(1, { type: 'resign', ballot: b(1, 1), successor: 3 }, 150);
    expect(ofType(drain(r, 150).send, 'prepare')).toEqual([]);
    r.tick(999);
    expect(ofType(drain(r, 999).send, 'prepare')).toEqual([]);
    r.tick(1_000); // not an election timeout (1500) and more later
    expect(ofType(drain(r, 1_000).send, 'prepare')).toHaveLength(4);
  });

  it('lets an acceptor promise a new candidate at once once the master that holds its lease resigns', () => {
    const r = solo({ id: 2 });
    r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 100);
    drain(r, 100);
    // A resign from another ballot (stale, or not from that ballot's master) changes nothing.
    r.step(1, { type: 'resign', ballot: b(0, 1), successor: 3 }, 200);
    r.step(3, { type: 'resign', ballot: b(1, 1), successor: 3 }, 200);
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 200);
    expect(ofType(drain(r, 200).send, 'reject')).toMatchObject([{ to: 3, reason: 'lease-held' }]);
    // The real thing: the lease granted to 1 is dropped, 3 gets its promise well inside it.
    r.step(1, { type: 'resign', ballot: b(1, 1), successor: 3 }, 300);
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 300);
    const ready = drain(r, 300);
    expect(ready.persist.promised).toEqual(b(2, 3));
    expect(ofType(ready.send, 'promise')).toHaveLength(1);
  });

  it('makes the named successor run for master at once, and nobody else', () => {
    const successor = solo({ id: 3 });
    const other = solo({ id: 4 });
    for (const r of [successor, other]) {
      r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 100);
      drain(r, 100);
      r.step(1, { type: 'resign', ballot: b(1, 1), successor: 3 }, 150);
    }
    const running = drain(successor, 150);
    expect(running.persist.promised).toEqual(b(1, 3)); // the next ballot above 1.1
    expect(ofType(running.send, 'prepare')).toHaveLength(4);
    expect(successor.status(150).role).toBe('candidate');
    const quiet = drain(other, 150);
    expect(ofType(quiet.send, 'prepare')).toEqual([]);
    expect(other.status(150).masterId).toBeNull();
  });

  it('hands over a five-replica cell well inside the old lease, keeping every chosen command', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const cell = new Cell({ seed });
      const first = cell.elect();
      for (let i = 1; i <= 20; i++) cell.propose(first, command('a', i));
      cell.run(300);
      const resignedAt = cell.now;
      const successor = cell.node(first).replica.resign(cell.now);
      cell.flush(first);
      // testConfig: lease 1000 ms, election timeout 1500 + up to 300 jitter. A handover that
      // waited for either would take over a second.
      expect(cell.runUntil(() => cell.master() !== null, 2_000, 5)).toBe(true);
      const second = cell.master();
      expect(second).toBe(successor);
      expect(cell.now - resignedAt).toBeLessThan(100);
      expect(
        cell.runUntil(() => cell.node(second ?? 0).replica.canServeReads(cell.now), 2_000, 5),
      ).toBe(true);
      cell.propose(second ?? 0, command('a', 21));
      cell.run(300);
      const expected = Array.from({ length: 21 }, (_, i) => `a:${i + 1}`);
      for (const id of cell.nodes.keys())
        expect(appliedCommands(cell.node(id).applied)).toEqual(expected);
    }
  });

  it('validates the resign message from the wire', () => {
    expect(
      validateMessage({ type: 'resign', ballot: { round: 2, replica: 1 }, successor: 3 }),
    ).toEqual({
      type: 'resign',
      ballot: { round: 2, replica: 1 },
      successor: 3,
    });
    for (const successor of [0, -1, 1.5, 256, '3', null]) {
      expect(
        validateMessage({ type: 'resign', ballot: { round: 2, replica: 1 }, successor }),
      ).toBeNull();
    }
    expect(validateMessage({ type: 'resign', ballot: 7, successor: 3 })).toBeNull();
  });
});
