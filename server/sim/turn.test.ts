// Proves runtime/turn.ts keeps its ordering rule — sendEarly, persist, send, apply, hooks,
// advance — that a fault point stops the turn with nothing of the later stages done, and that an
// invalid peer message is dropped with a warning before it reaches the core. The simulator's
// crash-between-persist-and-send depends on exactly this, so it is tested beside the simulator.
import { describe, expect, it } from 'vitest';
import type { Message } from '../src/paxos/messages.ts';
import type { Logger } from '../src/paxos/ports.ts';
import type { PersistBatch, Ready } from '../src/paxos/ready.ts';
import type { ProposeResult } from '../src/paxos/replica.ts';
import { runTurn, type TurnReplica, type TurnStage, type TurnWiring } from '../src/runtime/turn.ts';

const EMPTY_PERSIST: PersistBatch = {
  promised: null,
  accepted: [],
  chosen: [],
  commit: null,
  compactBelow: null,
  admitted: [],
};
const heartbeat: Message = {
  type: 'heartbeat',
  ballot: { round: 1, replica: 1 },
  commit: 0,
  round: 1,
};

function readyWith(parts: Partial<Ready>): Ready {
  return {
    sendEarly: [],
    persist: EMPTY_PERSIST,
    send: [],
    commit: [],
    snapshotFor: [],
    needSnapshot: null,
    status: {
      id: 2,
      role: 'follower',
      ballot: { round: 1, replica: 1 },
      masterId: 1,
      leaseUntil: null,
      commit: 0,
      applied: 0,
      isVoter: true,
      diskId: 0,
    },
    ...parts,
  };
}

/** A fake core that hands out the given Readies in order and records what the turn did to it. */
function fakeReplica(readies: Ready[], log: string[]): TurnReplica {
  return {
    step: (from, message) => log.push(`step ${from} ${message.type}`),
    tick: () => log.push('tick'),
    propose: (command): ProposeResult => {
      log.push(`propose ${command.seq}`);
      return command.seq === 1 ? { ok: true } : { ok: false, reason: 'not-master', masterId: 3 };
    },
    hasReady: () => readies.length > 0,
    ready: () => {
      const next = readies[0];
      if (next === undefined) throw new Error('no ready');
      return next;
    },
    advance: () => {
      readies.shift();
      log.push('advance');
    },
  };
}

function wiring(
  replica: TurnReplica,
  log: string[],
  faults?: (stage: TurnStage) => 'crash' | 'continue',
): TurnWiring {
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (_obj, msg) => log.push(`warn ${msg}`),
    error: () => undefined,
  };
  return {
    replica,
    store: { persist: () => log.push('persist') },
    logger,
    send: (envelope) => log.push(`send ${envelope.to} ${envelope.message.type}`),
    apply: (entry) => log.push(`apply ${entry.slot}`),
    snapshotFor: (to, slot) => log.push(`snapshotFor ${to} ${slot}`),
    needSnapshot: (from, slot) => log.push(`needSnapshot ${from} ${slot}`),
    ...(faults === undefined ? {} : { faults: (stage: TurnStage) => faults(stage) }),
  };
}

const ready = readyWith({
  sendEarly: [{ to: 3, message: heartbeat }],
  persist: { ...EMPTY_PERSIST, commit: 1 },
  send: [{ to: 4, message: heartbeat }],
  commit: [{ slot: 1, value: { type: 'noop', stampMs: 0 } }],
  snapshotFor: [{ to: 5, slot: 1 }],
  needSnapshot: { from: 1, slotAtLeast: 9 },
});

describe('runTurn', () => {
  it('feeds inputs, then executes each Ready in the documented order until the core has none', () => {
    const log: string[] = [];
    const replica = fakeReplica([ready, readyWith({ send: [{ to: 1, message: heartbeat }] })], log);
    const result = runTurn(
      wiring(replica, log),
      [
        { type: 'message', from: 1, message: heartbeat },
        { type: 'tick' },
        { type: 'propose', command: { clientId: 'c', seq: 1, payload: new Uint8Array() } },
        { type: 'propose', command: { clientId: 'c', seq: 2, payload: new Uint8Array() } },
      ],
      10,
    );
    expect(log).toEqual([
      'step 1 heartbeat',
      'tick',
      'propose 1',
      'propose 2',
      'send 3 heartbeat',
      'persist',
      'send 4 heartbeat',
      'apply 1',
      'snapshotFor 5 1',
      'needSnapshot 1 9',
      'advance',
      'persist',
      'send 1 heartbeat',
      'advance',
    ]);
    expect(result.proposals).toEqual([
      { ok: true },
      { ok: false, reason: 'not-master', masterId: 3 },
    ]);
    expect(result).toMatchObject({ crashedBefore: null, readyCount: 2 });
  });

  it('stops at a fault point between persist and send: persisted, nothing else sent or applied', () => {
    const log: string[] = [];
    const result = runTurn(
      wiring(fakeReplica([ready], log), log, (stage) => (stage === 'send' ? 'crash' : 'continue')),
      [],
      0,
    );
    expect(log).toEqual(['send 3 heartbeat', 'persist']);
    expect(result.crashedBefore).toBe('send');
  });

  it('drops an invalid peer message with a warning, without calling the core', () => {
    const log: string[] = [];
    runTurn(
      wiring(fakeReplica([], log), log),
      [{ type: 'message', from: 2, message: { type: 'prepare', ballot: 'nonsense' } }],
      0,
    );
    expect(log).toEqual(['warn invalid peer message dropped']);
  });
});
