// Advisory locks (Burrows 2006, sections 2.4 and 2.6) and what makes them safe to use.
//
// A Lock carries its sequencer (path, mode, lock generation, node instance) and an AbortSignal.
// The signal fires the moment the client can no longer promise the lock is held: the session
// enters jeopardy (its local lease ran out, so the master may expire it and hand the lock to
// someone else once the lock-delay has passed), the session expires, the node is deleted, or the
// lock is released. A fired signal never un-fires: after `safe` the lock is still held at the
// master, but whoever was using it must have stopped; they may check `isHeld` and carry on.
//
// Waiting: Acquire with wait=true is queued by the master in FIFO order and granted by a
// `lock-granted` event in the entry that frees the lock. If the client cannot vouch that no
// event was lost (reread), it asks the master whether it now holds the lock (ListLocks).
// Cancelling a wait (signal, timeout) sends CancelWait; if the grant won the race, the lock is
// released again, so a cancelled acquire never leaves a lock held.
//
// The fencing guard is for resource servers: it remembers the newest sequencer it has seen for
// each lock and refuses older ones, so a deposed holder's late writes are turned away even
// without asking the cell.

import { encodeSequencer, ErrorCode, parseSequencer, type LockMode } from '@paxlock/shared';
import type { CallOptions, PaxlockClient } from './client.ts';
import { ClientErrorCode, PaxlockError } from './errors.ts';
import { expectResult, openHandle, type Handle, type OpenOptions } from './files.ts';

export interface AcquireOptions extends CallOptions {
  readonly mode?: LockMode;
}

export class Lock {
  readonly handle: Handle;
  readonly mode: LockMode;
  /** Pass this to the servers the lock protects; they check it (FencingGuard, checkSequencer). */
  readonly sequencer: string;
  readonly #controller = new AbortController();
  #isReleased = false;
  /** Whether the signal has fired (kept here: reading `signal.aborted` runs the getter below). */
  #hasFired = false;

  constructor(handle: Handle, mode: LockMode, sequencer: string) {
    this.handle = handle;
    this.mode = mode;
    this.sequencer = sequencer;
    // A process that was frozen (SIGSTOP, a long pause, a suspended VM) runs the timers and
    // I/O that fell due while it slept before the lease timer when it resumes: an application
    // checking `signal.aborted` from its own timer or on a request would act on a lock whose
    // lease ran out long ago. So reading `aborted` first moves the session's lease on to now
    // (client.state does, synchronously), and the signal fires at the first look.
    const signal = this.#controller.signal;
    Object.defineProperty(signal, 'aborted', {
      get: (): boolean => {
        if (!this.#hasFired) {
          const state = handle.client.state;
          if (state !== 'connected') this.#lose(`the session is ${state}`);
        }
        return this.#hasFired;
      },
    });
    signal.throwIfAborted = (): void => {
      if (signal.aborted) throw signal.reason;
    };
  }

  get path(): string {
    return this.handle.path;
  }

  /** Fires when the lock can no longer be relied on (jeopardy, expiry, deletion, release). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Held at the master as far as this client can promise right now. */
  get isHeld(): boolean {
    return !this.#isReleased && this.handle.isValid && this.handle.client.state === 'connected';
  }

  /** Releases the lock (no lock-delay: it was released, not lost). */
  async release(options: CallOptions = {}): Promise<void> {
    if (this.#isReleased) return;
    const result = await this.handle.client.command(
      { type: 'Release', handle: this.handle.id },
      options,
    );
    this.#isReleased = true;
    this.#lose('released');
    if (this.handle.lockState?.lock === this) this.handle.lockState.lock = null;
    if (
      result.type === 'error' &&
      result.code !== ErrorCode.LOCK_NOT_HELD &&
      result.code !== ErrorCode.BAD_HANDLE
    ) {
      throw new PaxlockError(result.code, `release ${this.path}: ${result.message}`);
    }
  }

  /** @internal */
  lose(why: string): void {
    this.#lose(why);
  }

  /** @internal The lock is gone for good (session over, node deleted). */
  forget(why: string): void {
    this.#isReleased = true;
    this.#lose(why);
  }

  #lose(why: string): void {
    if (this.#hasFired) return;
    this.#hasFired = true;
    this.#controller.abort(
      new PaxlockError(ClientErrorCode.LOCK_LOST, `lock ${this.path}: ${why}`),
    );
  }
}

/** @internal The lock code's per-handle state: the lock it holds, and a pending wait. */
export class LockState {
  readonly #handle: Handle;
  lock: Lock | null = null;
  #waiter: {
    mode: LockMode;
    resolve: (sequencer: string) => void;
    reject: (err: Error) => void;
    recheck: () => void;
  } | null = null;

  constructor(handle: Handle) {
    this.#handle = handle;
  }

  /**
   * A grant that came before anyone waits for it: the `queued` reply and the grant can arrive
   * in one socket read, and then the event is handled before the code awaiting the reply runs.
   */
  #earlyGrant: string | null = null;
  #isExpectingGrant = false;
  /**
   * Events may have been lost while the Acquire was on its way (a gap, or a fail-over): its
   * grant among them. A retried Acquire is answered from the session's record ('queued') even
   * if the grant came since, so the wait must ask the master at once rather than trust a push.
   */
  #wasRereadWhileExpecting = false;

  /** An Acquire is about to be sent: a grant from now on is this Acquire's. */
  expectGrant(): void {
    this.#earlyGrant = null;
    this.#isExpectingGrant = true;
    this.#wasRereadWhileExpecting = false;
  }

  onGranted(sequencer: string): void {
    if (this.#waiter !== null) this.#waiter.resolve(sequencer);
    else if (this.#isExpectingGrant) this.#earlyGrant = sequencer;
  }

  onReread(): void {
    if (this.#waiter !== null) this.#waiter.recheck();
    else if (this.#isExpectingGrant) this.#wasRereadWhileExpecting = true;
  }

  onJeopardy(): void {
    this.lock?.lose('the session is in jeopardy');
  }

  onHandleGone(error: PaxlockError): void {
    this.lock?.forget(error.message);
    this.lock = null;
    this.#waiter?.reject(error);
  }

  /** Waits for the grant of a queued Acquire, checking with the master after any reread. */
  async waitForGrant(mode: LockMode, options: AcquireOptions): Promise<string> {
    const early = this.#earlyGrant;
    const mustRecheck = this.#wasRereadWhileExpecting;
    this.#earlyGrant = null;
    this.#isExpectingGrant = false;
    this.#wasRereadWhileExpecting = false;
    if (early !== null) return early;
    const client = this.#handle.client;
    const { signal, timeoutMs } = options;
    return new Promise<string>((resolve, reject) => {
      let timer: NodeJS.Timeout | null = null;
      const finish = (): void => {
        this.#waiter = null;
        if (timer !== null) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        finish();
        const reason: unknown = signal?.reason;
        reject(
          reason instanceof Error
            ? reason
            : new PaxlockError(ErrorCode.TIMEOUT, `waiting for ${this.#handle.path} was aborted`),
        );
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          finish();
          reject(
            new PaxlockError(
              ErrorCode.TIMEOUT,
              `lock ${this.#handle.path} not granted within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiter = {
        mode,
        resolve: (sequencer) => {
          finish();
          resolve(sequencer);
        },
        reject: (err) => {
          finish();
          reject(err);
        },
        recheck: () => {
          void heldSequencer(client, this.#handle).then(
            (sequencer) => {
              if (sequencer !== null) this.#waiter?.resolve(sequencer);
            },
            () => undefined,
          );
        },
      };
      if (signal?.aborted === true) onAbort();
      else if (mustRecheck) this.#waiter.recheck();
    });
  }
}

/** The sequencer of the lock `handle` holds at the master, or null if it holds none. */
export async function heldSequencer(
  client: PaxlockClient,
  handle: Handle,
  options: CallOptions = {},
): Promise<string | null> {
  const result = await client.query({ type: 'ListLocks', path: handle.path }, options);
  const locks = expectResult(result, 'locks', `list locks of ${handle.path}`).locks;
  const info = locks[0];
  if (info?.instance === undefined || info.lockGeneration === undefined) return null;
  const holder = info.holders.find((h) => h.session === client.session && h.handle === handle.id);
  if (holder === undefined) return null;
  return encodeSequencer({
    path: handle.path,
    mode: holder.mode,
    lockGeneration: info.lockGeneration,
    instance: info.instance,
  });
}

/** Acquire on a handle; with wait=false null means "held by someone else now". */
export async function acquireOn(
  handle: Handle,
  options: AcquireOptions & { wait: boolean },
): Promise<Lock | null> {
  const client = handle.client;
  const mode = options.mode ?? 'exclusive';
  const state = (handle.lockState ??= new LockState(handle));
  if (state.lock !== null)
    throw new PaxlockError(
      ErrorCode.LOCK_ALREADY_OWNED,
      `${handle.path}: this handle already holds the lock`,
    );
  state.expectGrant();
  const result = await client.command(
    { type: 'Acquire', handle: handle.id, mode, wait: options.wait },
    options,
  );
  if (
    result.type === 'error' &&
    !options.wait &&
    (result.code === ErrorCode.LOCK_HELD || result.code === ErrorCode.LOCK_DELAYED)
  )
    return null;
  const answer = expectResult(
    result,
    result.type === 'queued' ? 'queued' : 'acquired',
    `acquire ${handle.path}`,
  );
  let sequencer: string;
  if (answer.type === 'acquired') {
    sequencer = answer.sequencer;
  } else {
    try {
      sequencer = await state.waitForGrant(mode, options);
    } catch (err: unknown) {
      await cancelWait(handle);
      throw err;
    }
  }
  const lock = new Lock(handle, mode, sequencer);
  state.lock = lock;
  // The grant may have come just as the session went into jeopardy.
  if (client.state !== 'connected') lock.lose('the session is in jeopardy');
  return lock;
}

/** Withdraws a queued Acquire; if the grant won the race, gives the lock back. */
async function cancelWait(handle: Handle): Promise<void> {
  const client = handle.client;
  if (!handle.isValid || (client.state !== 'connected' && client.state !== 'jeopardy')) return;
  const result = await client.command({ type: 'CancelWait', handle: handle.id }).catch(() => null);
  if (result?.type === 'error' && result.code === ErrorCode.NOT_WAITING) {
    await client.command({ type: 'Release', handle: handle.id }).catch(() => null);
  }
}

export interface WithLockOptions extends AcquireOptions {
  /** Lock-delay for the lock node's handle (see OpenOptions.lockDelayMs). */
  readonly lockDelayMs?: number;
  /** Create the lock node if it does not exist (default true). */
  readonly create?: boolean;
}

/**
 * Runs `fn` holding the lock on `path`: `fn` gets a signal that fires the moment the lock can no
 * longer be relied on (it must stop then), and the lock is released when `fn` returns or throws.
 */
export async function withLock<T>(
  client: PaxlockClient,
  path: string,
  fn: (signal: AbortSignal, lock: Lock) => Promise<T> | T,
  options: WithLockOptions = {},
): Promise<T> {
  const openOptions: OpenOptions = {
    create: options.create ?? true,
    ...(options.lockDelayMs === undefined ? {} : { lockDelayMs: options.lockDelayMs }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  };
  const handle = await openHandle(client, path, openOptions);
  try {
    const lock = await handle.acquire(options);
    try {
      return await fn(lock.signal, lock);
    } finally {
      const state = client.state;
      if (state === 'connected' || state === 'jeopardy')
        await lock.release().catch(() => undefined);
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * For a server that a lock protects: admits requests whose sequencer is at least as new as the
 * newest it has seen for that lock, and refuses older ones (a deposed holder's late writes).
 */
export class FencingGuard {
  readonly #newest = new Map<string, { instance: number; lockGeneration: number }>();

  /** True if the sequencer is current as far as this guard knows; remembers it if newer. */
  admit(sequencer: string): boolean {
    const parsed = parseSequencer(sequencer);
    if (parsed === undefined) return false;
    const newest = this.#newest.get(parsed.path);
    if (newest !== undefined) {
      if (parsed.instance < newest.instance) return false;
      if (parsed.instance === newest.instance && parsed.lockGeneration < newest.lockGeneration)
        return false;
    }
    this.#newest.set(parsed.path, {
      instance: parsed.instance,
      lockGeneration: parsed.lockGeneration,
    });
    return true;
  }

  /** Like admit, but throws a PaxlockError (LOCK_LOST) for a stale or malformed sequencer. */
  check(sequencer: string): void {
    if (parseSequencer(sequencer) === undefined)
      throw new PaxlockError(
        ClientErrorCode.BAD_SEQUENCER,
        `not a sequencer: ${sequencer.slice(0, 80)}`,
      );
    if (!this.admit(sequencer))
      throw new PaxlockError(
        ClientErrorCode.LOCK_LOST,
        `stale sequencer ${sequencer}: a newer holder of the lock has been seen`,
      );
  }

  /** The newest (instance, lock generation) seen for a lock path. */
  newest(path: string): { instance: number; lockGeneration: number } | undefined {
    return this.#newest.get(path);
  }
}
