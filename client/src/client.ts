// The paxlock client: one session with the cell, kept alive across fail-overs.
//
// Finding the master: ask the replicas for their status and follow what they say; a replica
// that is not the master redirects. Every session command carries (session, seq): on a
// redirect, a lost connection or a timeout the client finds the master again and resends the
// SAME seq, which the master answers from its record if the first attempt was applied. A new
// seq is taken only after the previous command got an answer, so a session's commands are
// applied in order. CreateSession carries a random nonce for the same reason.
//
// The session (session.ts): KeepAlives go every quarter lease. When the local lease runs out
// the session is in jeopardy: every lock's signal fires, calls wait instead of failing, and the
// client keeps looking for a master for the grace period. A KeepAlive acknowledged in time makes
// the session safe again; the grace period running out, or the master saying the session is
// gone, makes it expired, and every call fails with SESSION_EXPIRED from then on.
//
// Events: pushed by the master after their change is applied, numbered per session. A gap in
// the numbers, a KeepAlive reply that says events were lost, or any change of master (events
// applied while no master was serving are not pushed) tells every open handle to re-read
// (a `reread` event): no event is lost silently.

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import {
  cellRoot,
  ErrorCode,
  isValidPath,
  LIMITS,
  pathError,
  type CommandResult,
  type DirEntry,
  type Epoch,
  type EventPush,
  type LockInfo,
  type NodeStat,
  type SessionInfo,
  type MachineCommand,
  type MachineEvent,
  type Query,
  type QueryResult,
  type ReplicaStatus,
} from '@paxlock/shared';
import { Connection, type Reply, type Request } from './connection.ts';
import { Election, type ElectionOptions } from './election.ts';
import { isRetryable, PaxlockError } from './errors.ts';
import {
  exists,
  expectResult,
  mkdir,
  openHandle,
  readDir,
  readFile,
  remove,
  statPath,
  writeFile,
  type Handle,
  type OpenOptions,
  type WriteFileOptions,
} from './files.ts';
import { withLock, type Lock, type WithLockOptions } from './locks.ts';
import { SessionLease, type LeaseTransition, type SessionState } from './session.ts';

/** A command as the caller writes it: the client fills in session and seq. */
export type SessionCommandInput = MachineCommand extends infer C
  ? C extends { readonly seq: number; readonly session: number }
    ? Omit<C, 'seq' | 'session'>
    : never
  : never;

/** The client addresses of the local cell that `pnpm start` runs. */
export const LOCAL_CELL: readonly string[] = [
  '127.0.0.1:7201',
  '127.0.0.1:7202',
  '127.0.0.1:7203',
  '127.0.0.1:7204',
  '127.0.0.1:7205',
];

const addressPattern = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/;

/** Parses a cell list, `host:port` separated by commas or spaces. */
export function parseCellList(text: string): string[] {
  const addresses = text.split(/[\s,]+/).filter((a) => a !== '');
  if (addresses.length === 0)
    throw new PaxlockError(ErrorCode.BAD_REQUEST, 'the cell list is empty');
  for (const address of addresses) {
    const port = Number(address.slice(address.lastIndexOf(':') + 1));
    if (!addressPattern.test(address) || port < 1 || port > 65_535) {
      throw new PaxlockError(ErrorCode.BAD_REQUEST, `"${address}" is not a host:port address`);
    }
  }
  return addresses;
}

/** The cell to talk to when none is given: PAXLOCK_CELL, else the local cell of `pnpm start`. */
export function defaultCell(env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = env['PAXLOCK_CELL'];
  return fromEnv !== undefined && fromEnv.trim() !== '' ? parseCellList(fromEnv) : [...LOCAL_CELL];
}

export interface ClientOptions {
  /** Client addresses of the cell's replicas (host:port), as a list or a comma-separated string. Default: defaultCell(). */
  readonly cell?: readonly string[] | string;
  /** A name recorded with the session, for operators. Default: host:pid. */
  readonly name?: string;
  /** The session lease the master keeps (default 12 s). */
  readonly leaseMs?: number;
  /** How long to keep looking for a master after the local lease runs out (default 45 s). */
  readonly graceMs?: number;
  /** How long one attempt of a request may take before it is retried (default 3 s). */
  readonly requestTimeoutMs?: number;
  /** How long connect() looks for a master before failing (default 30 s). */
  readonly findMasterTimeoutMs?: number;
  /**
   * How long a call keeps trying (through fail-overs and jeopardy) before it fails, unless the
   * call sets its own timeout. Default: no limit: a call waits until it is answered or the
   * session expires (at most the lease plus the grace period).
   */
  readonly callTimeoutMs?: number;
  /** Aborts connect(). */
  readonly signal?: AbortSignal;
  /**
   * false: no session. The client only finds the master and reads by name (read, readFile,
   * stat, readdir, exists, listLocks, listSessions, checkSequencer): no log write at all, for
   * one-shot readers like `paxlock cat`. Commands, handles and locks need a session.
   */
  readonly session?: boolean;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Fail with TIMEOUT (or the last retryable error) after this long. */
  readonly timeoutMs?: number;
}

export interface ReadOptions extends CallOptions {
  /**
   * 'linearizable' (default): the master answers under its lease, seeing every acknowledged
   * write. 'stale': any replica may answer from its own state if it can promise that state is
   * at most `maxStalenessMs` old; the client spreads such reads over the replicas.
   */
  readonly consistency?: 'linearizable' | 'stale';
  /** For stale reads: the oldest state acceptable, in ms (default 1 000). */
  readonly maxStalenessMs?: number;
}

/** A read's answer with where it came from. */
export interface ReadAnswer<T> {
  readonly result: T;
  /** The slot the answering state reflects. */
  readonly slot: number;
  /** For a stale read: the answering replica's bound on the state's age (0 from the master). */
  readonly stalenessMs: number | null;
  /** For a stale read: the replica that answered. */
  readonly replica: number | null;
}

export interface ClientEvents {
  /** The local lease ran out: locks can no longer be relied on; calls wait. */
  jeopardy: [];
  /** A master acknowledged the session again within the grace period. */
  safe: [];
  /** The session is gone: calls fail with SESSION_EXPIRED. */
  expired: [];
  closed: [];
  /** The session's state changed (any of the above). */
  state: [SessionState];
  /** A new master serves the cell. */
  'master-failover': [Epoch];
  /** Events may have been lost: every handle was told to re-read. */
  'event-gap': [];
  /** Every event pushed to this session, before it reaches its handle. */
  event: [EventPush];
}

/** What a handle (files.ts) gives the client to route events and session changes to it. */
export interface HandleSink {
  onEvent(event: MachineEvent): void;
  onReread(reason: 'event-gap' | 'master-failover'): void;
  onJeopardy(): void;
  onSessionEnd(error: PaxlockError): void;
}

const now = (): number => performance.now();

function sameEpoch(a: Epoch | null, b: Epoch | null): boolean {
  return a !== null && b !== null && a.round === b.round && a.replica === b.replica;
}

async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Finds the master: asks each replica its status and follows what they say. */
export async function findMaster(
  cell: readonly string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ address: string; status: ReplicaStatus }> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no replica answered';
  let reachable: number;
  for (let attempt = 0; ; attempt++) {
    reachable = 0;
    for (const address of cell) {
      if (signal?.aborted === true) throw signal.reason;
      try {
        const connection = await Connection.open(address, 1_000);
        try {
          const reply = await connection.request({ type: 'status' }, 1_000);
          reachable++;
          if (
            reply.type === 'status' &&
            reply.status.role === 'master' &&
            reply.status.leaseRemainingMs > 0
          ) {
            return { address, status: reply.status };
          }
          lastError = `${address} is ${reply.type === 'status' ? reply.status.role : reply.type}`;
        } finally {
          connection.close();
        }
      } catch (err: unknown) {
        if (!(err instanceof PaxlockError)) throw err;
        lastError = err.message;
      }
    }
    if (Date.now() >= deadline) break;
    // Back off a little between sweeps: an election takes a lease or so.
    await sleep(Math.min(50 * 2 ** attempt, 500, Math.max(0, deadline - Date.now())), signal);
  }
  const majority = Math.floor(cell.length / 2) + 1;
  if (reachable < majority) {
    throw new PaxlockError(
      ErrorCode.NO_QUORUM,
      `no quorum: ${reachable} of ${cell.length} replicas reachable, ${majority} needed (${lastError})`,
    );
  }
  throw new PaxlockError(
    ErrorCode.NO_MASTER,
    `no master found within ${timeoutMs} ms (${lastError})`,
  );
}

interface SendOptions extends CallOptions {
  /** The request needs no session (status, CreateSession): it works before and after one. */
  readonly isSessionless?: boolean;
  /** Send even in jeopardy (KeepAlives, which are how jeopardy ends). */
  readonly inJeopardy?: boolean;
}

export class PaxlockClient extends EventEmitter<ClientEvents> {
  readonly #cell: readonly string[];
  readonly #name: string;
  readonly #leaseMs: number;
  readonly #graceMs: number;
  readonly #requestTimeoutMs: number;
  readonly #findMasterTimeoutMs: number;
  readonly #callTimeoutMs: number | undefined;
  #cellName = '';
  #connection: Connection | null = null;
  #hint: string | null = null;
  #session = 0;
  #seq = 0;
  #lease: SessionLease | null = null;
  #leaseTimer: NodeJS.Timeout | null = null;
  #epoch: Epoch | null = null;
  #eventEpoch: Epoch | null = null;
  #eventSeq = 0;
  #isClosed = false;
  /** Commands of a session go one at a time, in seq order. */
  #queue: Promise<unknown> = Promise.resolve();
  readonly #handles = new Map<number, HandleSink>();
  /** Events for handles not (yet) registered, by handle; see registerHandle. */
  readonly #unclaimed = new Map<number, { events: MachineEvent[]; cycle: number }>();
  #unclaimedCount = 0;
  #keepAliveCycle = 0;
  /** The search for the master in progress, shared by every call that needs it. */
  #search: Promise<Connection> | null = null;
  /** Connections to each replica for stale reads, and the next replica to ask. */
  readonly #staleConnections = new Map<string, Connection>();
  #staleNext = Math.floor(Math.random() * 5);
  /** Wakes the KeepAlive loop early (a new connection to attach, the client closing). */
  #wakeKeepAlive = new AbortController();
  /** Aborted by close() and abandon(): every call still waiting (for a master, a backoff, the
   * end of jeopardy) ends at once with CLIENT_CLOSED instead of at its next attempt. */
  readonly #closing = new AbortController();
  /** Resolved on every change of session state, for calls waiting out jeopardy. */
  #stateChanged = new AbortController();

  private constructor(options: ClientOptions) {
    super();
    this.#cell =
      options.cell === undefined
        ? defaultCell()
        : typeof options.cell === 'string'
          ? parseCellList(options.cell)
          : [...options.cell];
    if (this.#cell.length === 0)
      throw new PaxlockError(ErrorCode.BAD_REQUEST, 'the cell list is empty');
    this.#name = (options.name ?? `${hostname()}:${process.pid}`).slice(
      0,
      LIMITS.clientNameMaxChars,
    );
    this.#leaseMs = options.leaseMs ?? LIMITS.sessionLeaseDefaultMs;
    this.#graceMs = options.graceMs ?? LIMITS.graceDefaultMs;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 3_000;
    this.#findMasterTimeoutMs = options.findMasterTimeoutMs ?? 30_000;
    this.#callTimeoutMs = options.callTimeoutMs;
  }

  /** Finds the master, creates a session and starts keeping it alive. */
  static async connect(options: ClientOptions = {}): Promise<PaxlockClient> {
    const client = new PaxlockClient(options);
    // The nonce makes CreateSession exactly-once too: a retry after a fail-over gets the session
    // the first attempt created, not a second one.
    const nonce = randomBytes(16).toString('base64url');
    const sentAt = now();
    const callOptions: SendOptions = {
      isSessionless: true,
      timeoutMs: client.#findMasterTimeoutMs,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    };
    try {
      if (options.session === false) {
        // No session: find the master (and the cell's name) and stop there.
        await client.#master(client.#findMasterTimeoutMs, options.signal);
        return client;
      }
      const reply = await client.#send(
        {
          type: 'command',
          command: {
            type: 'CreateSession',
            clientName: client.#name,
            leaseMs: client.#leaseMs,
            nonce,
          },
        },
        callOptions,
      );
      if (reply.type !== 'result' || reply.result.type !== 'session-created') {
        const detail =
          reply.type === 'result' && reply.result.type === 'error'
            ? reply.result.message
            : reply.type;
        throw new PaxlockError(
          reply.type === 'result' && reply.result.type === 'error'
            ? reply.result.code
            : ErrorCode.BAD_REQUEST,
          `CreateSession failed: ${detail}`,
        );
      }
      client.#session = reply.result.session;
      client.#lease = new SessionLease(sentAt, client.#leaseMs, client.#graceMs);
      client.#armLeaseTimer();
      void client.#keepAliveLoop();
      return client;
    } catch (err: unknown) {
      client.#shutdown();
      throw err;
    }
  }

  get session(): number {
    return this.#session;
  }

  /** The cell's name: its files live under `/ls/<cell>/`. */
  get cellName(): string {
    return this.#cellName;
  }

  get clientName(): string {
    return this.#name;
  }

  get leaseMs(): number {
    return this.#leaseMs;
  }

  get epoch(): Epoch | null {
    return this.#epoch;
  }

  get masterAddress(): string | null {
    return this.#connection?.address ?? null;
  }

  /** connected, jeopardy, expired or closed; read it before trusting a lock. */
  get state(): SessionState {
    this.#advance();
    return this.#lease?.state ?? (this.#isClosed ? 'closed' : 'connected');
  }

  /** How much of the local lease is left, in ms (0 in jeopardy). */
  get leaseRemainingMs(): number {
    return this.#lease?.remaining(now()) ?? 0;
  }

  /**
   * The full name of `path`: a name starting with `/ls/` is taken as it is; any other is taken
   * relative to this cell's root (`config/x` and `/config/x` both mean `/ls/<cell>/config/x`).
   */
  resolve(path: string): string {
    const full =
      path.startsWith('/ls/') || path === '/ls'
        ? path
        : `${cellRoot(this.#cellName)}${path === '' || path === '/' ? '' : `/${path.replace(/^\/+/, '')}`}`;
    if (!isValidPath(full))
      throw new PaxlockError(
        ErrorCode.BAD_PATH,
        `bad name "${path}": ${pathError(full) ?? 'invalid'}`,
      );
    return full;
  }

  /**
   * Applies a session command exactly once and returns its result, which may be a typed error
   * result (the low-level call; files.ts and locks.ts build on it).
   */
  async command(input: SessionCommandInput, options: CallOptions = {}): Promise<CommandResult> {
    this.#needSession();
    const run = this.#queue.then(async () => {
      this.#checkUsable();
      const seq = ++this.#seq;
      const command = { ...input, session: this.#session, seq } as MachineCommand;
      const reply = await this.#send({ type: 'command', command }, options);
      if (reply.type !== 'result')
        throw new PaxlockError(ErrorCode.BAD_FRAME, `unexpected reply ${reply.type}`);
      if (reply.result.type === 'error' && reply.result.code === ErrorCode.SESSION_EXPIRED)
        this.#onExpired();
      return reply.result;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Runs a read-only query at the master (under its lease); may return a typed error result. */
  async query(query: Query, options: CallOptions = {}): Promise<QueryResult> {
    return (await this.#masterQuery(query, options)).result;
  }

  /**
   * A query answered by the master (a stale one too, when no follower could promise the
   * bound). A query naming no session goes whether or not this client has one.
   */
  async #masterQuery(
    query: Query,
    options: CallOptions,
    maxStalenessMs?: number,
  ): Promise<Extract<Reply, { type: 'query-result' }>> {
    const needsSession = 'session' in query;
    const reply = await this.#send(
      maxStalenessMs === undefined
        ? { type: 'query', query }
        : { type: 'query', query, maxStalenessMs },
      needsSession ? options : { ...options, isSessionless: true },
    );
    if (reply.type !== 'query-result')
      throw new PaxlockError(ErrorCode.BAD_FRAME, `unexpected reply ${reply.type}`);
    if (
      reply.result.type === 'error' &&
      reply.result.code === ErrorCode.SESSION_EXPIRED &&
      needsSession
    )
      this.#onExpired();
    return reply;
  }

  /**
   * Reads a file by name in one round trip (no handle): linearizable at the master by default,
   * or stale from any replica within `maxStalenessMs`.
   */
  async read(
    path: string,
    options: ReadOptions = {},
  ): Promise<{ contents: Buffer; stat: NodeStat } & Omit<ReadAnswer<unknown>, 'result'>> {
    const full = this.resolve(path);
    const answer = await this.readQuery({ type: 'ReadPath', path: full }, options);
    const got = expectResult(answer.result, 'contents-and-stat', `read ${full}`);
    return {
      contents: Buffer.from(got.contents),
      stat: got.stat,
      slot: answer.slot,
      stalenessMs: answer.stalenessMs,
      replica: answer.replica,
    };
  }

  /** Runs a query with the read's consistency (see ReadOptions); error results are returned. */
  async readQuery(query: Query, options: ReadOptions = {}): Promise<ReadAnswer<QueryResult>> {
    if (options.consistency !== 'stale') {
      const reply = await this.#masterQuery(query, options);
      return { result: reply.result, slot: reply.slot, stalenessMs: null, replica: null };
    }
    const maxStalenessMs = options.maxStalenessMs ?? 1_000;
    const staleAnswer = (
      reply: Extract<Reply, { type: 'query-result' }>,
    ): ReadAnswer<QueryResult> => ({
      result: reply.result,
      slot: reply.slot,
      stalenessMs: reply.stalenessMs ?? 0,
      replica: reply.replica ?? null,
    });
    // Round-robin over the replicas; one that cannot promise the bound redirects, and the read
    // goes on to the next, then to the master.
    for (let tried = 0; tried < this.#cell.length; tried++) {
      if (options.signal?.aborted === true) throw options.signal.reason;
      const address = this.#cell[this.#staleNext++ % this.#cell.length];
      if (address === undefined) continue;
      const connection = await this.#staleConnection(address);
      if (connection === null) continue;
      const reply = await connection
        .request({ type: 'query', query, maxStalenessMs }, this.#requestTimeoutMs)
        .catch(() => null);
      if (reply?.type === 'query-result') {
        this.#observeEpoch(reply.epoch);
        return staleAnswer(reply);
      }
    }
    return staleAnswer(await this.#masterQuery(query, options, maxStalenessMs));
  }

  async #staleConnection(address: string): Promise<Connection | null> {
    const open = this.#staleConnections.get(address);
    if (open?.isOpen === true) return open;
    const connection = await Connection.open(
      address,
      Math.min(this.#requestTimeoutMs, 1_000),
    ).catch(() => null);
    if (connection === null) return null;
    if (this.#isClosed) {
      connection.close();
      return null;
    }
    this.#staleConnections.set(address, connection);
    return connection;
  }

  /** Asks one replica for its own status (any replica, master or not). */
  async replicaStatus(
    address: string,
    options: { timeoutMs?: number; digest?: boolean } = {},
  ): Promise<ReplicaStatus> {
    const timeoutMs = options.timeoutMs ?? this.#requestTimeoutMs;
    const connection = await Connection.open(address, timeoutMs);
    try {
      const reply = await connection.request(
        options.digest === true ? { type: 'status', digest: true } : { type: 'status' },
        timeoutMs,
      );
      if (reply.type !== 'status')
        throw new PaxlockError(ErrorCode.BAD_FRAME, `unexpected reply ${reply.type}`);
      return reply.status;
    } finally {
      connection.close();
    }
  }

  /** The replica addresses this client uses. */
  get cell(): readonly string[] {
    return this.#cell;
  }

  /** Sends one KeepAlive now; returns the lease the master granted (ms). */
  async keepAlive(options: CallOptions = {}): Promise<number> {
    this.#needSession();
    const sentAt = now();
    const eventSeqSeen = sameEpoch(this.#eventEpoch, this.#epoch) ? this.#eventSeq : 0;
    const reply = await this.#send(
      { type: 'keep-alive', session: this.#session, eventSeqSeen },
      { ...options, inJeopardy: true },
    );
    if (reply.type !== 'keep-alive-ack')
      throw new PaxlockError(ErrorCode.BAD_FRAME, `unexpected reply ${reply.type}`);
    if (this.#lease !== null) this.#apply(this.#lease.onAck(sentAt, reply.leaseRemainingMs, now()));
    if (reply.isEventGap) this.#onGap('event-gap');
    // Unclaimed events kept through a whole KeepAlive cycle belong to no handle of ours.
    this.#keepAliveCycle++;
    for (const [handle, entry] of this.#unclaimed) {
      if (entry.cycle < this.#keepAliveCycle - 1) {
        this.#unclaimed.delete(handle);
        this.#unclaimedCount -= entry.events.length;
      }
    }
    this.#eventEpoch = reply.epoch;
    this.#eventSeq = reply.eventSeq;
    return reply.leaseRemainingMs;
  }

  /** Ends the session cleanly (its locks are released without lock-delay) and disconnects. */
  async close(options: CallOptions = {}): Promise<void> {
    if (this.#isClosed) return;
    try {
      const state = this.state;
      if (this.#session !== 0 && (state === 'connected' || state === 'jeopardy')) {
        // Bounded: if no master answers, the session simply expires on its own.
        await this.command({ type: 'CloseSession' }, { timeoutMs: 5_000, ...options }).catch(
          () => undefined,
        );
      }
    } finally {
      this.#shutdown();
    }
  }

  /** Drops the connection without closing the session, as a crashed client would. */
  abandon(): void {
    this.#shutdown();
  }

  // --- files, locks, election ------------------------------------------------------------------

  /** Opens a node and returns a handle (files.ts). */
  async open(path: string, options: OpenOptions = {}): Promise<Handle> {
    return openHandle(this, path, options);
  }

  async readFile(path: string, options: ReadOptions = {}): Promise<Buffer> {
    return readFile(this, path, options);
  }

  async writeFile(
    path: string,
    data: Uint8Array | string,
    options: WriteFileOptions = {},
  ): Promise<{ contentGeneration: number; checksum: string }> {
    return writeFile(this, path, data, options);
  }

  async stat(path: string, options: ReadOptions = {}): Promise<NodeStat> {
    return statPath(this, path, options);
  }

  async readdir(path: string, options: ReadOptions = {}): Promise<readonly DirEntry[]> {
    return readDir(this, path, options);
  }

  async exists(path: string, options: ReadOptions = {}): Promise<boolean> {
    return exists(this, path, options);
  }

  /** Creates a directory; `parents` also creates missing ancestors and tolerates an existing one. */
  async mkdir(path: string, options: CallOptions & { parents?: boolean } = {}): Promise<void> {
    return mkdir(this, path, options);
  }

  /** Deletes a node; `recursive` deletes a directory with everything below it. */
  async remove(path: string, options: CallOptions & { recursive?: boolean } = {}): Promise<void> {
    return remove(this, path, options);
  }

  /** Runs `fn` holding the lock on `path` (locks.ts); `fn`'s signal fires if the lock is lost. */
  async withLock<T>(
    path: string,
    fn: (signal: AbortSignal, lock: Lock) => Promise<T> | T,
    options: WithLockOptions = {},
  ): Promise<T> {
    return withLock(this, path, fn, options);
  }

  /** Asks the master whether a sequencer is still current (its lock held in that generation). */
  async checkSequencer(sequencer: string, options: CallOptions = {}): Promise<boolean> {
    const result = await this.query({ type: 'CheckSequencer', sequencer }, options);
    return expectResult(result, 'sequencer-status', 'check sequencer').isCurrent;
  }

  /** Leader election on `path` (election.ts). */
  election(path: string, options: ElectionOptions = {}): Election {
    return new Election(this, path, options);
  }

  async listSessions(options: CallOptions = {}): Promise<readonly SessionInfo[]> {
    return expectResult(
      await this.query({ type: 'ListSessions' }, options),
      'sessions',
      'list sessions',
    ).sessions;
  }

  /** Locks with a holder, a waiter or a lock-delay; or just the lock of `path`. */
  async listLocks(path?: string, options: CallOptions = {}): Promise<readonly LockInfo[]> {
    const query: Query =
      path === undefined ? { type: 'ListLocks' } : { type: 'ListLocks', path: this.resolve(path) };
    return expectResult(await this.query(query, options), 'locks', 'list locks').locks;
  }

  // --- for files.ts --------------------------------------------------------------------------

  /** @internal Routes this handle's events and session changes to `sink`. */
  registerHandle(handle: number, sink: HandleSink): void {
    this.#handles.set(handle, sink);
    // Events for this handle that came before its Open reply was handled (same socket read).
    const early = this.#unclaimed.get(handle);
    this.#unclaimed.delete(handle);
    this.#unclaimedCount -= early?.events.length ?? 0;
    for (const event of early?.events ?? []) sink.onEvent(event);
  }

  /** @internal */
  unregisterHandle(handle: number): void {
    this.#handles.delete(handle);
  }

  /** @internal Throws SESSION_EXPIRED or CLIENT_CLOSED if the session is over. */
  checkUsable(): void {
    this.#checkUsable();
  }

  // --- the session ---------------------------------------------------------------------------

  #needSession(): void {
    if (this.#session === 0) {
      throw new PaxlockError(
        ErrorCode.BAD_REQUEST,
        'this client was connected without a session (session: false): it can only read by name',
      );
    }
  }

  #checkUsable(): void {
    const state = this.state;
    if (state === 'expired')
      throw new PaxlockError(ErrorCode.SESSION_EXPIRED, `session ${this.#session} has expired`);
    if (state === 'closed' || this.#isClosed)
      throw new PaxlockError('CLIENT_CLOSED', 'the client is closed');
  }

  /** Moves the lease on to now; called before the state is read. */
  #advance(): void {
    if (this.#lease === null) return;
    const before = this.#lease.state;
    const transition = this.#lease.advance(now());
    // Frozen (or starved) past the whole grace period, the session went through jeopardy with
    // nobody looking: say so first, so that 'jeopardy' always comes before 'expired'.
    if (transition === 'expired' && before === 'connected') this.#apply('jeopardy');
    this.#apply(transition);
  }

  #apply(transition: LeaseTransition): void {
    if (transition === null) return;
    this.#armLeaseTimer();
    if (transition === 'jeopardy') {
      for (const sink of [...this.#handles.values()]) sink.onJeopardy();
      this.#notifyState('jeopardy');
      this.emit('jeopardy');
    } else if (transition === 'safe') {
      this.#notifyState('connected');
      this.emit('safe');
    } else {
      this.#endSession(
        new PaxlockError(ErrorCode.SESSION_EXPIRED, `session ${this.#session} has expired`),
      );
      this.#notifyState('expired');
      this.emit('expired');
    }
  }

  #onExpired(): void {
    if (this.#lease !== null) this.#apply(this.#lease.onExpired());
  }

  #notifyState(state: SessionState): void {
    const changed = this.#stateChanged;
    this.#stateChanged = new AbortController();
    changed.abort();
    this.emit('state', state);
  }

  #endSession(error: PaxlockError): void {
    for (const sink of [...this.#handles.values()]) sink.onSessionEnd(error);
    this.#handles.clear();
    if (this.#leaseTimer !== null) clearTimeout(this.#leaseTimer);
    this.#wakeKeepAlive.abort();
  }

  /** A timer at the next moment the lease state could change on its own. */
  #armLeaseTimer(): void {
    if (this.#leaseTimer !== null) clearTimeout(this.#leaseTimer);
    this.#leaseTimer = null;
    const lease = this.#lease;
    if (lease === null || this.#isClosed) return;
    const at =
      lease.state === 'connected'
        ? lease.leaseEnd
        : lease.state === 'jeopardy'
          ? lease.graceEnd
          : null;
    if (at === null) return;
    this.#leaseTimer = setTimeout(
      () => {
        this.#advance();
        // KeepAlives move the lease end on without a change of state (and so without a new
        // timer): aim at the lease end as it is now, or jeopardy waits for a call to look.
        this.#armLeaseTimer();
      },
      Math.max(0, Math.ceil(at - now())),
    );
  }

  async #keepAliveLoop(): Promise<void> {
    const interval = Math.max(100, Math.floor(this.#leaseMs / 4));
    while (!this.#isClosed) {
      const state = this.state;
      if (state !== 'connected' && state !== 'jeopardy') return;
      let wait = interval;
      try {
        await this.keepAlive({ timeoutMs: interval });
      } catch (err: unknown) {
        if (err instanceof PaxlockError && err.code === ErrorCode.SESSION_EXPIRED) {
          this.#onExpired();
          return;
        }
        // No master for now: try again soon (the send already backed off between attempts).
        wait = 100;
      }
      await sleep(wait, this.#wakeKeepAlive.signal);
      if (this.#wakeKeepAlive.signal.aborted) this.#wakeKeepAlive = new AbortController();
    }
  }

  #onGap(reason: 'event-gap' | 'master-failover'): void {
    this.emit('event-gap');
    for (const sink of [...this.#handles.values()]) sink.onReread(reason);
  }

  #observeEpoch(epoch: Epoch): void {
    if (this.#epoch === null) {
      this.#epoch = epoch;
      return;
    }
    if (sameEpoch(this.#epoch, epoch)) return;
    // Replies can come from a master that has since been deposed; only a newer epoch counts.
    if (
      epoch.round < this.#epoch.round ||
      (epoch.round === this.#epoch.round && epoch.replica < this.#epoch.replica)
    )
      return;
    this.#epoch = epoch;
    this.emit('master-failover', epoch);
    this.#onGap('master-failover');
  }

  #onPush(push: EventPush): void {
    if (push.session !== this.#session) return;
    this.#observeEpoch(push.epoch);
    const expected = sameEpoch(this.#eventEpoch, push.epoch) ? this.#eventSeq + 1 : 1;
    if (push.eventSeq !== expected) this.#onGap('event-gap');
    this.#eventEpoch = push.epoch;
    this.#eventSeq = push.eventSeq;
    this.emit('event', push);
    const sink = this.#handles.get(push.event.handle);
    if (sink !== undefined) {
      sink.onEvent(push.event);
    } else if (this.#unclaimedCount < 1_000) {
      // Perhaps a handle whose Open reply is still on its way up: keep the event for it (until
      // the next KeepAlive reply; a closed handle's late events are dropped then).
      const entry = this.#unclaimed.get(push.event.handle) ?? {
        events: [],
        cycle: this.#keepAliveCycle,
      };
      entry.events.push(push.event);
      this.#unclaimed.set(push.event.handle, entry);
      this.#unclaimedCount++;
    }
  }

  // --- sending -------------------------------------------------------------------------------

  /**
   * Sends a request to the master, following redirects and reconnecting until it gets an
   * answer, the session ends, or the call's time runs out. The same request (same seq) is
   * resent unchanged. In jeopardy a session request waits for the session to be safe again.
   */
  async #send(request: Request, options: SendOptions): Promise<Reply> {
    const timeoutMs = options.timeoutMs ?? this.#callTimeoutMs;
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : now() + timeoutMs;
    const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    let lastError: PaxlockError | null = null;
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw signal.reason;
      if (options.isSessionless !== true) this.#checkUsable();
      else if (this.#isClosed) throw new PaxlockError('CLIENT_CLOSED', 'the client is closed');
      const left = deadline - now();
      if (left <= 0)
        throw (
          lastError ?? new PaxlockError(ErrorCode.TIMEOUT, `no answer within ${timeoutMs ?? 0} ms`)
        );
      if (
        options.isSessionless !== true &&
        options.inJeopardy !== true &&
        this.state === 'jeopardy'
      ) {
        await this.#waitForStateChange(left, signal);
        continue;
      }
      try {
        const connection = await this.#master(Math.min(left, 2_000), signal);
        const reply = await connection.request(
          request,
          Math.min(this.#requestTimeoutMs, Math.max(1, left)),
        );
        if (reply.type === 'redirect') {
          this.#dropConnection();
          if (reply.master !== null) this.#hint = reply.master;
          lastError = new PaxlockError(
            ErrorCode.NOT_MASTER,
            `redirected (master ${reply.master ?? 'unknown'})`,
          );
          if (reply.master === null || attempt > 3)
            await sleep(Math.min(50 * 2 ** Math.min(attempt, 4), 500), signal);
          continue;
        }
        if (reply.type === 'error') {
          const error = new PaxlockError(reply.code, reply.message);
          if (!isRetryable(reply.code)) {
            if (reply.code === ErrorCode.SESSION_EXPIRED && options.isSessionless !== true)
              this.#onExpired();
            throw error;
          }
          lastError = error;
          // A busy master is still the master: keep the connection, only back off.
          if (reply.code !== ErrorCode.BUSY) this.#dropConnection();
          await sleep(Math.min(50 * 2 ** Math.min(attempt, 4), 500), signal);
          continue;
        }
        if ('epoch' in reply) this.#observeEpoch(reply.epoch);
        return reply;
      } catch (err: unknown) {
        if (!(err instanceof PaxlockError) || !isRetryable(err.code)) throw err;
        lastError = err;
        this.#dropConnection();
        await sleep(Math.min(50 * 2 ** Math.min(attempt, 4), 500), signal);
      }
    }
  }

  async #waitForStateChange(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const changed = this.#stateChanged.signal;
    const signals = [changed, ...(signal === undefined ? [] : [signal])];
    await sleep(Math.min(timeoutMs, 1_000), AbortSignal.any(signals));
  }

  /**
   * The connection to the master, finding it if needed. Calls that need it at the same time
   * (after a fail-over, every waiting call) share one search rather than each sweeping the cell.
   */
  async #master(timeoutMs: number, signal?: AbortSignal): Promise<Connection> {
    if (this.#connection?.isOpen === true) return this.#connection;
    this.#search ??= this.#findAndConnect(timeoutMs).finally(() => {
      this.#search = null;
    });
    const search = this.#search;
    if (signal === undefined) return search;
    signal.throwIfAborted();
    return new Promise<Connection>((resolve, reject) => {
      const onAbort = (): void => {
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      search.then(
        (connection) => {
          signal.removeEventListener('abort', onAbort);
          resolve(connection);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err instanceof Error ? err : new PaxlockError(ErrorCode.NO_MASTER, String(err)));
        },
      );
    });
  }

  async #findAndConnect(timeoutMs: number): Promise<Connection> {
    let connection: Connection | null = null;
    if (this.#hint !== null) {
      const hint = this.#hint;
      this.#hint = null;
      connection = await Connection.open(hint, Math.min(timeoutMs, 1_000)).catch(() => null);
    }
    if (connection === null) {
      const { address, status } = await findMaster(this.#cell, Math.max(timeoutMs, 1));
      if (this.#cellName === '') this.#cellName = status.cell;
      connection = await Connection.open(address);
    }
    if (this.#isClosed) {
      connection.close();
      throw new PaxlockError('CLIENT_CLOSED', 'the client is closed');
    }
    // Another call may have found the master while this one was looking (after a fail-over
    // every waiting call looks): use its connection rather than leave this one open and unused.
    // (Read into a local: the compiler does not see the change the awaits above let in.)
    const current: Connection | null = this.#connection;
    if (current?.isOpen === true) {
      connection.close();
      return current;
    }
    connection.onPush((push) => {
      if (push.type === 'event') this.#onPush(push);
      else this.#observeEpoch(push.epoch);
    });
    connection.onClose(() => {
      if (this.#connection === connection) {
        this.#connection = null;
        // Reattach the event stream through a new connection soon.
        this.#wakeKeepAlive.abort();
      }
    });
    this.#connection = connection;
    if (this.#cellName === '') {
      const reply = await connection
        .request({ type: 'status' }, this.#requestTimeoutMs)
        .catch(() => null);
      if (reply?.type === 'status') this.#cellName = reply.status.cell;
    }
    // Attach this connection as the session's event stream right away.
    if (this.#session !== 0) this.#wakeKeepAlive.abort();
    return connection;
  }

  #dropConnection(): void {
    const connection = this.#connection;
    this.#connection = null;
    connection?.close();
  }

  #shutdown(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#closing.abort(new PaxlockError('CLIENT_CLOSED', 'the client is closed'));
    this.#lease?.onClosed();
    this.#endSession(new PaxlockError('CLIENT_CLOSED', 'the client is closed'));
    this.#dropConnection();
    for (const connection of this.#staleConnections.values()) connection.close();
    this.#staleConnections.clear();
    this.#notifyState('closed');
    this.emit('closed');
  }
}
