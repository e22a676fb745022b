// Files and handles (Burrows 2006, section 2.6): Open gives a handle on a node, and every
// other call goes through a handle. A handle lives in the replicated state, so it survives
// fail-overs; it dies when it is closed, when its node is deleted, or with its session.
//
// A handle is also where events arrive: the ones it asked for at Open (contents modified,
// child added/removed/modified, lock acquired, conflicting lock request), `handle-invalid`
// always, and `reread` when the client cannot vouch that no event was lost (a gap in the
// session's event numbers, or a change of master). They come as an EventEmitter ('event') and as
// an async iterator.

import { EventEmitter } from 'node:events';
import {
  ErrorCode,
  EventMask,
  EVENT_MASK_ALL,
  LIMITS,
  type CommandResult,
  type DirEntry,
  type MachineEvent,
  type NodeStat,
  type QueryResult,
} from '@paxlock/shared';
import type { CallOptions, HandleSink, PaxlockClient, ReadOptions } from './client.ts';
import { PaxlockError } from './errors.ts';
import { acquireOn, type AcquireOptions, type Lock, type LockState } from './locks.ts';

/** The events a handle can ask for at Open. */
export type WatchableEvent =
  | 'contents-modified'
  | 'child-added'
  | 'child-removed'
  | 'child-modified'
  | 'lock-acquired'
  | 'conflicting-lock-request';

const eventBits: Readonly<Record<WatchableEvent, number>> = {
  'contents-modified': EventMask.contentsModified,
  'child-added': EventMask.childAdded,
  'child-removed': EventMask.childRemoved,
  'child-modified': EventMask.childModified,
  'lock-acquired': EventMask.lockAcquired,
  'conflicting-lock-request': EventMask.conflictingLockRequest,
};

/** Something happened that the handle may have missed events about: read its state again. */
export interface RereadEvent {
  readonly type: 'reread';
  readonly path: string;
  readonly reason: 'event-gap' | 'master-failover';
}

/** What a handle delivers: the machine's events for it (grants are the lock code's), and reread. */
export type HandleEvent = Exclude<MachineEvent, { type: 'lock-granted' }> | RereadEvent;

export interface OpenOptions extends CallOptions {
  /** false (default): the node must exist; true: open or create; 'must': create, failing with EXISTS. */
  readonly create?: boolean | 'must';
  /** A created node is deleted when the session that created it ends. */
  readonly ephemeral?: boolean;
  /** The node is (or is created as) a directory. */
  readonly directory?: boolean;
  /** Contents of a created file. */
  readonly contents?: Uint8Array | string;
  /** Events to deliver on this handle: names, or 'all'. */
  readonly events?: readonly WatchableEvent[] | 'all';
  /** Lock-delay if this handle loses a lock it holds (0..60 000 ms); default 10 s. */
  readonly lockDelayMs?: number;
}

/** The client's default lock-delay: Chubby's minute is long for people used to etcd and Consul. */
export const DEFAULT_LOCK_DELAY_MS = 10_000;

export interface WriteOptions extends CallOptions {
  /** Compare-and-set: write only if the file's content generation is still this one. */
  readonly ifGeneration?: number;
}

export interface HandleEvents {
  event: [HandleEvent];
  /** The handle is gone (closed, its node deleted, or its session over). */
  invalid: [PaxlockError];
}

function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

export function eventMaskOf(events: OpenOptions['events']): number {
  if (events === undefined) return 0;
  if (events === 'all') return EVENT_MASK_ALL;
  let mask = 0;
  for (const name of events) {
    const bit = eventBits[name] as number | undefined;
    if (bit === undefined) throw new PaxlockError(ErrorCode.BAD_REQUEST, `unknown event "${name}"`);
    mask |= bit;
  }
  return mask;
}

/** Turns an error result into a thrown PaxlockError; returns the success otherwise. */
export function expectResult<T extends (CommandResult | QueryResult)['type']>(
  result: CommandResult | QueryResult,
  type: T,
  what: string,
): Extract<CommandResult | QueryResult, { type: T }> {
  if (result.type === 'error') throw new PaxlockError(result.code, `${what}: ${result.message}`);
  if (result.type !== type)
    throw new PaxlockError(ErrorCode.BAD_FRAME, `${what}: unexpected result ${result.type}`);
  return result as Extract<CommandResult | QueryResult, { type: T }>;
}

/** Opens `path` (resolved against the cell root) and returns a live handle. */
export async function openHandle(
  client: PaxlockClient,
  path: string,
  options: OpenOptions = {},
): Promise<Handle> {
  const full = client.resolve(path);
  const lockDelayMs = options.lockDelayMs ?? DEFAULT_LOCK_DELAY_MS;
  if (!Number.isInteger(lockDelayMs) || lockDelayMs < 0 || lockDelayMs > LIMITS.lockDelayMaxMs) {
    throw new PaxlockError(
      ErrorCode.BAD_REQUEST,
      `lockDelayMs must be an integer from 0 to ${LIMITS.lockDelayMaxMs}`,
    );
  }
  const result = await client.command(
    {
      type: 'Open',
      path: full,
      create: options.create === true ? 'may' : options.create === 'must' ? 'must' : 'never',
      ephemeral: options.ephemeral === true,
      directory: options.directory === true,
      ...(options.contents === undefined ? {} : { contents: toBytes(options.contents) }),
      eventMask: eventMaskOf(options.events),
      lockDelayMs,
    },
    options,
  );
  const opened = expectResult(result, 'opened', `open ${full}`);
  const handle = new Handle(client, full, opened.handle, opened.created, opened.stat);
  client.registerHandle(opened.handle, handle);
  return handle;
}

export class Handle
  extends EventEmitter<HandleEvents>
  implements HandleSink, AsyncIterable<HandleEvent>
{
  readonly client: PaxlockClient;
  /** The node's full name. */
  readonly path: string;
  /** The handle's id in the cell. */
  readonly id: number;
  /** Whether the Open created the node. */
  readonly created: boolean;
  /** The node's stat at Open. */
  readonly openStat: NodeStat;
  #error: PaxlockError | null = null;
  readonly #iterators = new Set<(event: HandleEvent | null) => void>();
  /** @internal The lock code's state for this handle. */
  lockState: LockState | null = null;

  constructor(client: PaxlockClient, path: string, id: number, created: boolean, stat: NodeStat) {
    super();
    this.client = client;
    this.path = path;
    this.id = id;
    this.created = created;
    this.openStat = stat;
  }

  /** False once the handle is closed, its node deleted, or its session over. */
  get isValid(): boolean {
    return this.#error === null;
  }

  /** The file's contents. */
  async read(options: CallOptions = {}): Promise<Buffer> {
    return (await this.readWithStat(options)).contents;
  }

  async readWithStat(options: CallOptions = {}): Promise<{ contents: Buffer; stat: NodeStat }> {
    this.#check();
    const result = await this.client.query(
      { type: 'GetContentsAndStat', session: this.client.session, handle: this.id },
      options,
    );
    const got = expectResult(result, 'contents-and-stat', `read ${this.path}`);
    return { contents: Buffer.from(got.contents), stat: got.stat };
  }

  async stat(options: CallOptions = {}): Promise<NodeStat> {
    this.#check();
    const result = await this.client.query(
      { type: 'GetStat', session: this.client.session, handle: this.id },
      options,
    );
    return expectResult(result, 'stat', `stat ${this.path}`).stat;
  }

  async readdir(options: CallOptions = {}): Promise<readonly DirEntry[]> {
    this.#check();
    const result = await this.client.query(
      { type: 'ReadDir', session: this.client.session, handle: this.id },
      options,
    );
    return expectResult(result, 'dir', `readdir ${this.path}`).entries;
  }

  /** Replaces the file's contents (whole); with ifGeneration, only if nobody wrote in between. */
  async write(
    data: Uint8Array | string,
    options: WriteOptions = {},
  ): Promise<{ contentGeneration: number; checksum: string }> {
    this.#check();
    const contents = toBytes(data);
    const result = await this.client.command(
      {
        type: 'SetContents',
        handle: this.id,
        contents,
        ...(options.ifGeneration === undefined ? {} : { ifGeneration: options.ifGeneration }),
      },
      options,
    );
    const set = expectResult(result, 'contents-set', `write ${this.path}`);
    return { contentGeneration: set.contentGeneration, checksum: set.checksum };
  }

  /** Deletes the node (a directory must be empty); this handle is closed by it. */
  async delete(options: CallOptions = {}): Promise<void> {
    this.#check();
    const result = await this.client.command({ type: 'Delete', handle: this.id }, options);
    expectResult(result, 'deleted', `delete ${this.path}`);
    this.#invalidate(new PaxlockError(ErrorCode.BAD_HANDLE, `${this.path} was deleted`));
  }

  async close(options: CallOptions = {}): Promise<void> {
    if (this.#error !== null) return;
    const result = await this.client.command({ type: 'Close', handle: this.id }, options);
    if (
      result.type === 'error' &&
      result.code !== ErrorCode.BAD_HANDLE &&
      result.code !== ErrorCode.SESSION_EXPIRED
    ) {
      throw new PaxlockError(result.code, `close ${this.path}: ${result.message}`);
    }
    this.#invalidate(new PaxlockError(ErrorCode.BAD_HANDLE, `${this.path}: the handle is closed`));
  }

  // --- locks (locks.ts) -----------------------------------------------------------------------

  /** Waits for the lock (FIFO) and returns it; the signal or timeout cancels the wait. */
  async acquire(options: AcquireOptions = {}): Promise<Lock> {
    this.#check();
    const lock = await acquireOn(this, { ...options, wait: true });
    if (lock === null) throw new PaxlockError(ErrorCode.LOCK_HELD, `${this.path} is held`);
    return lock;
  }

  /** Takes the lock if it is free now; null if it is held, queued for, or in lock-delay. */
  async tryAcquire(options: Omit<AcquireOptions, 'timeoutMs'> = {}): Promise<Lock | null> {
    this.#check();
    return acquireOn(this, { ...options, wait: false });
  }

  /** The sequencer of the lock this handle holds, or null: pass it to the servers you write to. */
  sequencer(): string | null {
    return this.lock?.sequencer ?? null;
  }

  /** The lock this handle holds, if any. */
  get lock(): Lock | null {
    return this.lockState?.lock ?? null;
  }

  /** Releases the lock this handle holds. */
  async release(options: CallOptions = {}): Promise<void> {
    const lock = this.lock;
    if (lock === null)
      throw new PaxlockError(ErrorCode.LOCK_NOT_HELD, `${this.path}: this handle holds no lock`);
    await lock.release(options);
  }

  // --- events ---------------------------------------------------------------------------------

  /** The handle's events from now on, until the handle dies or the signal fires. */
  events(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<HandleEvent> {
    const queue: HandleEvent[] = [];
    let wake: (() => void) | null = null;
    let isDone = this.#error !== null;
    const push = (event: HandleEvent | null): void => {
      if (event === null) isDone = true;
      else queue.push(event);
      wake?.();
    };
    this.#iterators.add(push);
    const finish = (): void => {
      isDone = true;
      this.#iterators.delete(push);
      wake?.();
    };
    options.signal?.addEventListener('abort', finish, { once: true });
    const iterator: AsyncIterableIterator<HandleEvent> = {
      next: async (): Promise<IteratorResult<HandleEvent>> => {
        for (;;) {
          const event = queue.shift();
          if (event !== undefined) return { value: event, done: false };
          if (isDone || options.signal?.aborted === true) {
            this.#iterators.delete(push);
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = null;
        }
      },
      return: async (): Promise<IteratorResult<HandleEvent>> => {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  [Symbol.asyncIterator](): AsyncIterator<HandleEvent> {
    return this.events();
  }

  // --- HandleSink: called by the client -------------------------------------------------------

  /** @internal */
  onEvent(event: MachineEvent): void {
    if (event.type === 'lock-granted') {
      this.lockState?.onGranted(event.sequencer);
      return;
    }
    this.#deliver(event);
    if (event.type === 'handle-invalid')
      this.#invalidate(new PaxlockError(ErrorCode.BAD_HANDLE, `${this.path} was deleted`));
  }

  /** @internal */
  onReread(reason: 'event-gap' | 'master-failover'): void {
    this.lockState?.onReread();
    this.#deliver({ type: 'reread', path: this.path, reason });
  }

  /** @internal */
  onJeopardy(): void {
    this.lockState?.onJeopardy();
  }

  /** @internal */
  onSessionEnd(error: PaxlockError): void {
    this.#invalidate(error);
  }

  #deliver(event: HandleEvent): void {
    for (const push of this.#iterators) push(event);
    this.emit('event', event);
  }

  #invalidate(error: PaxlockError): void {
    if (this.#error !== null) return;
    this.#error = error;
    this.client.unregisterHandle(this.id);
    this.lockState?.onHandleGone(error);
    for (const push of this.#iterators) push(null);
    this.#iterators.clear();
    this.emit('invalid', error);
  }

  #check(): void {
    this.client.checkUsable();
    if (this.#error !== null) throw this.#error;
  }
}

// --- whole-file helpers: open, act, close ------------------------------------------------------

async function withHandle<T>(
  client: PaxlockClient,
  path: string,
  options: OpenOptions,
  fn: (handle: Handle) => Promise<T>,
): Promise<T> {
  const handle = await openHandle(client, path, options);
  try {
    return await fn(handle);
  } finally {
    await handle.close(options).catch(() => undefined);
  }
}

function callOptions(options: CallOptions): CallOptions {
  return {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  };
}

export async function readFile(
  client: PaxlockClient,
  path: string,
  options: ReadOptions = {},
): Promise<Buffer> {
  return (await client.read(path, options)).contents;
}

export interface WriteFileOptions extends WriteOptions {
  /** Create the file if it does not exist (default true). With ifGeneration 0: only create. */
  readonly create?: boolean;
}

/**
 * Writes a whole file, creating it if needed. `ifGeneration: 0` means "only if it does not
 * exist yet"; any other generation means "only if nobody wrote since" (CAS_MISMATCH otherwise).
 */
export async function writeFile(
  client: PaxlockClient,
  path: string,
  data: Uint8Array | string,
  options: WriteFileOptions = {},
): Promise<{ contentGeneration: number; checksum: string }> {
  const call = callOptions(options);
  const contents = toBytes(data);
  if (options.ifGeneration === 0) {
    const handle = await openHandle(client, path, { ...call, create: 'must', contents });
    await handle.close(call).catch(() => undefined);
    return {
      contentGeneration: handle.openStat.contentGeneration,
      checksum: handle.openStat.checksum,
    };
  }
  const create = options.ifGeneration === undefined && options.create !== false;
  // (An ephemeral file lives only while a handle is open on it: use open() for those.)
  return withHandle(
    client,
    path,
    { ...call, create, ...(create ? { contents } : {}) },
    async (handle) => {
      if (handle.created)
        return {
          contentGeneration: handle.openStat.contentGeneration,
          checksum: handle.openStat.checksum,
        };
      return handle.write(contents, {
        ...call,
        ...(options.ifGeneration === undefined ? {} : { ifGeneration: options.ifGeneration }),
      });
    },
  );
}

/** Opens an existing node whatever its kind (a file first, then a directory). */
export async function openExisting(
  client: PaxlockClient,
  path: string,
  options: OpenOptions = {},
): Promise<Handle> {
  try {
    return await openHandle(client, path, { ...options, create: false, directory: false });
  } catch (err: unknown) {
    if (!(err instanceof PaxlockError) || err.code !== ErrorCode.IS_A_DIRECTORY) throw err;
    return openHandle(client, path, { ...options, create: false, directory: true });
  }
}

export async function statPath(
  client: PaxlockClient,
  path: string,
  options: ReadOptions = {},
): Promise<NodeStat> {
  const { result } = await client.readQuery(
    { type: 'StatPath', path: client.resolve(path) },
    options,
  );
  return expectResult(result, 'stat', `stat ${client.resolve(path)}`).stat;
}

export async function readDir(
  client: PaxlockClient,
  path: string,
  options: ReadOptions = {},
): Promise<readonly DirEntry[]> {
  const { result } = await client.readQuery(
    { type: 'ListPath', path: client.resolve(path) },
    options,
  );
  return expectResult(result, 'dir', `readdir ${client.resolve(path)}`).entries;
}

export async function exists(
  client: PaxlockClient,
  path: string,
  options: CallOptions = {},
): Promise<boolean> {
  try {
    await statPath(client, path, options);
    return true;
  } catch (err: unknown) {
    if (err instanceof PaxlockError && err.code === ErrorCode.NOT_FOUND) return false;
    throw err;
  }
}

/** Creates a directory; with `parents`, also its missing ancestors, and no error if it exists. */
export async function mkdir(
  client: PaxlockClient,
  path: string,
  options: CallOptions & { parents?: boolean } = {},
): Promise<void> {
  const full = client.resolve(path);
  const call = callOptions(options);
  if (options.parents !== true) {
    await withHandle(client, full, { ...call, create: 'must', directory: true }, async () =>
      Promise.resolve(),
    );
    return;
  }
  const root = `/ls/${client.cellName}`;
  const parts = full.slice(root.length + 1).split('/');
  for (let i = 1; i <= parts.length; i++) {
    await withHandle(
      client,
      `${root}/${parts.slice(0, i).join('/')}`,
      { ...call, create: true, directory: true },
      async () => Promise.resolve(),
    );
  }
}

/** Deletes a node; with `recursive`, a directory and everything below it. */
export async function remove(
  client: PaxlockClient,
  path: string,
  options: CallOptions & { recursive?: boolean } = {},
): Promise<void> {
  const full = client.resolve(path);
  const call = callOptions(options);
  const handle = await openExisting(client, full, call);
  try {
    if (options.recursive === true && handle.openStat.isDirectory) {
      for (const entry of await handle.readdir(call))
        await remove(client, `${full}/${entry.name}`, options);
    }
    await handle.delete(call);
  } finally {
    await handle.close(call).catch(() => undefined);
  }
}
