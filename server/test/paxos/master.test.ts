// Proves the proposer's rules on a single replica fed promises and acks by hand: Phase 1
// re-proposes the highest-ballot value per slot (a value reported chosen wins outright), fills
// holes with no-ops and adds one no-op of its own ballot before serving reads; Phase 2 batches,
// respects the window, counts its own vote only after advance(), refuses duplicates; the master
// lease follows the formula and the master steps down on a higher ballot.
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import type { AcceptedEntry, ChosenEntry, SlotValue } from '../../src/paxos/messages.ts';
import type { Config } from '../../src/paxos/ports.ts';
import type { Replica } from '../../src/paxos/replica.ts';
import { batchValue, command, drain, ofType, solo } from './harness.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });
const noop = (stampMs: number): SlotValue => ({ type: 'noop', stampMs });
const T = 10_000;
const MASTER_BALLOT = b(6, 1);

interface Report {
  readonly accepted?: AcceptedEntry[];
  readonly chosen?: ChosenEntry[];
  readonly commit?: number;
}

/** Replica 1 (restarted, promised 5.5) runs at T and gets promises from 2 and 3. */
function elect(reports: { 2?: Report; 3?: Report } = {}, config: Partial<Config> = {}): Replica {
  const r = solo({ id: 1, durable: { isFresh: false, promised: b(5, 5) }, config });
  r.tick(T);
  const prepare = drain(r, T);
  expect(prepare.persist.promised).toEqual(MASTER_BALLOT);
  expect(ofType(prepare.send, 'prepare')).toHaveLength(4);
  for (const from of [2, 3] as const) {
    const report = reports[from] ?? {};
    r.step(
      from,
      {
        type: 'promise',
        ballot: MASTER_BALLOT,
        slotFirst: 1,
        accepted: report.accepted ?? [],
        chosen: report.chosen ?? [],
        commit: report.commit ?? 0,
        diskId: 0,
      },
      T,
    );
  }
  expect(r.status(T).role).toBe('master');
  return r;
}

/** Ack every Accept in `ready` from replicas 2 and 3, then drain until quiet. */
function ackAll(
  r: Replica,
  accepts: readonly { slot: number; round: number }[],
  now: number,
): ChosenEntry[] {
  const applied: ChosenEntry[] = [];
  for (const a of accepts) {
    for (const from of [2, 3])
      r.step(
        from,
        { type: 'accepted', ballot: MASTER_BALLOT, slot: a.slot, round: a.round, diskId: 0 },
        now,
      );
  }
  while (r.hasReady()) applied.push(...drain(r, now).commit);
  return applied;
}

/** A master whose Phase 1 no-op is chosen and applied. */
function steadyMaster(config: Partial<Config> = {}): Replica {
  const r = elect({}, config);
  const first = drain(r, T);
  ackAll(r, ofType(first.sendEarly, 'accept'), T + 1);
  expect(r.canServeReads(T + 1)).toBe(true);
  return r;
}

describe('Phase 1 at a new master', () => {
  it('re-proposes the highest-ballot value per slot and fills holes with no-ops', () => {
    const v1low = batchValue(1, command('a', 1));
    const v1high = batchValue(2, command('a', 2));
    const v3 = batchValue(3, command('b', 1));
    const r = elect({
      2: {
        accepted: [
          { slot: 1, ballot: b(3, 2), value: v1low },
          { slot: 3, ballot: b(4, 3), value: v3 },
        ],
      },
      3: { accepted: [{ slot: 1, ballot: b(5, 5), value: v1high }] },
    });
    const ready = drain(r, T);
    const accepts = ofType(ready.sendEarly, 'accept').filter((a) => a.to === 2);
    expect(accepts.map((a) => [a.slot, a.value])).toEqual([
      [1, v1high],
      [2, noop(T)],
      [3, v3],
      [4, noop(T)],
    ]);
    expect(accepts.every((a) => a.ballot.round === 6 && a.ballot.replica === 1)).toBe(true);
    // The master's own acceptances go to disk in the same turn the Accepts leave.
    expect(ready.persist.accepted.map((a) => a.slot)).toEqual([1, 2, 3, 4]);
  });

  it('adopts a value reported chosen instead of proposing at its slot', () => {
    const chosen = batchValue(1, command('a', 1));
    const other = batchValue(2, command('z', 9));
    const r = elect({
      2: { chosen: [{ slot: 1, value: chosen }], commit: 0 },
      3: { accepted: [{ slot: 1, ballot: b(5, 5), value: other }] },
    });
    const ready = drain(r, T);
    expect(ready.persist.chosen).toEqual([{ slot: 1, value: chosen }]);
    expect(ready.commit).toEqual([{ slot: 1, value: chosen }]);
    expect(ofType(ready.sendEarly, 'accept').map((a) => a.slot)).not.toContain(1);
  });

  it('serves reads only once its own no-op is applied and its lease is valid', () => {
    const r = elect();
    const ready = drain(r, T);
    const accepts = ofType(ready.sendEarly, 'accept');
    expect(r.canServeReads(T)).toBe(false);
    for (const a of accepts)
      r.step(
        2,
        { type: 'accepted', ballot: MASTER_BALLOT, slot: a.slot, round: a.round, diskId: 0 },
        T + 1,
      );
    // Two votes (self and 2) of five: not chosen, no lease yet.
    expect(r.canServeReads(T + 1)).toBe(false);
    ackAll(r, accepts, T + 2);
    expect(r.status(T + 2).applied).toBe(1);
    expect(r.canServeReads(T + 2)).toBe(true);
  });
});

describe('candidacy', () => {
  it('learns a higher ballot from a rejection, backs off, and next runs above it', () => {
    const r = solo({ id: 1, durable: { isFresh: false, promised: b(5, 5) } });
    r.tick(T);
    drain(r, T);
    r.step(
      2,
      { type: 'reject', ballot: b(6, 1), promised: b(7, 3), reason: 'stale-ballot' },
      T + 1,
    );
    expect(r.status(T + 1).role).toBe('follower');
    // It gives its ballot up to every peer (withdraw.test.ts), then stays quiet.
    expect(ofType(drain(r, T + 1).send, 'withdraw')).toHaveLength(4);
    // Randomized backoff: not before a full election timeout.
    r.tick(T + 1400);
    expect(r.status(T + 1400).role).toBe('follower');
    expect(r.hasReady()).toBe(false);
    r.tick(T + 1 + 1500 + 300);
    expect(r.status(T + 1801)).toMatchObject({ role: 'candidate', ballot: b(8, 1) });
  });

  it('resends Prepares to replicas that have not promised, within the same ballot', () => {
    const r = solo({ id: 1, durable: { isFresh: false, promised: b(5, 5) } });
    r.tick(T);
    drain(r, T);
    r.step(
      2,
      {
        type: 'promise',
        ballot: b(6, 1),
        slotFirst: 1,
        accepted: [],
        chosen: [],
        commit: 0,
        diskId: 0,
      },
      T + 1,
    );
    r.tick(T + 200);
    const again = ofType(drain(r, T + 200).send, 'prepare');
    expect(again.map((p) => p.to)).toEqual([3, 4, 5]);
    expect(again.every((p) => p.ballot.round === 6 && p.ballot.replica === 1)).toBe(true);
  });
});

describe('stamps', () => {
  it('go on from the state machine time when the master clock is behind it, and follow the clock otherwise', () => {
    // A master whose clock is ahead of the machine's time stamps with its clock, as before.
    const ahead = steadyMaster();
    ahead.noteMachineTime(T - 5_000);
    ahead.propose(command('c', 1), T + 50);
    const first = ofType(drain(ahead, T + 50).sendEarly, 'accept')[0];
    expect(first?.value.stampMs).toBe(T + 50);
    expect(ahead.stampNow(T + 50)).toBe(T + 50);
    // One whose clock is 60 s behind what an earlier master stamped (the machine's time, as the
    // wiring reports it) stamps from there on: time, and lock-delays with it, keep moving.
    const behind = steadyMaster();
    behind.noteMachineTime(T + 60_000);
    behind.propose(command('c', 1), T + 50);
    const second = ofType(drain(behind, T + 50).sendEarly, 'accept')[0];
    expect(second?.value.stampMs).toBe(T + 60_000 + 49); // reported at T + 1, its last time
    expect(behind.stampNow(T + 1_050)).toBe(T + 61_049); // and it advances with the clock
    // A master takes the offset over when it is elected, from the time reported before.
    const elected = solo({ id: 1, durable: { isFresh: false, promised: b(5, 5) } });
    elected.noteMachineTime(T + 30_000);
    elected.tick(T);
    drain(elected, T);
    for (const from of [2, 3])
      elected.step(
        from,
        {
          type: 'promise',
          ballot: MASTER_BALLOT,
          slotFirst: 1,
          accepted: [],
          chosen: [],
          commit: 0,
          diskId: 0,
        },
        T,
      );
    const barrier = ofType(drain(elected, T).sendEarly, 'accept')[0];
    expect(barrier?.value).toEqual(noop(T + 30_000));
  });
});

describe('a slot said chosen that no live peer can hand over', () => {
  it('makes the master run Phase 1 again and re-propose the value a quorum reports there', () => {
    // Replica 2 promised with commit 3 but, its chosen report bounded to 2 slots, reported the
    // values of slots 1 and 2 only; 3 reported slot 3 as accepted. Slot 3 is chosen (2 says so)
    // and not ours to propose: the master asks for it by catch-up. Then 2 loses its disk (it
    // answers with commit 0) and 3 and 4 only know through slot 2: nobody can hand slot 3 over.
    // The simulator's seed 4597 (a master that never served) reduced to its core.
    const v = (n: number): SlotValue => batchValue(1_000 + n, command('c', n));
    const r = elect(
      {
        2: {
          commit: 3,
          chosen: [
            { slot: 1, value: v(1) },
            { slot: 2, value: v(2) },
          ],
        },
        3: { commit: 2, accepted: [{ slot: 3, ballot: b(5, 5), value: v(3) }] },
      },
      { catchUpBatchSlots: 2 },
    );
    let now = T;
    let phase1Again: Ballot | null = null;
    while (now < T + 5_000 && phase1Again === null) {
      now += 50;
      r.tick(now);
      while (r.hasReady()) {
        const ready = drain(r, now);
        for (const hb of ofType(ready.send, 'heartbeat'))
          if (hb.to === 3 || hb.to === 4)
            r.step(
              hb.to,
              { type: 'heartbeat-ack', ballot: hb.ballot, round: hb.round, commit: 2, diskId: 0 },
              now,
            );
        for (const request of ofType(ready.send, 'catch-up-request'))
          r.step(
            request.to,
            { type: 'catch-up', entries: [], commit: request.to === 2 ? 0 : 2, compactedBelow: 1 },
            now,
          );
        const prepare = ofType(ready.send, 'prepare')[0];
        if (prepare !== undefined) phase1Again = prepare.ballot;
      }
      // The lease holds throughout: it is not a lapse that makes it step down.
      if (phase1Again === null) expect(r.status(now).role).toBe('master');
    }
    expect(r.status(now).commit).toBe(2);
    // An election timeout is 1500 ms here: it waits two without progress before it gives up.
    expect(now - T).toBeGreaterThan(3_000);
    expect(phase1Again).toEqual(b(7, 1));
    for (const from of [3, 4])
      r.step(
        from,
        {
          type: 'promise',
          ballot: b(7, 1),
          slotFirst: 3,
          accepted: [{ slot: 3, ballot: b(5, 5), value: v(3) }],
          chosen: [],
          commit: 2,
          diskId: 0,
        },
        now,
      );
    expect(r.status(now).role).toBe('master');
    const accepts = ofType(drain(r, now).sendEarly, 'accept').filter((a) => a.to === 3);
    expect(accepts.find((a) => a.slot === 3)?.value).toEqual(v(3));
  });
});

describe('Phase 2 at the master', () => {
  it('batches commands proposed in one turn into one slot, stamped with the proposing time', () => {
    const r = steadyMaster();
    for (let seq = 1; seq <= 3; seq++)
      expect(r.propose(command('c', seq), T + 50)).toEqual({ ok: true });
    const accepts = ofType(drain(r, T + 50).sendEarly, 'accept').filter((a) => a.to === 2);
    expect(accepts).toHaveLength(1);
    expect(accepts[0]?.value).toEqual(
      batchValue(T + 50, command('c', 1), command('c', 2), command('c', 3)),
    );
  });

  it('gives each command its own slot when maxBatchCommands is 1', () => {
    const r = steadyMaster({ maxBatchCommands: 1 });
    for (let seq = 1; seq <= 3; seq++) r.propose(command('c', seq), T + 50);
    const accepts = ofType(drain(r, T + 50).sendEarly, 'accept').filter((a) => a.to === 2);
    expect(accepts.map((a) => a.slot)).toEqual([2, 3, 4]);
  });

  it('keeps at most windowSlots slots in flight and batches the rest once a slot is chosen', () => {
    const r = steadyMaster({ windowSlots: 2, maxBatchCommands: 1 });
    for (let seq = 1; seq <= 5; seq++) r.propose(command('c', seq), T + 50);
    const first = ofType(drain(r, T + 50).sendEarly, 'accept').filter((a) => a.to === 2);
    expect(first.map((a) => a.slot)).toEqual([2, 3]);
    expect(r.hasReady()).toBe(false);
    for (const from of [2, 3])
      r.step(
        from,
        { type: 'accepted', ballot: MASTER_BALLOT, slot: 2, round: 1, diskId: 0 },
        T + 60,
      );
    // Slot 2 chosen opens one place in the window: exactly one more slot goes out.
    const next = ofType(drain(r, T + 60).sendEarly, 'accept').filter((a) => a.to === 2);
    expect(next.map((a) => a.slot)).toEqual([4]);
    expect(next[0]?.value).toEqual(batchValue(T + 60, command('c', 3)));
  });

  it('counts its own acceptance only after advance()', () => {
    const r = steadyMaster();
    r.propose(command('c', 1), T + 50);
    const ready = r.ready();
    const [accept] = ofType(ready.sendEarly, 'accept');
    expect(accept).toBeDefined();
    // Two peers accept before the master's own persist is advanced: only 2 of 3 votes.
    for (const from of [2, 3])
      r.step(
        from,
        { type: 'accepted', ballot: MASTER_BALLOT, slot: 2, round: 1, diskId: 0 },
        T + 51,
      );
    expect(r.status(T + 51).commit).toBe(1);
    r.advance(ready, T + 52);
    expect(r.status(T + 52).commit).toBe(2);
  });

  it('refuses a command identity already pending, and accepts it again once chosen', () => {
    const r = steadyMaster();
    expect(r.propose(command('c', 1), T + 50)).toEqual({ ok: true });
    expect(r.propose(command('c', 1), T + 50)).toEqual({
      ok: false,
      reason: 'duplicate',
      masterId: 1,
    });
    const accepts = ofType(drain(r, T + 50).sendEarly, 'accept');
    expect(r.propose(command('c', 1), T + 51)).toMatchObject({ ok: false, reason: 'duplicate' });
    ackAll(r, accepts, T + 52);
    expect(r.propose(command('c', 1), T + 53)).toEqual({ ok: true });
  });

  it('refuses proposals when not master, naming the master it follows', () => {
    const r = solo({ id: 2 });
    expect(r.propose(command('c', 1), 5)).toEqual({
      ok: false,
      reason: 'not-master',
      masterId: null,
    });
    r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 5);
    expect(r.propose(command('c', 1), 6)).toEqual({ ok: false, reason: 'not-master', masterId: 1 });
  });
});

describe('the master lease', () => {
  it('runs to sendTime(round) + leaseMs * (1 - rho) / (1 + rho) once a majority acked the round', () => {
    const r = steadyMaster();
    // Round 1 was sent at T (the Phase 1 no-op); the acks came at T + 1.
    const until = T + (1000 * (1 - 0.01)) / (1 + 0.01);
    expect(r.status(T + 1).leaseUntil).toBeCloseTo(until, 9);
    expect(r.canServeReads(until - 0.001)).toBe(true);
    expect(r.canServeReads(until)).toBe(false);
  });

  it('renews the lease with heartbeat rounds acked by a majority', () => {
    const r = steadyMaster();
    r.tick(T + 100);
    const heartbeats = ofType(drain(r, T + 100).send, 'heartbeat');
    expect(heartbeats).toHaveLength(4);
    const round = heartbeats[0]?.round ?? -1;
    r.step(
      2,
      { type: 'heartbeat-ack', ballot: MASTER_BALLOT, round, commit: 1, diskId: 0 },
      T + 120,
    );
    expect(r.status(T + 120).leaseUntil).toBeCloseTo(T + (1000 * 0.99) / 1.01, 9);
    r.step(
      3,
      { type: 'heartbeat-ack', ballot: MASTER_BALLOT, round, commit: 1, diskId: 0 },
      T + 130,
    );
    expect(r.status(T + 130).leaseUntil).toBeCloseTo(T + 100 + (1000 * 0.99) / 1.01, 9);
  });

  it('stops serving reads when the lease lapses and steps down an election timeout later', () => {
    const r = steadyMaster();
    const lapse = T + (1000 * 0.99) / 1.01;
    r.tick(lapse + 1);
    expect(r.status(lapse + 1).role).toBe('master');
    expect(r.canServeReads(lapse + 1)).toBe(false);
    r.tick(lapse + 1500 + 1);
    expect(r.status(lapse + 1501).role).toBe('follower');
  });

  it('carries on after a rejection with a higher ballot while it has no lease (no duel)', () => {
    const r = steadyMaster();
    const later = T + 1200; // lease lapsed at about T + 980
    r.step(
      4,
      { type: 'reject', ballot: MASTER_BALLOT, promised: b(9, 4), reason: 'stale-ballot' },
      later,
    );
    expect(r.status(later).role).toBe('master');
    // It still cannot serve reads, and an election timeout after the lapse it steps down.
    expect(r.canServeReads(later)).toBe(false);
    r.tick(T + 980 + 1501);
    expect(r.status(T + 2481).role).toBe('follower');
  });

  it('steps down when a master of a higher ballot contacts it', () => {
    const r = steadyMaster();
    r.step(4, { type: 'heartbeat', ballot: b(9, 4), commit: 1, round: 1 }, T + 2000);
    const status = r.status(T + 2000);
    expect(status).toMatchObject({ role: 'follower', masterId: 4, ballot: b(9, 4) });
    expect(r.propose(command('c', 1), T + 2000)).toMatchObject({
      ok: false,
      reason: 'not-master',
      masterId: 4,
    });
  });

  it('a replica that refuses a stale master holds off its own candidacy while it hears it', () => {
    const r = solo({ id: 2, durable: { promised: b(9, 3) } });
    for (let t = 100; t <= 5000; t += 100) {
      r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: t }, t);
      r.tick(t);
      expect(r.status(t).role).toBe('follower');
    }
    expect(ofType(drain(r, 5000).send, 'reject').length).toBeGreaterThan(0);
  });

  it('re-asserts with a ballot above a higher one it sees while its lease holds', () => {
    const r = steadyMaster();
    r.step(
      4,
      { type: 'reject', ballot: MASTER_BALLOT, promised: b(9, 4), reason: 'stale-ballot' },
      T + 10,
    );
    const status = r.status(T + 10);
    expect(status.role).toBe('candidate');
    expect(status.ballot).toEqual(b(10, 1));
    expect(ofType(drain(r, T + 10).send, 'prepare')).toHaveLength(4);
  });
});
