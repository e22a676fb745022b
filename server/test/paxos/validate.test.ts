// Proves validateMessage is a safe door from the wire: every well-formed message passes through
// unchanged (round trip, fast-check), and malformed or out-of-range shapes of every kind are
// refused with null; a refused message never reaches the replica, so its state is unchanged.
// Also the algebra of ballots: a strict total order, and nextBallot's contract.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import { compareBallots, nextBallot } from '../../src/paxos/ballot.ts';
import type { Command, Message, SlotValue } from '../../src/paxos/messages.ts';
import { MESSAGE_LIMITS, validateMessage } from '../../src/paxos/validate.ts';
import { solo } from './harness.ts';

const count = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const slot = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const diskIdArb = fc.integer({ min: 0, max: 2 ** 48 - 1 });
const ballotArb: fc.Arbitrary<Ballot> = fc.record({
  round: count,
  replica: fc.integer({ min: 0, max: 255 }),
});
const commandArb: fc.Arbitrary<Command> = fc.record({
  clientId: fc.string({ minLength: 1, maxLength: 40 }),
  seq: count,
  payload: fc.uint8Array({ maxLength: 32 }),
});
const stampMs = fc.double({ noNaN: true, noDefaultInfinity: true });
const valueArb: fc.Arbitrary<SlotValue> = fc.oneof(
  fc.record({ type: fc.constant('noop' as const), stampMs }),
  fc.record({
    type: fc.constant('batch' as const),
    stampMs,
    commands: fc.array(commandArb, { maxLength: 4 }),
  }),
  fc.record({
    type: fc.constant('admit' as const),
    stampMs,
    replica: fc.integer({ min: 1, max: 255 }),
    diskId: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  }),
);
const messageArb: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant('prepare' as const), ballot: ballotArb, slotFirst: slot }),
  fc.record({
    type: fc.constant('promise' as const),
    ballot: ballotArb,
    slotFirst: slot,
    accepted: fc.array(fc.record({ slot, ballot: ballotArb, value: valueArb }), { maxLength: 3 }),
    chosen: fc.array(fc.record({ slot, value: valueArb }), { maxLength: 3 }),
    commit: count,
    diskId: diskIdArb,
  }),
  fc.record({
    type: fc.constant('reject' as const),
    ballot: ballotArb,
    promised: ballotArb,
    reason: fc.constantFrom(
      'stale-ballot' as const,
      'lease-held' as const,
      'restart-wait' as const,
    ),
  }),
  fc.record({
    type: fc.constant('accept' as const),
    ballot: ballotArb,
    slot,
    value: valueArb,
    commit: count,
    round: count,
  }),
  fc.record({
    type: fc.constant('accepted' as const),
    ballot: ballotArb,
    slot,
    round: count,
    diskId: diskIdArb,
  }),
  fc.record({
    type: fc.constant('heartbeat' as const),
    ballot: ballotArb,
    commit: count,
    round: count,
  }),
  fc.record(
    {
      type: fc.constant('heartbeat-ack' as const),
      ballot: ballotArb,
      round: count,
      commit: count,
      diskId: diskIdArb,
      restartWaitMs: count,
    },
    { requiredKeys: ['type', 'ballot', 'round', 'commit', 'diskId'] },
  ),
  slot.chain((first) =>
    fc.record({
      type: fc.constant('catch-up-request' as const),
      slotFirst: fc.constant(first),
      slotLast: fc.integer({ min: first, max: Number.MAX_SAFE_INTEGER }),
    }),
  ),
  fc.record({
    type: fc.constant('catch-up' as const),
    entries: fc.array(fc.record({ slot, value: valueArb }), { maxLength: 3 }),
    commit: count,
    compactedBelow: slot,
  }),
);

const good = {
  ballot: { round: 1, replica: 2 },
  value: {
    type: 'batch',
    stampMs: 5,
    commands: [{ clientId: 'c', seq: 1, payload: new Uint8Array([1]) }],
  },
};

describe('validateMessage', () => {
  it('returns every well-formed message unchanged (round trip)', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        expect(validateMessage(message)).toEqual(message);
      }),
    );
  });

  it('drops fields it does not know', () => {
    expect(
      validateMessage({ type: 'prepare', ballot: good.ballot, slotFirst: 1, evil: true }),
    ).toEqual({
      type: 'prepare',
      ballot: good.ballot,
      slotFirst: 1,
    });
  });

  const bad: [string, unknown][] = [
    ['null', null],
    ['a number', 42],
    ['an array', [{ type: 'prepare' }]],
    ['a missing type', { ballot: good.ballot, slotFirst: 1 }],
    ['an unknown type', { type: 'promise-me', ballot: good.ballot }],
    ['a negative round', { type: 'prepare', ballot: { round: -1, replica: 1 }, slotFirst: 1 }],
    ['a fractional round', { type: 'prepare', ballot: { round: 1.5, replica: 1 }, slotFirst: 1 }],
    ['a string round', { type: 'prepare', ballot: { round: '1', replica: 1 }, slotFirst: 1 }],
    [
      'a replica id out of range',
      { type: 'prepare', ballot: { round: 1, replica: 256 }, slotFirst: 1 },
    ],
    ['a missing ballot', { type: 'prepare', slotFirst: 1 }],
    ['slot 0', { type: 'prepare', ballot: good.ballot, slotFirst: 0 }],
    ['an unsafe slot', { type: 'prepare', ballot: good.ballot, slotFirst: 2 ** 60 }],
    ['a NaN slot', { type: 'accepted', ballot: good.ballot, slot: NaN, round: 1 }],
    ['an infinite commit', { type: 'heartbeat', ballot: good.ballot, commit: Infinity, round: 1 }],
    ['a negative commit', { type: 'heartbeat-ack', ballot: good.ballot, commit: -1, round: 1 }],
    [
      'a negative restart wait',
      { type: 'heartbeat-ack', ballot: good.ballot, commit: 1, round: 1, restartWaitMs: -1 },
    ],
    [
      'a string restart wait',
      { type: 'heartbeat-ack', ballot: good.ballot, commit: 1, round: 1, restartWaitMs: '5' },
    ],
    [
      'an unknown reject reason',
      { type: 'reject', ballot: good.ballot, promised: good.ballot, reason: 'nope' },
    ],
    [
      'an unknown value type',
      {
        type: 'accept',
        ballot: good.ballot,
        slot: 1,
        commit: 0,
        round: 0,
        value: { type: 'x', stampMs: 1 },
      },
    ],
    [
      'a NaN stamp',
      {
        type: 'accept',
        ballot: good.ballot,
        slot: 1,
        commit: 0,
        round: 0,
        value: { type: 'noop', stampMs: NaN },
      },
    ],
    [
      'commands not an array',
      {
        type: 'accept',
        ballot: good.ballot,
        slot: 1,
        commit: 0,
        round: 0,
        value: { type: 'batch', stampMs: 1, commands: {} },
      },
    ],
    [
      'a payload that is not bytes',
      {
        type: 'accept',
        ballot: good.ballot,
        slot: 1,
        commit: 0,
        round: 0,
        value: {
          type: 'batch',
          stampMs: 1,
          commands: [{ clientId: 'c', seq: 1, payload: [1, 2] }],
        },
      },
    ],
    [
      'an empty client id',
      {
        type: 'accept',
        ballot: good.ballot,
        slot: 1,
        commit: 0,
        round: 0,
        value: {
          type: 'batch',
          stampMs: 1,
          commands: [{ clientId: '', seq: 1, payload: new Uint8Array() }],
        },
      },
    ],
    [
      'a client id too long',
      {
        type: 'accept',
        ballot: good.ballot,
        slot: 1,
        commit: 0,
        round: 0,
        value: {
          type: 'batch',
          stampMs: 1,
          commands: [
            {
              clientId: 'x'.repeat(MESSAGE_LIMITS.maxClientIdLength + 1),
              seq: 1,
              payload: new Uint8Array(),
            },
          ],
        },
      },
    ],
    [
      'a negative seq',
      {
        type: 'accept',
        ballot: good.ballot,
        slot: 1,
        commit: 0,
        round: 0,
        value: {
          type: 'batch',
          stampMs: 1,
          commands: [{ clientId: 'c', seq: -1, payload: new Uint8Array() }],
        },
      },
    ],
    [
      'promise entries not an array',
      { type: 'promise', ballot: good.ballot, slotFirst: 1, accepted: 'x', chosen: [], commit: 0 },
    ],
    [
      'a promise entry without a ballot',
      {
        type: 'promise',
        ballot: good.ballot,
        slotFirst: 1,
        accepted: [{ slot: 1, value: good.value }],
        chosen: [],
        commit: 0,
      },
    ],
    [
      'a chosen entry at slot 0',
      {
        type: 'promise',
        ballot: good.ballot,
        slotFirst: 1,
        accepted: [],
        chosen: [{ slot: 0, value: good.value }],
        commit: 0,
      },
    ],
    [
      'too many entries',
      {
        type: 'catch-up',
        entries: new Array(MESSAGE_LIMITS.maxEntries + 1).fill({ slot: 1, value: good.value }),
        commit: 1,
        compactedBelow: 1,
      },
    ],
    ['a backwards catch-up range', { type: 'catch-up-request', slotFirst: 5, slotLast: 4 }],
    ['compactedBelow 0', { type: 'catch-up', entries: [], commit: 0, compactedBelow: 0 }],
  ];

  it.each(bad)('refuses %s', (_name, raw) => {
    expect(validateMessage(raw)).toBeNull();
  });

  it('refuses any message with one field replaced by garbage', () => {
    const garbage = fc.oneof(
      fc.constant(null),
      fc.constant(-1),
      fc.constant(NaN),
      fc.constant('x'),
      fc.constant({}),
      fc.constant(1.5),
    );
    fc.assert(
      fc.property(messageArb, fc.nat(), garbage, (message, which, junk) => {
        const keys = Object.keys(message).filter((k) => k !== 'type');
        const key = keys[which % keys.length];
        if (key === undefined) return;
        const mangled = { ...message, [key]: junk };
        // Some garbage is still in range for some fields (an empty object is never a ballot, but
        // 'x' is never a number); only assert when the field's type cannot accept the junk.
        const result = validateMessage(mangled);
        if (result !== null) expect(result).toEqual(validateMessage(result));
        const typed = message as unknown as Record<string, unknown>;
        if (typeof typed[key] === 'number' && typeof junk !== 'number') expect(result).toBeNull();
        if (typeof typed[key] === 'object' && typeof junk !== 'object') expect(result).toBeNull();
      }),
    );
  });

  it('leaves the replica unchanged when a malformed message is dropped', () => {
    const r = solo({ id: 2 });
    const before = r.status(5);
    const raw: unknown = { type: 'prepare', ballot: { round: -3, replica: 1 }, slotFirst: 1 };
    const message = validateMessage(raw);
    if (message !== null) r.step(1, message, 5);
    expect(message).toBeNull();
    expect(r.hasReady()).toBe(false);
    expect(r.status(5)).toEqual(before);
  });
});

describe('ballots', () => {
  it('are a strict total order: antisymmetric, transitive, equal only when identical', () => {
    fc.assert(
      fc.property(ballotArb, ballotArb, ballotArb, (x, y, z) => {
        expect(Math.sign(compareBallots(x, y))).toBe(-Math.sign(compareBallots(y, x)));
        if (compareBallots(x, y) < 0 && compareBallots(y, z) < 0)
          expect(compareBallots(x, z)).toBeLessThan(0);
        expect(compareBallots(x, y) === 0).toBe(x.round === y.round && x.replica === y.replica);
      }),
    );
  });

  it('nextBallot is owned by the replica, above the given ballot, and the least such', () => {
    fc.assert(
      fc.property(ballotArb, fc.integer({ min: 1, max: 255 }), (above, replica) => {
        const next = nextBallot(above, replica);
        expect(next.replica).toBe(replica);
        expect(compareBallots(next, above)).toBeGreaterThan(0);
        if (next.round > 0)
          expect(compareBallots({ round: next.round - 1, replica }, above)).toBeLessThanOrEqual(0);
      }),
    );
  });
});
