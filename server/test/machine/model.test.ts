// Model-based property tests. Random command sequences (sessions, opens with every policy and
// kind, writes with and without compare-and-set, deletes, ACLs, locks in both modes with try and
// wait, cancels, closes, session close and expiry, lock-delay ends, repeated and stale seqs,
// garbage, and entry stamps that sometimes go backwards) are applied to the SQLite machine and to
// the in-memory reference model in model.ts. Both must give the same results (error codes, not
// messages), the same events in the same order, and the same namespace, lock and session tables
// after every entry. Then: a machine restored from a snapshot taken part-way and fed the rest
// ends with the same digest (and gives the same results) as one that applied everything.
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { CommandResult, NodeStat } from '@paxlock/shared';
import { StateMachine } from '../../src/machine/index.ts';
import { CELL, ROOT } from './harness.ts';
import { Model } from './model.ts';

const DIRS = [ROOT, `${ROOT}/d`];
const PATHS = [...DIRS, `${ROOT}/a`, `${ROOT}/b`, `${ROOT}/d/x`, `${ROOT}/d/y`];
const BAD_PATHS = ['/ls/other/a', `${ROOT}/a/../b`, `${ROOT}//a`];

type SeqKind = 'next' | 'same' | 'old';

/**
 * A command before its session, handle and seq are chosen. Those are picked against the state
 * a guide model has reached, so that most commands name a real session and one of its handles
 * (and so reach the interesting states) while some name a stranger's or a dead one.
 */
type Op =
  | {
      readonly seqKind: SeqKind;
      readonly pick: number;
      readonly isStranger: boolean;
      readonly body: Record<string, unknown>;
    }
  | { readonly raw: unknown }
  | { readonly expirePick: number }
  | { readonly delayPick: number };

const seqKind = fc.constantFrom<SeqKind>(
  'next',
  'next',
  'next',
  'next',
  'next',
  'next',
  'same',
  'old',
);
const path = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...PATHS) },
  { weight: 1, arbitrary: fc.constantFrom(...BAD_PATHS) },
);
const contents = fc.uint8Array({ maxLength: 6 });

const sessionOp = (body: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<Op> =>
  fc.record({
    seqKind,
    pick: fc.nat(),
    isStranger: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    body,
  });

const handleOp = (type: string): fc.Arbitrary<Op> => sessionOp(fc.constant({ type, handle: 0 }));

const openBody = fc
  .record(
    {
      type: fc.constant('Open'),
      path,
      create: fc.constantFrom('never', 'may', 'may', 'must'),
      ephemeral: fc.boolean(),
      // Mostly the kind the name is meant to be (so opens succeed); sometimes the other kind.
      directory: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
      contents,
      eventMask: fc.integer({ min: 0, max: 63 }),
      lockDelayMs: fc.constantFrom(0, 0, 1_000, 30_000),
    },
    {
      requiredKeys: [
        'type',
        'path',
        'create',
        'ephemeral',
        'directory',
        'eventMask',
        'lockDelayMs',
      ],
    },
  )
  .map((body) => ({ ...body, directory: DIRS.includes(body.path) !== body.directory }))
  .map((body) => (body.directory ? { ...body, contents: undefined } : body))
  .map(stripUndefined);

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      raw: fc.record({
        nonce: fc.constantFrom(undefined, 'n1', 'n2'),
        type: fc.constant('CreateSession'),
        clientName: fc.constantFrom('a', 'b'),
        leaseMs: fc.constant(12_000),
      }),
    }),
  },
  { weight: 1, arbitrary: sessionOp(fc.constant({ type: 'CloseSession' })) },
  { weight: 2, arbitrary: fc.record({ expirePick: fc.nat() }) },
  { weight: 10, arbitrary: sessionOp(openBody) },
  { weight: 3, arbitrary: handleOp('Close') },
  {
    weight: 4,
    arbitrary: sessionOp(
      fc.record(
        {
          type: fc.constant('SetContents'),
          handle: fc.constant(0),
          contents,
          ifGeneration: fc.integer({ min: 1, max: 4 }),
        },
        { requiredKeys: ['type', 'handle', 'contents'] },
      ),
    ),
  },
  { weight: 2, arbitrary: handleOp('Delete') },
  {
    weight: 1,
    arbitrary: sessionOp(
      fc.record({
        type: fc.constant('SetACL'),
        handle: fc.constant(0),
        acl: fc.record({
          read: fc.constantFrom('', 'r'),
          write: fc.constantFrom('', 'w'),
          changeAcl: fc.constantFrom('', 'c'),
        }),
      }),
    ),
  },
  {
    weight: 8,
    arbitrary: sessionOp(
      fc.record({
        type: fc.constant('Acquire'),
        handle: fc.constant(0),
        mode: fc.constantFrom('exclusive', 'shared'),
        wait: fc.boolean(),
      }),
    ),
  },
  { weight: 4, arbitrary: handleOp('Release') },
  { weight: 2, arbitrary: handleOp('CancelWait') },
  {
    weight: 2,
    arbitrary: fc.record({
      delayPick: fc.nat(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      raw: fc.oneof(fc.anything(), fc.record({ type: fc.constant('Open'), seq: fc.nat() })),
    }),
  },
);

interface EntryPlan {
  readonly advanceMs: number;
  readonly ops: readonly Op[];
}
const entries = fc.array(
  fc.record({
    // Mostly forward (lock-delays run out), often not at all (commands race within a delay),
    // sometimes backwards (the machine must not let time go back).
    advanceMs: fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 20_000 }) },
      { weight: 2, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.constant(-5_000) },
    ),
    ops: fc.array(op, { minLength: 1, maxLength: 5 }),
  }),
  { minLength: 1, maxLength: 40, size: 'large' },
);

function stripUndefined(body: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== undefined));
}

interface ConcreteEntry {
  slot: number;
  stampMs: number;
  commands: unknown[];
}

/**
 * Turns plans into concrete entries. Every run opens with three sessions. Sessions and handles
 * are picked from a guide model's state; seqs follow each session the way a retrying client's
 * would ('same' repeats the last one sent, 'old' goes back two).
 */
function concretise(plans: readonly EntryPlan[]): ConcreteEntry[] {
  const guide = new Model(CELL);
  const lastSeq = new Map<number, number>();
  const create = { type: 'CreateSession', clientName: 'x', leaseMs: 12_000 };
  const open = (session: number, seq: number, path: string, directory: boolean): unknown => ({
    type: 'Open',
    session,
    seq,
    path,
    create: 'may',
    ephemeral: false,
    directory,
    eventMask: 63,
    lockDelayMs: 5_000,
  });
  // Three sessions, a directory, and every session with a handle on each of two files.
  const first: ConcreteEntry = {
    slot: 1,
    stampMs: 1_000,
    commands: [
      create,
      create,
      create,
      open(1, 1, `${ROOT}/d`, true),
      ...[1, 2, 3].flatMap((s) => [
        open(s, s === 1 ? 2 : 1, `${ROOT}/a`, false),
        open(s, s === 1 ? 3 : 2, `${ROOT}/b`, false),
      ]),
    ],
  };
  lastSeq.set(1, 3).set(2, 2).set(3, 2);
  guide.apply(first);
  const out = [first];
  let stampMs = first.stampMs;
  for (const plan of plans) {
    stampMs = Math.max(0, stampMs + plan.advanceMs);
    const sessions = [...guide.sessions.keys()].sort((a, b) => a - b);
    const handles = [...guide.handles.values()].sort((a, b) => a.id - b.id);
    const commands = plan.ops.map((o): unknown => {
      if ('raw' in o) return o.raw;
      if ('delayPick' in o) {
        // Mostly a path whose lock-delay is due (as the master would send), else any path.
        const pending = [...guide.delays]
          .filter(([, endsMs]) => endsMs <= Math.max(guide.nowMs, stampMs))
          .map(([path]) => path)
          .sort();
        const pool = pending.length > 0 && o.delayPick % 4 !== 0 ? pending : PATHS;
        return { type: 'LockDelayEnd', path: pool[o.delayPick % pool.length] };
      }
      if ('expirePick' in o)
        return {
          type: 'ExpireSession',
          session: sessions[o.expirePick % Math.max(1, sessions.length)] ?? 1,
        };
      let session = sessions[o.pick % Math.max(1, sessions.length)] ?? 1;
      let body = o.body;
      if ('handle' in body) {
        // Release and CancelWait mostly aim at handles that hold or wait, or they rarely land.
        const aimed =
          body['type'] === 'Release'
            ? guide.holderHandles()
            : body['type'] === 'CancelWait'
              ? guide.waiterHandles()
              : [];
        const pool =
          aimed.length > 0 && o.pick % 4 !== 0
            ? handles.filter((h) => aimed.includes(h.id))
            : handles;
        const chosen = pool[o.pick % Math.max(1, pool.length)];
        body = { ...body, handle: chosen?.id ?? 1 + (o.pick % 5) };
        if (chosen !== undefined && !o.isStranger) session = chosen.session;
      }
      const last = lastSeq.get(session) ?? 0;
      const seq =
        o.seqKind === 'next' || last === 0
          ? last + 1
          : o.seqKind === 'same'
            ? last
            : Math.max(1, last - 2);
      lastSeq.set(session, Math.max(last, seq));
      return { ...body, session, seq };
    });
    const entry = { slot: out.length + 1, stampMs, commands };
    guide.apply(entry);
    out.push(entry);
  }
  return out;
}

function normalise(result: CommandResult): CommandResult {
  return result.type === 'error' ? { type: 'error', code: result.code, message: '' } : result;
}

interface NodeRow {
  path: string;
  is_directory: number;
  is_ephemeral: number;
  instance: number;
  content_generation: number;
  lock_generation: number;
  acl_generation: number;
  checksum: string;
  size_bytes: number;
  acl_read: string;
  acl_write: string;
  acl_change: string;
  created_ms: number;
  modified_ms: number;
}

function machineNodes(machine: StateMachine): NodeStat[] {
  const rows = machine.database
    .prepare<[], NodeRow>('SELECT *, length(contents) AS size_bytes FROM nodes ORDER BY path')
    .all();
  return rows.map((row) => ({
    path: row.path,
    isDirectory: row.is_directory === 1,
    isEphemeral: row.is_ephemeral === 1,
    instance: row.instance,
    contentGeneration: row.content_generation,
    lockGeneration: row.lock_generation,
    aclGeneration: row.acl_generation,
    checksum: row.checksum,
    sizeBytes: row.size_bytes,
    acl: { read: row.acl_read, write: row.acl_write, changeAcl: row.acl_change },
    createdMs: row.created_ms,
    modifiedMs: row.modified_ms,
  }));
}

const dir = mkdtempSync(join(tmpdir(), 'paxlock-model-test-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
let fileCount = 0;

const newMachine = (): StateMachine => StateMachine.open(new Database(':memory:'), { cell: CELL });

describe('the SQLite machine against the reference model', () => {
  test('property: same results, events, namespace, locks and sessions after every entry', () => {
    fc.assert(
      fc.property(entries, (plans) => {
        const machine = newMachine();
        const model = new Model(CELL);
        for (const entry of concretise(plans)) {
          const actual = machine.apply(entry);
          machine.checkInvariants();
          const expected = model.apply(entry);
          expect(actual.results.map(normalise)).toEqual(expected.results);
          expect(actual.events).toEqual(expected.events);
          expect(machineNodes(machine)).toEqual(model.listNodes());
          expect(machine.query({ type: 'ListLocks' })).toEqual({
            type: 'locks',
            locks: model.listLocks(),
          });
          expect(machine.query({ type: 'ListSessions' })).toEqual({
            type: 'sessions',
            sessions: model.listSessions(),
          });
        }
        machine.database.close();
      }),
      { numRuns: 300 },
    );
  });

  test('property: the random runs exercise locks, events and exactly-once replies', () => {
    // Guards the generator: a generator that never reaches the interesting states proves little.
    const seen = new Set<string>();
    fc.assert(
      fc.property(entries, (plans) => {
        const model = new Model(CELL);
        for (const entry of concretise(plans)) {
          const { results, events } = model.apply(entry);
          for (const result of results)
            seen.add(result.type === 'error' ? result.code : result.type);
          for (const result of results) {
            if (result.type === 'lock-delay-ended' && result.grantedCount > 0)
              seen.add('delay-grant');
          }
          for (const event of events) seen.add(event.type);
        }
      }),
      { numRuns: 300, seed: 42 },
    );
    for (const kind of [
      'acquired',
      'queued',
      'lock-granted',
      'lock-acquired',
      'handle-invalid',
      'child-added',
      'child-removed',
      'contents-modified',
      'conflicting-lock-request',
      'CAS_MISMATCH',
      'LOCK_HELD',
      'LOCK_DELAYED',
      'STALE_SEQ',
      'BAD_HANDLE',
      'NOT_EMPTY',
      'wait-cancelled',
      'session-expired',
      'session-closed',
      'child-modified',
      'deleted',
      'acl-set',
      'closed',
      'released',
      'lock-delay-ended',
      'delay-grant',
      'EXISTS',
      'NOT_FOUND',
      'IS_A_DIRECTORY',
      'NOT_A_DIRECTORY',
      'LOCK_ALREADY_OWNED',
      'LOCK_NOT_HELD',
      'NOT_WAITING',
      'SESSION_EXPIRED',
      'BAD_PATH',
      'BAD_REQUEST',
    ]) {
      expect([...seen], kind).toContain(kind);
    }
  });

  test('property: a machine restored from a mid-run snapshot ends with the same digest', () => {
    fc.assert(
      fc.property(entries, fc.nat(), (plans, cutSeed) => {
        const all = concretise(plans);
        const cut = cutSeed % (all.length + 1);
        const whole = newMachine();
        const part = newMachine();
        for (const entry of all.slice(0, cut)) {
          whole.apply(entry);
          part.apply(entry);
        }
        const restored = StateMachine.restore(part.snapshot(), { cell: CELL });
        part.database.close();
        expect(restored.digest()).toBe(whole.digest());
        for (const entry of all.slice(cut)) {
          expect(restored.apply(entry)).toEqual(whole.apply(entry));
        }
        expect(restored.appliedIndex).toBe(whole.appliedIndex);
        expect(restored.digest()).toBe(whole.digest());
        whole.database.close();
        restored.database.close();
      }),
      { numRuns: 150 },
    );
  });

  test('property: a WAL file database and an in-memory one end with the same digest', () => {
    fc.assert(
      fc.property(entries, (plans) => {
        const db = new Database(join(dir, `run-${++fileCount}.db`));
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        const onFile = StateMachine.open(db, { cell: CELL });
        const inMemory = newMachine();
        for (const entry of concretise(plans))
          expect(onFile.apply(entry)).toEqual(inMemory.apply(entry));
        expect(onFile.digest()).toBe(inMemory.digest());
        // The digest is logical: rewriting the file's pages changes nothing.
        db.exec('VACUUM');
        expect(onFile.digest()).toBe(inMemory.digest());
        db.close();
        inMemory.database.close();
      }),
      { numRuns: 20 },
    );
  });
});
