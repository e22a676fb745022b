// Copies of the live state database (runtime/state-copy.ts), as a snapshot send and GET /backup
// take them: the copy is taken in many small steps with other work running between them, entries
// applied meanwhile are in it, its slot is read from the copy (not the slot when it started), the
// chunks sent are the copy's bytes with the copy's sha256, a send waits while the receiver is
// behind and stops when it is gone, and an aborted copy leaves no file.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { StateMachine } from '../../src/machine/index.ts';
import {
  copyState,
  COPY_PREFIX,
  INCOMING_PREFIX,
  readChunks,
  removeLeftoverCopies,
  SendInterrupted,
  sendInChunks,
  sha256OfFile,
} from '../../src/runtime/state-copy.ts';
import { CELL, Harness, ROOT } from '../machine/harness.ts';

let dir: string;
let db: Database.Database;
let h: Harness;
let session: number;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'paxlock-state-copy-test-'));
  // As node.ts opens state.db.
  db = new Database(join(dir, 'state.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  h = new Harness(StateMachine.open(db, { cell: CELL }));
  session = h.session();
  // About 1 MB: some 250 pages of 4 KiB.
  for (let i = 0; i < 60; i++) h.handle(session, `${ROOT}/f${String(i)}`, { contents: Buffer.alloc(16 * 1024, i) });
});

afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const never = new AbortController().signal;

/** The data directory's files other than state.db's own. */
function others(): string[] {
  return readdirSync(dir).filter((name) => !['state.db', 'state.db-wal', 'state.db-shm'].includes(name));
}

describe('copyState', () => {
  test('copies in many steps with other work between them; entries applied meanwhile are in the copy, whose slot is read from it', async () => {
    const slotAtStart = h.machine.appliedIndex;
    const digests = new Map([[slotAtStart, h.machine.digest()]]);
    let steps = 0;
    let slotAtLastStep = 0;
    let writes = 0;
    let isCopying = true;
    // Entries applied through the same connection while the copy runs, one per event-loop turn.
    const writer = (): void => {
      if (!isCopying) return;
      h.handle(session, `${ROOT}/during${String(writes++)}`, { contents: Buffer.from('written during the copy') });
      digests.set(h.machine.appliedIndex, h.machine.digest());
      setImmediate(writer);
    };
    setImmediate(writer);
    const onStep = (): void => {
      steps++;
      slotAtLastStep = h.machine.appliedIndex;
    };
    const copy = await copyState(db, { dir, cell: CELL, signal: never, pagesPerStep: 4, onStep });
    isCopying = false;

    expect(steps).toBeGreaterThan(20); // ~250 pages, 4 a step
    expect(writes).toBeGreaterThan(10); // the loop ran between steps
    // As of the step that completed it: past every step before, at or behind the live state now.
    expect(copy.slot).toBeGreaterThan(slotAtStart);
    expect(copy.slot).toBeGreaterThanOrEqual(slotAtLastStep);
    expect(copy.slot).toBeLessThanOrEqual(h.machine.appliedIndex);
    const bytes = readFileSync(copy.path);
    expect(copy.sizeBytes).toBe(bytes.byteLength);
    const restored = StateMachine.restore(bytes, { cell: CELL });
    expect(restored.appliedIndex).toBe(copy.slot);
    expect(restored.digest()).toBe(digests.get(copy.slot));
    // Only the copy itself is left beside state.db (no -journal, -wal or -shm).
    expect(others()).toEqual([copy.path.slice(dir.length + 1)]);
  });

  test('an aborted copy rejects and leaves no file; so does one whose database is closed under it', async () => {
    const controller = new AbortController();
    let steps = 0;
    const aborted = copyState(db, {
      dir,
      cell: CELL,
      signal: controller.signal,
      pagesPerStep: 2,
      onStep: () => {
        if (++steps === 5) controller.abort(new Error('replica stopping'));
      },
    });
    await expect(aborted).rejects.toThrow('replica stopping');
    expect(others()).toEqual([]);

    const closing = copyState(db, { dir, cell: CELL, signal: never, pagesPerStep: 2, onStep: () => db.close() });
    await expect(closing).rejects.toThrow(/not open/);
    expect(others()).toEqual([]);
    db = new Database(join(dir, 'state.db')); // for afterEach
  });

  test('removeLeftoverCopies removes what a crash left, and nothing else', () => {
    for (const suffix of ['', '-journal', '-wal']) writeFileSync(join(dir, `${COPY_PREFIX}77-1${suffix}`), 'x');
    writeFileSync(join(dir, `${INCOMING_PREFIX}3`), 'x'); // a snapshot being received (node.ts)
    writeFileSync(join(dir, 'state.db.incoming'), 'x'); // the same, as older versions named it
    expect(removeLeftoverCopies(dir)).toBe(5);
    expect(others()).toEqual([]);
    expect(readdirSync(dir)).toContain('state.db');
  });
});

describe('reading and sending a copy', () => {
  test('the chunks sent are the copy, in order, under the sha256 of its bytes', async () => {
    const copy = await copyState(db, { dir, cell: CELL, signal: never });
    const bytes = readFileSync(copy.path);
    const sha256 = await sha256OfFile(copy.path, never, 10_000);
    expect(sha256).toBe(createHash('sha256').update(bytes).digest('hex'));

    const sent: { index: number; total: number; bytes: Buffer }[] = [];
    const total = await sendInChunks({ path: copy.path, chunkBytes: 64 * 1024, windowBytes: 0, signal: never, bufferedBytes: () => 0, send: (c) => sent.push(c) });
    expect(total).toBe(Math.ceil(bytes.byteLength / (64 * 1024)));
    expect(sent.map((c) => c.index)).toEqual([...Array(total).keys()]);
    expect(sent.every((c) => c.total === total && c.bytes.byteLength <= 64 * 1024)).toBe(true);
    expect(Buffer.concat(sent.map((c) => c.bytes)).equals(bytes)).toBe(true);
    // Chunks are distinct buffers (each may sit in a socket's queue while the next is read).
    expect(new Set(sent.map((c) => c.bytes.buffer)).size).toBe(total);
  });

  test('readChunks reads a file whose size is a multiple of the chunk, and an empty one', async () => {
    const even = join(dir, 'even');
    writeFileSync(even, Buffer.alloc(300, 1));
    const sizes: number[] = [];
    for await (const chunk of readChunks(even, 100, never)) sizes.push(chunk.byteLength);
    expect(sizes).toEqual([100, 100, 100]);
    const empty = join(dir, 'empty');
    writeFileSync(empty, '');
    for await (const chunk of readChunks(empty, 100, never)) throw new Error(`a chunk of ${String(chunk.byteLength)} bytes from an empty file`);
  });

  test('a send waits while the receiver is behind, and stops when it is gone', async () => {
    const file = join(dir, 'data');
    writeFileSync(file, Buffer.alloc(10 * 1000, 7));
    let buffered = 0;
    let polls = 0;
    const sent: number[] = [];
    const total = await sendInChunks({
      path: file,
      chunkBytes: 1000,
      windowBytes: 2000,
      signal: never,
      // Each chunk queues 1000 bytes; the receiver drains 500 bytes a look.
      bufferedBytes: () => {
        polls++;
        buffered = Math.max(0, buffered - 500);
        return buffered;
      },
      send: (c) => {
        expect(buffered).toBeLessThanOrEqual(2000);
        buffered += c.bytes.byteLength;
        sent.push(c.index);
      },
    });
    expect(total).toBe(10);
    expect(sent).toEqual([...Array(10).keys()]);
    expect(polls).toBeGreaterThan(10); // it had to wait

    let link: number | null = 0;
    const gone = sendInChunks({
      path: file,
      chunkBytes: 1000,
      windowBytes: 2000,
      signal: never,
      bufferedBytes: () => link,
      send: (c) => {
        if (c.index === 3) link = null;
      },
    });
    await expect(gone).rejects.toBeInstanceOf(SendInterrupted);
  });
});
