// Copies of the live state database, taken without stopping the replica (docs/cell.md,
// Snapshots, and Backup and restore): for a snapshot sent to a peer behind the log's compaction
// point (node.ts), and for GET /backup on the master.
//
// A copy is made with SQLite's online backup API on the replica's own state.db connection,
// a few pages per event-loop turn (better-sqlite3's db.backup). Pages that entries applied
// through that same connection change during the copy are carried into it, so the copy is the
// state as of the step that completes it; its slot is therefore read from the copy itself, not
// from the live machine when the copy started. The copy is then read back in chunks,
// asynchronously: once to hash it, once to send it, each chunk sent only while the receiver
// keeps up (a bounded window), so the whole database is never in memory.
//
// Why not db.serialize(): it copies the whole database in one synchronous call (0.6 s for a
// 150 MB state here, plus the hash), and all that time the master neither heartbeats nor
// answers; a large enough state costs it its followers, who stand for master after 1 s.
//
// What still blocks the loop: each step (PAGES_PER_STEP pages, well under a millisecond), and
// the step that completes the copy, in which SQLite commits the copy with an fsync of what it
// has not yet written (its page cache, 16 MiB in this build of better-sqlite3). So that this
// final fsync does not also write back the whole file, the copy is fdatasync'ed in the
// background (the libuv thread pool) every SYNC_EVERY_PAGES pages while it grows. The copy
// itself needs no durability: it is deleted after use, and after a crash at start-up.
//
// Files: state.db.copy-<pid>-<n> in the data directory, with SQLite's -journal while it is
// written and -wal/-shm once it has been opened to read its slot (its pages carry state.db's WAL
// mark). removeStateCopy removes all four; removeLeftoverCopies every one at start-up, and the
// files of snapshots being received (state.db.incoming-<n>, node.ts) too.

import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { assert } from '@paxlock/shared';
import { StateMachine } from '../machine/index.ts';

/**
 * Pages (4 KiB each in state.db) copied per step: one step takes about 0.5 ms here (64 pages;
 * measured by scripts/bench-snapshot.ts), so entries, heartbeats and clients interleave freely.
 */
export const PAGES_PER_STEP = 64;
/** The copy is fdatasync'ed in the background after this many more pages (4 MiB). */
export const SYNC_EVERY_PAGES = 1_024;
/** How a copy's file name starts, in the data directory. */
export const COPY_PREFIX = 'state.db.copy-';
/**
 * How the file of a snapshot being received starts (node.ts writes it chunk by chunk); without
 * the dash, the name older versions wrote it under.
 */
export const INCOMING_PREFIX = 'state.db.incoming-';
/** What SQLite may put beside a copy. */
const COPY_SUFFIXES = ['', '-journal', '-wal', '-shm'];
/** How often a paused send looks at the receiver's window again. */
const WINDOW_POLL_MS = 2;

let copiesMade = 0;

export interface StateCopy {
  /** The copy's file; the caller removes it (removeStateCopy) when done with it. */
  readonly path: string;
  /** The slot the copy is at (its applied index, read from the copy). */
  readonly slot: number;
  readonly sizeBytes: number;
}

export interface CopyOptions {
  /** Where to write the copy: the data directory, so it is on the same disk and found at start-up. */
  readonly dir: string;
  /** The cell, checked in the copy. */
  readonly cell: string;
  /** Aborting ends the copy at its next step and removes the file; the promise rejects. */
  readonly signal: AbortSignal;
  readonly pagesPerStep?: number;
  readonly syncEveryPages?: number;
  /** Called after each step (tests and the benchmark count them). */
  readonly onStep?: (progress: { readonly totalPages: number; readonly remainingPages: number }) => void;
}

/**
 * Copies the database open on `db` into a new file in `dir`, a few pages per event-loop turn,
 * and returns it with its slot. Rejects if aborted or if `db` is closed meanwhile (a replica
 * installing a snapshot, or stopping), leaving no file behind.
 */
export async function copyState(db: Database.Database, options: CopyOptions): Promise<StateCopy> {
  const pagesPerStep = options.pagesPerStep ?? PAGES_PER_STEP;
  const syncEveryPages = options.syncEveryPages ?? SYNC_EVERY_PAGES;
  assert(pagesPerStep >= 1 && syncEveryPages >= 1, 'copy step sizes must be positive');
  options.signal.throwIfAborted();
  copiesMade++;
  const path = join(options.dir, `${COPY_PREFIX}${String(process.pid)}-${String(copiesMade)}`);
  removeStateCopy(path);
  const syncer = new BackgroundSync(path);
  let pagesSinceSync = 0;
  try {
    await db.backup(path, {
      progress: (progress) => {
        // Thrown here, better-sqlite3 closes the backup, deletes the new file and rejects.
        options.signal.throwIfAborted();
        options.onStep?.(progress);
        pagesSinceSync += pagesPerStep;
        if (pagesSinceSync >= syncEveryPages && syncer.start()) pagesSinceSync = 0;
        return pagesPerStep;
      },
    });
    const syncFailure = await syncer.close();
    if (syncFailure !== null) throw syncFailure.err;
    options.signal.throwIfAborted();
    const copy = new Database(path, { readonly: true, fileMustExist: true });
    let slot: number;
    try {
      slot = StateMachine.appliedIndexOf(copy, { cell: options.cell });
    } finally {
      copy.close();
    }
    // The read-only open made a -wal and a -shm (empty); the copy's bytes are the file alone.
    for (const suffix of ['-wal', '-shm']) rmSync(path + suffix, { force: true });
    const { size } = await stat(path);
    assert(size > 0, 'state copy is empty');
    return { path, slot, sizeBytes: size };
  } catch (err: unknown) {
    await syncer.close(); // a sync failure too: the copy's own error is the one to report
    removeStateCopy(path);
    throw err;
  }
}

/**
 * fdatasync of the copy on the libuv thread pool, at most one at a time, so that the step
 * completing the copy finds little left to write back. One descriptor serves every sync and is
 * closed only once the backup is over: closing a descriptor of a file drops every POSIX lock the
 * process holds on it, the backup's own included. Its first failure is the copy's.
 */
class BackgroundSync {
  readonly #path: string;
  #handle: FileHandle | null = null;
  #running: Promise<void> | null = null;
  #failure: { readonly err: unknown } | null = null;

  constructor(path: string) {
    this.#path = path;
  }

  /** Starts a sync unless one is running; whether it started one. */
  start(): boolean {
    if (this.#running !== null) return false;
    this.#running = this.#sync().finally(() => {
      this.#running = null;
    });
    return true;
  }

  /** Never rejects: a failure is kept for close(). */
  async #sync(): Promise<void> {
    try {
      this.#handle ??= await open(this.#path, 'r');
      await this.#handle.datasync();
    } catch (err: unknown) {
      this.#failure ??= { err };
    }
  }

  /** Waits for the running sync and closes the descriptor (after the backup is over); the first failure, or null. */
  async close(): Promise<{ readonly err: unknown } | null> {
    await this.#running;
    const handle = this.#handle;
    this.#handle = null;
    if (handle !== null) await handle.close();
    return this.#failure;
  }
}

/** Removes a copy and whatever SQLite put beside it; nothing if there is none. */
export function removeStateCopy(path: string): void {
  for (const suffix of COPY_SUFFIXES) rmSync(path + suffix, { force: true });
}

/**
 * Removes the copies and received snapshots a crash left in `dir` (at start-up, before any is
 * made), with SQLite's files beside them; their count.
 */
export function removeLeftoverCopies(dir: string): number {
  const leftovers = readdirSync(dir).filter((name) => name.startsWith(COPY_PREFIX) || name.startsWith('state.db.incoming'));
  for (const name of leftovers) rmSync(join(dir, name), { force: true });
  return leftovers.length;
}

/** The file's chunks in order, each a new buffer of at most chunkBytes, read asynchronously. */
export async function* readChunks(path: string, chunkBytes: number, signal: AbortSignal): AsyncGenerator<Buffer> {
  const handle = await open(path, 'r');
  try {
    for (;;) {
      signal.throwIfAborted();
      const buffer = Buffer.allocUnsafe(chunkBytes);
      let filled = 0;
      while (filled < chunkBytes) {
        const { bytesRead } = await handle.read(buffer, filled, chunkBytes - filled, null);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled === 0) return;
      yield buffer.subarray(0, filled);
      if (filled < chunkBytes) return;
    }
  } finally {
    await handle.close();
  }
}

/** The file's sha256 (hex), read in chunks between event-loop turns (hashing 1 MiB takes ~3 ms). */
export async function sha256OfFile(path: string, signal: AbortSignal, chunkBytes = 1024 * 1024): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of readChunks(path, chunkBytes, signal)) hash.update(chunk);
  return hash.digest('hex');
}

/** Why a send stopped before its last chunk, other than an abort. */
export class SendInterrupted extends Error {
  override readonly name = 'SendInterrupted';
}

export interface SendOptions {
  readonly path: string;
  readonly chunkBytes: number;
  /** The next chunk goes only while the receiver's unsent bytes are at most this. */
  readonly windowBytes: number;
  readonly signal: AbortSignal;
  /** The receiver's unsent bytes (a socket's bufferedAmount), or null once it is gone. */
  readonly bufferedBytes: () => number | null;
  /** Sends chunk `index` of `total`. */
  readonly send: (chunk: { readonly index: number; readonly total: number; readonly bytes: Buffer }) => void;
}

/**
 * Sends a file in chunks, each read when the receiver has room for it (windowBytes), so at most
 * a window and a chunk of it are in memory. Rejects with SendInterrupted if the receiver goes
 * away, with the abort reason if aborted. Returns the number of chunks sent.
 */
export async function sendInChunks(options: SendOptions): Promise<number> {
  const { size } = await stat(options.path);
  const total = Math.max(1, Math.ceil(size / options.chunkBytes));
  let index = 0;
  for await (const bytes of readChunks(options.path, options.chunkBytes, options.signal)) {
    for (;;) {
      const buffered = options.bufferedBytes();
      if (buffered === null) throw new SendInterrupted(`receiver gone after ${String(index)} of ${String(total)} chunks`);
      if (buffered <= options.windowBytes) break;
      await sleep(WINDOW_POLL_MS, undefined, { signal: options.signal });
    }
    assert(index < total, 'file grew while it was sent');
    options.send({ index, total, bytes });
    index++;
  }
  assert(index === total, 'file shrank while it was sent');
  return total;
}
