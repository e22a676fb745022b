// A fixed, seeded stream of entries (every command type, good and bad handles, stale and repeated
// seqs, garbage, failing commands between good ones in the same entry, waits, lock-delays and
// their ends) gives exactly the transcript it gave before the apply path was optimised: the same
// results with the same messages, the same events in the same order and the same state digest
// after every entry. The expected hashes were recorded from the machine as it was before the
// per-command SAVEPOINT was dropped for SetContents, Acquire and Release and before their
// narrower statements; a change to any result, event or byte of state changes them.
import { describe, expect, test } from 'vitest';
import { Fnv1a64 } from '@paxlock/shared';
import { StateMachine } from '../../src/machine/index.ts';
import { CELL, ROOT } from './harness.ts';

const PATHS = [
  ROOT,
  `${ROOT}/d`,
  `${ROOT}/d/x`,
  `${ROOT}/d/y`,
  `${ROOT}/a`,
  `${ROOT}/b`,
  `${ROOT}/e`,
  `${ROOT}/e/z`,
  '/ls/other/a',
];

/** A small deterministic generator (a 32-bit LCG): the stream must not depend on any library. */
class Lcg {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  below(count: number): number {
    this.#state = (Math.imul(this.#state, 1664525) + 1013904223) >>> 0;
    return Math.floor((this.#state / 4294967296) * count);
  }

  pick<T>(options: readonly T[]): T {
    const value = options[this.below(options.length)];
    if (value === undefined) throw new Error('pick from an empty list');
    return value;
  }
}

interface Stream {
  readonly random: Lcg;
  readonly seqs: Map<number, number>;
  /** Sessions and handles the machine has handed out so far, learnt from earlier results. */
  sessions: number[];
  handles: { id: number; session: number }[];
}

function seqFor(stream: Stream, session: number): number {
  const last = stream.seqs.get(session) ?? 0;
  const roll = stream.random.below(10);
  if (roll === 0 && last > 0) return last;
  if (roll === 1 && last > 1) return last - 1;
  stream.seqs.set(session, last + 1);
  return last + 1;
}

function commandFor(stream: Stream): unknown {
  const r = stream.random;
  // Mostly a recent session and one of its handles, sometimes anything at all.
  const known = r.below(8) !== 0 && stream.handles.length > 0;
  const picked = known
    ? stream.handles[stream.handles.length - 1 - r.below(Math.min(12, stream.handles.length))]
    : undefined;
  const session = picked?.session ?? r.pick([...stream.sessions.slice(-4), 1 + r.below(9)]);
  const handle = picked?.id ?? 1 + r.below(stream.handles.length + 3);
  const base = (type: string): Record<string, unknown> => ({
    type,
    session,
    seq: seqFor(stream, session),
  });
  switch (r.below(16)) {
    case 0:
      return r.below(2) === 0
        ? { type: 'CreateSession', clientName: 'c', leaseMs: 12_000, nonce: `n${r.below(40)}` }
        : { type: 'LockDelayEnd', path: r.pick(PATHS) };
    case 1:
    case 2: {
      const directory = r.below(3) === 0;
      return {
        ...base('Open'),
        path: r.pick(PATHS),
        create: r.pick(['never', 'may', 'must']),
        ephemeral: r.below(3) === 0,
        directory,
        eventMask: r.pick([0, 63, r.below(64)]),
        lockDelayMs: r.pick([0, 0, 200]),
        ...(directory || r.below(2) === 0 ? {} : { contents: new Uint8Array([r.below(256), 7]) }),
      };
    }
    case 3:
    case 4:
    case 5: {
      const contents = new Uint8Array(r.below(120)).map((_, i) => (i * 31 + r.below(256)) & 0xff);
      return {
        ...base('SetContents'),
        handle,
        contents,
        ...(r.below(4) === 0 ? { ifGeneration: 1 + r.below(4) } : {}),
      };
    }
    case 6:
    case 7:
    case 8:
      return {
        ...base('Acquire'),
        handle,
        mode: r.pick(['exclusive', 'exclusive', 'shared']),
        wait: r.below(2) === 0,
      };
    case 9:
    case 10:
      return { ...base('Release'), handle };
    case 11:
      return { ...base('CancelWait'), handle };
    case 12:
      return { ...base(r.pick(['Close', 'Delete'])), handle };
    case 13:
      return { ...base('SetACL'), handle, acl: { read: 'r', write: '', changeAcl: 'w' } };
    case 14: {
      const roll = r.below(8);
      if (roll === 0) return { type: 'ExpireSession', session };
      if (roll === 1) return { ...base('CloseSession') };
      return { ...base('SetContents'), handle, contents: 'not bytes' };
    }
    default:
      return r.pick([
        { type: 'Nope' },
        { ...base('Release'), handle, extra: 1 },
        { ...base('Acquire'), handle: 0, mode: 'exclusive', wait: false },
        { ...base('Acquire'), handle, mode: 'both', wait: false },
        null,
      ]);
  }
}

function forget(stream: Stream, session: number): void {
  stream.sessions = stream.sessions.filter((known) => known !== session);
  stream.handles = stream.handles.filter((handle) => handle.session !== session);
}

/** Applies the stream and hashes every result, event and digest along the way. */
function transcript(seed: number, entryCount: number): { hash: string; digest: string } {
  const machine = StateMachine.createInMemory({ cell: CELL });
  const stream: Stream = {
    random: new Lcg(seed),
    seqs: new Map(),
    sessions: [1, 2, 3, 4],
    handles: [],
  };
  const hash = new Fnv1a64();
  const setUp = [1, 2, 3, 4].map((i) => ({
    type: 'CreateSession',
    clientName: `s${i}`,
    leaseMs: 12_000,
  }));
  machine.apply({ slot: 1, stampMs: 1_000, commands: setUp });
  let stampMs = 1_000;
  for (let slot = 2; slot <= entryCount + 1; slot++) {
    stampMs += stream.random.below(25);
    const commands: unknown[] = [];
    const count = 1 + stream.random.below(24);
    for (let i = 0; i < count; i++) commands.push(commandFor(stream));
    const { results, events } = machine.apply({ slot, stampMs, commands });
    results.forEach((result, index) => {
      const command = (commands[index] ?? {}) as { session?: number; handle?: number };
      if (result.type === 'session-created' && !stream.sessions.includes(result.session))
        stream.sessions.push(result.session);
      if (result.type === 'opened' && command.session !== undefined)
        stream.handles.push({ id: result.handle, session: command.session });
      const isGone =
        result.type === 'session-closed' ||
        result.type === 'session-expired' ||
        (result.type === 'error' && result.code === 'SESSION_EXPIRED');
      if (isGone && command.session !== undefined) forget(stream, command.session);
      const isDead =
        result.type === 'closed' ||
        result.type === 'deleted' ||
        (result.type === 'error' && result.code === 'BAD_HANDLE');
      if (isDead) stream.handles = stream.handles.filter((known) => known.id !== command.handle);
    });
    hash.updateString(JSON.stringify(results)).updateString(JSON.stringify(events));
    hash.updateString(machine.digest());
  }
  machine.checkInvariants();
  return { hash: hash.hex(), digest: machine.digest() };
}

describe('apply transcript', () => {
  test.each([
    [1, 'fb8a834674cf3bae', '3ad83e1e16391709'],
    [2, '1e4fe92b7e9d7572', '011597b58daf8714'],
    [3, '97a2af3da22a8d56', 'd5c12af22830bd59'],
  ])('seed %i gives the recorded results, events and digests', (seed, hash, digest) => {
    expect(transcript(seed, 400)).toEqual({ hash, digest });
  });
});
