// The client service, driven directly with time as an argument: a follower redirects, the
// master answers a write only once its entry is applied, holds reads until it can serve them
// under its lease (or times them out with NO_QUORUM), expires a session only after a full
// lease without KeepAlives, answers a retried CreateSession with the same identity, and
// reports missed events.
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, type ClientFrame, type MachineCommand } from '@paxlock/shared';
import { StateMachine } from '../../src/machine/index.ts';
import type { Command } from '../../src/paxos/messages.ts';
import { silentLogger } from '../../src/paxos/ports.ts';
import type { ProposeResult } from '../../src/paxos/replica.ts';
import type { Status } from '../../src/paxos/ready.ts';
import { CellService, type Outgoing } from '../../src/sessions/service.ts';

class FakeReplica {
  role: Status['role'] = 'follower';
  masterId: number | null = 2;
  isLeaseValid = false;
  isVoter = true;
  readonly proposed: Command[] = [];
  propose(command: Command): ProposeResult {
    this.proposed.push(command);
    return { ok: true };
  }
  canServeReads(): boolean {
    return this.role === 'master' && this.isLeaseValid;
  }
  machineTimeMs = 0;
  noteMachineTime(ms: number): void {
    this.machineTimeMs = ms;
  }
  stampNow(now: number): number {
    return now;
  }
  status(): Status {
    return { id: 1, role: this.role, ballot: { round: 3, replica: this.masterId ?? 0 }, masterId: this.masterId, leaseUntil: null, commit: 0, applied: 0, isVoter: this.isVoter, diskId: this.isVoter ? 0 : 77 };
  }
}

function setup(maxOutstandingRequests?: number): { service: CellService; replica: FakeReplica; machine: StateMachine; slot: { n: number } } {
  const replica = new FakeReplica();
  const machine = StateMachine.createInMemory({ cell: 'c' });
  const service = new CellService(
    {
      id: 1,
      clientAddresses: new Map([[1, 'r1:1'], [2, 'r2:2']]),
      replica,
      machine: () => machine,
      logger: silentLogger,
      bootNonce: 'boot',
      requestTimeoutMs: 1_000,
      digestEveryMs: 0,
      onDiverged: () => {
        throw new Error('diverged');
      },
      ...(maxOutstandingRequests === undefined ? {} : { maxOutstandingRequests }),
    },
    0,
  );
  return { service, replica, machine, slot: { n: 0 } };
}

/** Makes this replica a master that serves, at time `now`. */
function becomeMaster(s: ReturnType<typeof setup>, now: number): void {
  s.replica.role = 'master';
  s.replica.masterId = 1;
  s.replica.isLeaseValid = true;
  s.service.afterTurn(now);
}

/** Plays the core: every proposed command is chosen in its own slot and applied. */
function chooseAll(s: ReturnType<typeof setup>, commands: Command[], now: number): void {
  for (const command of commands) {
    s.slot.n += 1;
    s.service.apply({ slot: s.slot.n, value: { type: 'batch', stampMs: now, commands: [command] } }, now);
  }
}

function commandFrame(id: number, command: MachineCommand): ClientFrame {
  return { type: 'command', id, command };
}

function createSession(s: ReturnType<typeof setup>, now: number, leaseMs = 1_000): number {
  s.service.onClientFrame(7, commandFrame(1, { type: 'CreateSession', clientName: 'x', leaseMs, nonce: 'n1' }), now);
  chooseAll(s, s.service.takeProposals(now), now);
  const [out] = s.service.takeOutbox();
  if (out?.frame.type !== 'result' || out.frame.result.type !== 'session-created') throw new Error('no session');
  return out.frame.result.session;
}

describe('CellService', () => {
  it('redirects a follower’s clients to the master’s address, or to nobody', () => {
    const s = setup();
    s.service.afterTurn(0);
    s.service.onClientFrame(7, commandFrame(1, { type: 'CreateSession', clientName: 'x', leaseMs: 5_000 }), 0);
    expect(s.service.takeOutbox()).toEqual([{ to: 7, frame: { type: 'redirect', id: 1, master: 'r2:2', epoch: { round: 3, replica: 2 } } }]);
    s.replica.masterId = null;
    s.service.afterTurn(1);
    s.service.onClientFrame(7, { type: 'query', id: 2, query: { type: 'ListSessions' } }, 1);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ type: 'redirect', master: null });
  });

  it('answers a write only after its entry is applied', () => {
    const s = setup();
    becomeMaster(s, 0);
    s.service.onClientFrame(7, commandFrame(1, { type: 'CreateSession', clientName: 'x', leaseMs: 5_000 }), 0);
    expect(s.service.takeOutbox()).toEqual([]);
    const proposals = s.service.takeProposals(0);
    expect(proposals).toHaveLength(1);
    chooseAll(s, proposals, 0);
    const out: Outgoing[] = s.service.takeOutbox();
    expect(out).toMatchObject([{ to: 7, frame: { type: 'result', id: 1, slot: 1, result: { type: 'session-created' } } }]);
  });

  it('answers BUSY past its limit of unanswered requests, queueing nothing, and takes requests again once answered', () => {
    const s = setup(3);
    becomeMaster(s, 0);
    const create = (id: number): ClientFrame => commandFrame(id, { type: 'CreateSession', clientName: 'x', leaseMs: 5_000, nonce: `n${String(id)}` });
    s.service.onClientFrame(7, create(1), 0);
    s.service.onClientFrame(7, create(2), 0);
    s.replica.isLeaseValid = false; // a read waits for the lease, so it is held too
    s.service.onClientFrame(8, { type: 'query', id: 3, query: { type: 'ListSessions' } }, 0);
    s.service.onClientFrame(9, create(4), 0);
    s.service.onClientFrame(9, { type: 'query', id: 5, query: { type: 'ListSessions' } }, 0);
    expect(s.service.takeOutbox()).toMatchObject([
      { to: 9, frame: { type: 'error', id: 4, code: 'BUSY' } },
      { to: 9, frame: { type: 'error', id: 5, code: 'BUSY' } },
    ]);
    // A retry of a request already held is not a new one: it is taken.
    s.service.onClientFrame(7, { ...create(2), id: 6 }, 0);
    expect(s.service.takeOutbox()).toEqual([]);
    const proposals = s.service.takeProposals(0);
    expect(proposals.map((p) => p.clientId)).toEqual(['create-nonce:n1', 'create-nonce:n2', 'create-nonce:n2']);
    chooseAll(s, proposals.slice(0, 2), 0);
    s.replica.isLeaseValid = true;
    s.service.afterTurn(1);
    expect(s.service.takeOutbox().map((o) => o.frame.type)).toEqual(['result', 'result', 'query-result']);
    s.service.onClientFrame(9, create(7), 1);
    expect(s.service.takeOutbox()).toEqual([]);
    expect(s.service.takeProposals(0)).toHaveLength(1);
  });

  it('gives a retried CreateSession with the same nonce the same identity to the core', () => {
    const s = setup();
    becomeMaster(s, 0);
    const create = commandFrame(1, { type: 'CreateSession', clientName: 'x', leaseMs: 5_000, nonce: 'abc' });
    s.service.onClientFrame(7, create, 0);
    s.service.onClientFrame(8, { ...create, id: 2 }, 0);
    const [a, b] = s.service.takeProposals(0);
    expect(a?.clientId).toBe(b?.clientId);
    expect(a?.seq).toBe(b?.seq);
  });

  it('holds a read until the lease allows it, and times it out with NO_QUORUM otherwise', () => {
    const s = setup();
    becomeMaster(s, 0);
    s.replica.isLeaseValid = false;
    s.service.onClientFrame(7, { type: 'query', id: 1, query: { type: 'ListSessions' } }, 10);
    expect(s.service.takeOutbox()).toEqual([]);
    s.replica.isLeaseValid = true;
    s.service.afterTurn(20);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ type: 'query-result', id: 1, result: { type: 'sessions' } });

    s.replica.isLeaseValid = false;
    s.service.onClientFrame(7, { type: 'query', id: 2, query: { type: 'ListSessions' } }, 30);
    s.service.afterTurn(1_029);
    expect(s.service.takeOutbox()).toEqual([]);
    s.service.afterTurn(1_030);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ type: 'error', id: 2, code: 'NO_QUORUM' });
  });

  it('proposes ExpireSession only after a full lease without KeepAlives', () => {
    const s = setup();
    becomeMaster(s, 0);
    const session = createSession(s, 0, 1_000);
    for (let t = 500; t <= 3_000; t += 500) {
      s.service.onClientFrame(7, { type: 'keep-alive', id: t, session, eventSeqSeen: 0 }, t);
      s.service.afterTurn(t);
    }
    const expiries = () =>
      s.replica.proposed.filter((c) => {
        const d = decodeFrame(c.payload);
        return d.ok && (d.value as { type?: string }).type === 'ExpireSession';
      });
    expect(expiries()).toHaveLength(0);
    s.service.afterTurn(3_999);
    expect(expiries()).toHaveLength(0);
    s.service.afterTurn(4_000);
    expect(expiries()).toHaveLength(1);
    expect(decodeFrame(expiries()[0]!.payload)).toEqual({ ok: true, value: { type: 'ExpireSession', session } });
  });

  it('neither acknowledges KeepAlives nor expires sessions while its lease has lapsed', () => {
    const s = setup();
    becomeMaster(s, 0);
    const session = createSession(s, 0, 1_000);
    s.replica.isLeaseValid = false;
    s.service.onClientFrame(7, { type: 'keep-alive', id: 3, session, eventSeqSeen: 0 }, 100);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ type: 'error', id: 3, code: 'NO_QUORUM' });
    s.service.afterTurn(5_000);
    expect(s.replica.proposed.filter((c) => c.clientId.startsWith('expire:'))).toEqual([]);
    s.replica.isLeaseValid = true;
    s.service.afterTurn(5_001);
    expect(s.replica.proposed.filter((c) => c.clientId.startsWith('expire:'))).toHaveLength(1);
  });

  it('tells a KeepAlive whether events were missed', () => {
    const s = setup();
    becomeMaster(s, 0);
    const session = createSession(s, 0, 5_000);
    s.service.onClientFrame(7, { type: 'keep-alive', id: 9, session, eventSeqSeen: 0 }, 1);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ type: 'keep-alive-ack', eventSeq: 0, isEventGap: false });
    s.service.onClientFrame(7, { type: 'keep-alive', id: 10, session, eventSeqSeen: 4 }, 2);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ type: 'keep-alive-ack', eventSeq: 0, isEventGap: true });
  });

  it('hands the machine a null for runtime digest commands, keeping results aligned', () => {
    const s = setup();
    becomeMaster(s, 0);
    s.service.onClientFrame(7, commandFrame(1, { type: 'CreateSession', clientName: 'x', leaseMs: 5_000 }), 0);
    const [create] = s.service.takeProposals(0);
    const mark: Command = { clientId: 'digest-mark:boot', seq: 1, payload: encodeFrame(null) };
    s.service.apply({ slot: 1, value: { type: 'batch', stampMs: 0, commands: [mark, create!] } }, 0);
    expect(s.service.takeOutbox()).toMatchObject([{ frame: { type: 'result', id: 1, result: { type: 'session-created' } } }]);
    // As master it follows the mark with a check carrying its digest at that slot.
    expect(s.replica.proposed.some((c) => c.clientId === 'digest-check:boot')).toBe(true);
  });
});

describe('health and backup (GET /health, GET /backup)', () => {
  it('a follower that knows a master is healthy and points a backup at it; with no master it is neither', () => {
    const s = setup();
    expect(s.service.health(0)).toEqual({ isHealthy: true, reason: null });
    expect(s.service.backup(0)).toEqual({ master: 'r2:2' });
    s.replica.masterId = null;
    expect(s.service.health(0).isHealthy).toBe(false);
    expect(s.service.health(0).reason).toMatch(/knows no master/);
    expect(s.service.backup(0)).toEqual({ master: null });
    s.replica.role = 'candidate';
    expect(s.service.health(0).isHealthy).toBe(false);
  });

  it('a learner (a replacement disk not yet admitted) that follows a master is not healthy until it votes', () => {
    const s = setup();
    s.replica.isVoter = false;
    expect(s.service.health(0)).toEqual({ isHealthy: false, reason: expect.stringMatching(/^learner: this disk is not admitted yet/) as unknown });
    expect(s.service.backup(0)).toEqual({ master: 'r2:2' }); // it still points a backup at the master
    s.replica.isVoter = true;
    expect(s.service.health(0)).toEqual({ isHealthy: true, reason: null });
  });

  it('the master may give a backup while it serves (the node copies state.db), and is unhealthy without its lease', () => {
    const s = setup();
    becomeMaster(s, 0);
    createSession(s, 0);
    expect(s.service.health(0)).toEqual({ isHealthy: true, reason: null });
    expect(s.service.backup(0)).toEqual({ isServing: true });
    s.replica.isLeaseValid = false;
    expect(s.service.health(0).isHealthy).toBe(false);
    expect(s.service.health(0).reason).toMatch(/without a valid lease/);
    expect(s.service.backup(0)).toEqual({ master: null }); // it is its own master, and cannot serve it
  });
});

describe('CellService: an Acquire that would only queue is held to share the next entry', () => {
  /** A master with sessions A and B, each with a handle on /l; A holds the lock. */
  function lockedByA(): { s: ReturnType<typeof setup>; a: number; b: number; handleA: number; handleB: number; nextId: () => number } {
    const s = setup();
    becomeMaster(s, 0);
    let id = 100;
    const nextId = (): number => ++id;
    const a = createSession(s, 0);
    s.service.onClientFrame(8, commandFrame(nextId(), { type: 'CreateSession', clientName: 'y', leaseMs: 1_000, nonce: 'n2' }), 0);
    chooseAll(s, s.service.takeProposals(0), 0);
    const created = s.service.takeOutbox()[0]?.frame;
    if (created?.type !== 'result' || created.result.type !== 'session-created') throw new Error('no session');
    const b = created.result.session;
    const open = (session: number, to: number): number => {
      s.service.onClientFrame(to, commandFrame(nextId(), { type: 'Open', session, seq: 1, path: '/ls/c/l', create: 'may', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 }), 0);
      chooseAll(s, s.service.takeProposals(0), 0);
      const out = s.service.takeOutbox()[0]?.frame;
      if (out?.type !== 'result' || out.result.type !== 'opened') throw new Error(JSON.stringify(out));
      return out.result.handle;
    };
    const handleA = open(a, 7);
    const handleB = open(b, 8);
    s.service.onClientFrame(7, commandFrame(nextId(), { type: 'Acquire', session: a, seq: 2, handle: handleA, mode: 'exclusive', wait: false }), 0);
    chooseAll(s, s.service.takeProposals(0), 0);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ type: 'result', result: { type: 'acquired' } });
    return { s, a, b, handleA, handleB, nextId };
  }

  it('holds it until another command comes, then proposes both in arrival order', () => {
    const { s, a, b, handleA, handleB, nextId } = lockedByA();
    s.service.onClientFrame(8, commandFrame(nextId(), { type: 'Acquire', session: b, seq: 2, handle: handleB, mode: 'exclusive', wait: true }), 10);
    expect(s.service.hasProposals).toBe(false);
    expect(s.service.proposalsDueMs).toBe(15);
    expect(s.service.takeProposals(12)).toEqual([]);
    s.service.onClientFrame(7, commandFrame(nextId(), { type: 'Release', session: a, seq: 3, handle: handleA }), 13);
    expect(s.service.hasProposals).toBe(true);
    expect(s.service.proposalsDueMs).toBeNull();
    const proposals = s.service.takeProposals(13);
    expect(proposals.map((p) => p.clientId)).toEqual([`session:${String(b)}`, `session:${String(a)}`]);
    // One entry: B queues, then A's release grants it.
    s.slot.n += 1;
    s.service.apply({ slot: s.slot.n, value: { type: 'batch', stampMs: 13, commands: proposals } }, 13);
    expect(s.service.takeOutbox().map((o) => o.frame)).toMatchObject([
      { type: 'result', result: { type: 'queued' } },
      { type: 'result', result: { type: 'released' } },
    ]);
    expect(s.machine.query({ type: 'ListLocks', path: '/ls/c/l' })).toMatchObject({
      locks: [{ holders: [{ session: b, handle: handleB }], waiters: [] }],
    });
  });

  it('proposes it alone once it has waited queueHoldMs', () => {
    const { s, b, handleB, nextId } = lockedByA();
    s.service.onClientFrame(8, commandFrame(nextId(), { type: 'Acquire', session: b, seq: 2, handle: handleB, mode: 'exclusive', wait: true }), 10);
    expect(s.service.takeProposals(14.9)).toEqual([]);
    expect(s.service.takeProposals(15)).toHaveLength(1);
    expect(s.service.proposalsDueMs).toBeNull();
  });

  it('proposes it at once when an applied entry means it would no longer queue', () => {
    const { s, a, b, handleA, handleB, nextId } = lockedByA();
    // A's release is already on its way through the log when B's Acquire arrives.
    s.service.onClientFrame(7, commandFrame(nextId(), { type: 'Release', session: a, seq: 3, handle: handleA }), 10);
    const release = s.service.takeProposals(10);
    s.service.onClientFrame(8, commandFrame(nextId(), { type: 'Acquire', session: b, seq: 2, handle: handleB, mode: 'exclusive', wait: true }), 11);
    expect(s.service.takeProposals(11)).toEqual([]);
    expect(s.service.hasProposals).toBe(false);
    chooseAll(s, release, 12);
    // The apply itself makes a turn due: the replica need not wait for another message.
    expect(s.service.hasProposals).toBe(true);
    expect(s.service.takeProposals(12)).toHaveLength(1);
  });

  it('does not hold an Acquire that would be granted, or one that may not wait', () => {
    const { s, a, b, handleA, handleB, nextId } = lockedByA();
    s.service.onClientFrame(8, commandFrame(nextId(), { type: 'Acquire', session: b, seq: 2, handle: handleB, mode: 'exclusive', wait: false }), 10);
    expect(s.service.hasProposals).toBe(true);
    chooseAll(s, s.service.takeProposals(10), 10);
    expect(s.service.takeOutbox()[0]?.frame).toMatchObject({ result: { type: 'error', code: 'LOCK_HELD' } });
    s.service.onClientFrame(7, commandFrame(nextId(), { type: 'Release', session: a, seq: 3, handle: handleA }), 11);
    chooseAll(s, s.service.takeProposals(11), 11);
    s.service.takeOutbox();
    s.service.onClientFrame(8, commandFrame(nextId(), { type: 'Acquire', session: b, seq: 3, handle: handleB, mode: 'exclusive', wait: true }), 12);
    expect(s.service.hasProposals).toBe(true);
  });

  it('holds nothing with queueHoldMs 0', () => {
    const { s, b, handleB, nextId } = lockedByA();
    const service = new CellService(
      { id: 1, clientAddresses: new Map([[1, 'r1:1']]), replica: s.replica, machine: () => s.machine, logger: silentLogger, bootNonce: 'boot2', requestTimeoutMs: 1_000, digestEveryMs: 0, onDiverged: () => undefined, queueHoldMs: 0 },
      0,
    );
    service.afterTurn(0);
    service.onClientFrame(8, commandFrame(nextId(), { type: 'Acquire', session: b, seq: 2, handle: handleB, mode: 'exclusive', wait: true }), 10);
    expect(service.hasProposals).toBe(true);
  });
});
