// Coarse-grained leader election on a lock plus a file (Burrows 2006, section 2.1): campaigners
// queue for the exclusive lock on the election's node; the one granted it is the leader and
// writes its value, with the term's sequencer, into the node's contents. Anyone can read the
// node to learn the leader, and the sequencer says whether that leader is still current: the
// lock is taken again (a new lock generation) at every change of leader, so an old leader's
// record stops being current the moment it loses the lock.
//
// The leader's signal is its lock's signal: it fires when the session goes into jeopardy,
// which is before the master can expire the session, and so before any other campaigner can
// be granted the lock (the master waits for the whole lease, and then the lock-delay).

import { ErrorCode } from '@paxlock/shared';
import type { CallOptions, PaxlockClient } from './client.ts';
import { PaxlockError } from './errors.ts';
import { openHandle, type Handle } from './files.ts';
import type { Lock } from './locks.ts';

export interface LeaderInfo {
  readonly value: string;
  /** The leader's term: pass it to servers as a fencing token. */
  readonly sequencer: string;
  readonly session: number;
  readonly name: string;
}

export interface ElectionOptions {
  /** Lock-delay when a leader is lost without resigning (default 5 s). */
  readonly lockDelayMs?: number;
  /** How often observe() re-reads the leader when nothing happens (default: a quarter lease). */
  readonly pollMs?: number;
}

export interface Leadership {
  readonly value: string;
  readonly sequencer: string;
  /** Fires when leadership can no longer be relied on; the leader must stop acting then. */
  readonly signal: AbortSignal;
  resign(options?: CallOptions): Promise<void>;
}

interface Record {
  readonly v: 1;
  readonly value: string;
  readonly sequencer: string;
  readonly session: number;
  readonly name: string;
}

function parseRecord(contents: Uint8Array): Record | null {
  if (contents.length === 0) return null;
  try {
    const raw = JSON.parse(Buffer.from(contents).toString('utf8')) as Partial<Record> | null;
    if (
      raw?.v !== 1 ||
      typeof raw.value !== 'string' ||
      typeof raw.sequencer !== 'string' ||
      typeof raw.session !== 'number' ||
      typeof raw.name !== 'string'
    )
      return null;
    return raw as Record;
  } catch {
    return null;
  }
}

function hasFired(controller: AbortController): boolean {
  return controller.signal.aborted;
}

export const DEFAULT_ELECTION_LOCK_DELAY_MS = 5_000;

export class Election {
  readonly client: PaxlockClient;
  readonly path: string;
  readonly #lockDelayMs: number;
  readonly #pollMs: number;
  #campaignHandle: Handle | null = null;
  #lock: Lock | null = null;

  constructor(client: PaxlockClient, path: string, options: ElectionOptions = {}) {
    this.client = client;
    this.path = client.resolve(path);
    this.#lockDelayMs = options.lockDelayMs ?? DEFAULT_ELECTION_LOCK_DELAY_MS;
    this.#pollMs = options.pollMs ?? Math.max(250, Math.floor(client.leaseMs / 4));
  }

  /** True while this client is the leader as far as it can promise. */
  get isLeader(): boolean {
    return this.#lock?.isHeld === true;
  }

  /**
   * Waits to become leader, then publishes `value` and resolves. The signal (or timeout)
   * withdraws the candidacy. Campaigning again while leader is an error.
   */
  async campaign(value: string, options: CallOptions = {}): Promise<Leadership> {
    if (this.#lock !== null && !this.#lock.signal.aborted)
      throw new PaxlockError(ErrorCode.LOCK_ALREADY_OWNED, `already the leader of ${this.path}`);
    await this.#dropCampaign();
    const handle = await openHandle(this.client, this.path, {
      ...options,
      create: true,
      lockDelayMs: this.#lockDelayMs,
    });
    this.#campaignHandle = handle;
    let lock: Lock;
    try {
      lock = await handle.acquire({ ...options, mode: 'exclusive' });
    } catch (err: unknown) {
      await this.#dropCampaign();
      throw err;
    }
    this.#lock = lock;
    const record: Record = {
      v: 1,
      value,
      sequencer: lock.sequencer,
      session: this.client.session,
      name: this.client.clientName,
    };
    try {
      await handle.write(JSON.stringify(record), options);
    } catch (err: unknown) {
      await this.resign().catch(() => undefined);
      throw err;
    }
    return {
      value,
      sequencer: lock.sequencer,
      signal: lock.signal,
      resign: async (resignOptions?: CallOptions) => this.resign(resignOptions),
    };
  }

  /** Gives up leadership (or a pending candidacy); another campaigner can take over at once. */
  async resign(options: CallOptions = {}): Promise<void> {
    const lock = this.#lock;
    this.#lock = null;
    if (lock !== null) {
      const state = this.client.state;
      if (state === 'connected' || state === 'jeopardy') await lock.release(options);
    }
    await this.#dropCampaign();
  }

  /** The current leader, or null if there is none right now (between terms). */
  async leader(options: CallOptions = {}): Promise<LeaderInfo | null> {
    const handle = await openHandle(this.client, this.path, { ...options, create: false }).catch(
      (err: unknown) => {
        if (err instanceof PaxlockError && err.code === ErrorCode.NOT_FOUND) return null;
        throw err;
      },
    );
    if (handle === null) return null;
    try {
      return await this.#leaderVia(handle, options);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /**
   * The leader now and at every change after (null while there is none), until the signal
   * fires or the session ends. Changes are found from events on the node and by re-reading it
   * every pollMs, so a leader that vanishes without a new one is seen too.
   */
  async *observe(options: { signal?: AbortSignal } = {}): AsyncGenerator<LeaderInfo | null> {
    const { signal } = options;
    const handle = await openHandle(this.client, this.path, {
      create: true,
      lockDelayMs: this.#lockDelayMs,
      events: ['contents-modified', 'lock-acquired'],
      ...(signal === undefined ? {} : { signal }),
    });
    let changed = new AbortController();
    const onEvent = (): void => {
      changed.abort();
    };
    handle.on('event', onEvent);
    handle.on('invalid', onEvent);
    let last: string | undefined;
    try {
      while (signal?.aborted !== true && handle.isValid) {
        const waitForChange = changed;
        const leader = await this.#leaderVia(handle, signal === undefined ? {} : { signal });
        const key = leader === null ? '' : `${leader.sequencer}\n${leader.value}`;
        if (key !== last) {
          last = key;
          yield leader;
        }
        if (waitForChange.signal.aborted) {
          // Something happened while reading: read again at once.
          changed = new AbortController();
          continue;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, this.#pollMs);
          function done(): void {
            clearTimeout(timer);
            waitForChange.signal.removeEventListener('abort', done);
            signal?.removeEventListener('abort', done);
            resolve();
          }
          waitForChange.signal.addEventListener('abort', done, { once: true });
          signal?.addEventListener('abort', done, { once: true });
        });
        // (Read through a call: the compiler does not see the abort that the await let in.)
        if (hasFired(waitForChange)) changed = new AbortController();
      }
    } finally {
      handle.off('event', onEvent);
      handle.off('invalid', onEvent);
      await handle.close().catch(() => undefined);
    }
  }

  async #leaderVia(handle: Handle, options: CallOptions): Promise<LeaderInfo | null> {
    const { contents } = await handle.readWithStat(options);
    const record = parseRecord(contents);
    if (record === null) return null;
    if (!(await this.client.checkSequencer(record.sequencer, options))) return null;
    return {
      value: record.value,
      sequencer: record.sequencer,
      session: record.session,
      name: record.name,
    };
  }

  async #dropCampaign(): Promise<void> {
    const handle = this.#campaignHandle;
    this.#campaignHandle = null;
    if (handle !== null) await handle.close().catch(() => undefined);
  }
}
