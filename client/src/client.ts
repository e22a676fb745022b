// The minimal paxlock client (issue 4): find the master, create a session, keep it alive, send
// commands and queries, receive events. The full library (jeopardy and grace, handles, locks,
// election) builds on this in client issue 5.
//
// Exactly-once: every session command carries (session, seq). On a redirect, a lost connection
// or a timeout, the client finds the master again and resends the SAME seq, which the master
// answers from its record if the first attempt was applied. A new seq is taken only after the
// previous command got an answer, so seqs of one session are applied in order.

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  ErrorCode,
  LIMITS,
  type CommandResult,
  type Epoch,
  type EventPush,
  type MachineCommand,
  type Query,
  type QueryResult,
  type ReplicaStatus,
} from '@paxlock/shared';
import { Connection, ConnectionError, type Reply, type Request } from './connection.ts';

/** A command as the caller writes it: the client fills in session and seq. */
export type SessionCommandInput = MachineCommand extends infer C
  ? C extends { readonly seq: number; readonly session: number }
    ? Omit<C, 'seq' | 'session'>
    : never
  : never;

export interface ClientOptions {
  /** Client addresses of the cell's replicas (host:port). */
  readonly cell: readonly string[];
  /** A name recorded with the session, for operators. */
  readonly name: string;
  readonly leaseMs?: number;
  /** How long one request may take before it is retried elsewhere. */
  readonly requestTimeoutMs?: number;
  /** How long to keep looking for a master before failing a call with NO_MASTER. */
  readonly findMasterTimeoutMs?: number;
}

export interface ClientEvents {
  event: [EventPush];
  'master-failover': [Epoch];
  'event-gap': [];
  expired: [];
}

/** Finds the master: asks each replica its status and follows what they say. */
export async function findMaster(cell: readonly string[], timeoutMs: number): Promise<{ address: string; status: ReplicaStatus }> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no replica answered';
  let reachable = 0;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    reachable = 0;
    for (const address of cell) {
      try {
        const connection = await Connection.open(address, 1_000);
        try {
          const reply = await connection.request({ type: 'status' }, 1_000);
          reachable++;
          if (reply.type === 'status' && reply.status.role === 'master' && reply.status.leaseRemainingMs > 0) {
            return { address, status: reply.status };
          }
          lastError = `${address} is ${reply.type === 'status' ? reply.status.role : reply.type}`;
        } finally {
          connection.close();
        }
      } catch (err: unknown) {
        if (!(err instanceof ConnectionError)) throw err;
        lastError = err.message;
      }
    }
    // Back off a little between sweeps: an election takes a lease or so.
    await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** attempt, 500)));
  }
  const majority = Math.floor(cell.length / 2) + 1;
  if (reachable < majority) {
    throw new ConnectionError(
      ErrorCode.NO_QUORUM,
      `no quorum: ${reachable} of ${cell.length} replicas reachable, ${majority} needed (${lastError})`,
    );
  }
  throw new ConnectionError(ErrorCode.NO_MASTER, `no master found within ${timeoutMs} ms (${lastError})`);
}

export class PaxlockClient extends EventEmitter<ClientEvents> {
  readonly #options: Required<ClientOptions>;
  #connection: Connection | null = null;
  #session = 0;
  #seq = 0;
  #eventSeq = 0;
  #epoch: Epoch | null = null;
  #keepAlive: NodeJS.Timeout | null = null;
  #isClosed = false;
  /** Commands of a session go one at a time, in seq order. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(options: ClientOptions) {
    super();
    this.#options = {
      leaseMs: LIMITS.sessionLeaseDefaultMs,
      requestTimeoutMs: 3_000,
      findMasterTimeoutMs: 30_000,
      ...options,
    };
  }

  static async connect(options: ClientOptions): Promise<PaxlockClient> {
    const client = new PaxlockClient(options);
    // The nonce makes CreateSession exactly-once too: a retry after a fail-over gets the session
    // the first attempt created, not a second one.
    const nonce = randomBytes(16).toString('base64url');
    const reply = await client.#send({ type: 'command', command: { type: 'CreateSession', clientName: options.name, leaseMs: client.#options.leaseMs, nonce } });
    if (reply.type !== 'result' || reply.result.type !== 'session-created') {
      throw new ConnectionError(ErrorCode.BAD_REQUEST, `CreateSession failed: ${JSON.stringify(reply)}`);
    }
    client.#session = reply.result.session;
    client.#startKeepAlive();
    await client.keepAlive();
    return client;
  }

  get session(): number {
    return this.#session;
  }

  get epoch(): Epoch | null {
    return this.#epoch;
  }

  get masterAddress(): string | null {
    return this.#connection?.address ?? null;
  }

  /** Applies a session command exactly once and returns its result (which may be a typed error). */
  async command(input: SessionCommandInput): Promise<CommandResult> {
    const run = this.#queue.then(async () => {
      const seq = ++this.#seq;
      const command = { ...input, session: this.#session, seq } as MachineCommand;
      const reply = await this.#send({ type: 'command', command });
      if (reply.type !== 'result') throw new ConnectionError(ErrorCode.BAD_REQUEST, `unexpected reply ${reply.type}`);
      return reply.result;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async query(query: Query): Promise<QueryResult> {
    const reply = await this.#send({ type: 'query', query });
    if (reply.type !== 'query-result') throw new ConnectionError(ErrorCode.BAD_REQUEST, `unexpected reply ${reply.type}`);
    return reply.result;
  }

  async keepAlive(): Promise<number> {
    const reply = await this.#send({ type: 'keep-alive', session: this.#session, eventSeqSeen: this.#eventSeq });
    if (reply.type !== 'keep-alive-ack') throw new ConnectionError(ErrorCode.BAD_REQUEST, `unexpected reply ${reply.type}`);
    if (reply.isEventGap) {
      this.#eventSeq = reply.eventSeq;
      this.emit('event-gap');
    }
    return reply.leaseRemainingMs;
  }

  /** Ends the session cleanly (locks released without lock-delay) and closes the connection. */
  async close(): Promise<void> {
    if (this.#isClosed) return;
    try {
      await this.command({ type: 'CloseSession' });
    } finally {
      this.#shutdown();
    }
  }

  /** Drops the connection without closing the session, as a crashed client would. */
  abandon(): void {
    this.#shutdown();
  }

  #shutdown(): void {
    this.#isClosed = true;
    if (this.#keepAlive !== null) clearInterval(this.#keepAlive);
    this.#connection?.close();
    this.#connection = null;
  }

  #startKeepAlive(): void {
    this.#keepAlive = setInterval(() => {
      this.keepAlive().catch((err: unknown) => {
        if (err instanceof ConnectionError && err.code === ErrorCode.SESSION_EXPIRED) {
          this.#shutdown();
          this.emit('expired');
        }
        // Other failures (no master for now) are retried on the next interval.
      });
    }, Math.max(100, Math.floor(this.#options.leaseMs / 4)));
  }

  /**
   * Sends a request to the master, following redirects and reconnecting until it gets an
   * answer or runs out of time. The same request (same seq) is resent unchanged.
   */
  async #send(request: Request): Promise<Reply> {
    const deadline = Date.now() + this.#options.findMasterTimeoutMs;
    let lastError: Error = new ConnectionError(ErrorCode.NO_MASTER, 'no master');
    while (!this.#isClosed && Date.now() < deadline) {
      try {
        const connection = await this.#master(deadline - Date.now());
        const reply = await connection.request(request, this.#options.requestTimeoutMs);
        if (reply.type === 'redirect') {
          this.#dropConnection();
          if (reply.master !== null) this.#hint = reply.master;
          lastError = new ConnectionError(ErrorCode.NOT_MASTER, `redirected (master ${reply.master ?? 'unknown'})`);
          await new Promise((resolve) => setTimeout(resolve, reply.master === null ? 100 : 0));
          continue;
        }
        if (reply.type === 'error') {
          if (reply.code === ErrorCode.NO_QUORUM) {
            lastError = new ConnectionError(reply.code, reply.message);
            this.#dropConnection();
            continue;
          }
          throw new ConnectionError(reply.code, reply.message);
        }
        if ('epoch' in reply) this.#epoch = reply.epoch;
        return reply;
      } catch (err: unknown) {
        if (!(err instanceof ConnectionError)) throw err;
        if (err.code !== ErrorCode.NO_MASTER && err.code !== ErrorCode.TIMEOUT && err.code !== ErrorCode.NO_QUORUM) throw err;
        lastError = err;
        this.#dropConnection();
      }
    }
    throw lastError;
  }

  #hint: string | null = null;

  async #master(timeoutMs: number): Promise<Connection> {
    if (this.#connection?.isOpen === true) return this.#connection;
    let connection: Connection | null = null;
    if (this.#hint !== null) {
      const hint = this.#hint;
      this.#hint = null;
      connection = await Connection.open(hint).catch(() => null);
    }
    if (connection === null) {
      const { address } = await findMaster(this.#options.cell, Math.max(timeoutMs, 1));
      connection = await Connection.open(address);
    }
    connection.onPush((push) => {
      if (push.type === 'event') {
        if (push.eventSeq !== this.#eventSeq + 1) this.emit('event-gap');
        this.#eventSeq = push.eventSeq;
        this.emit('event', push);
      } else {
        this.#epoch = push.epoch;
        this.emit('master-failover', push.epoch);
      }
    });
    this.#connection = connection;
    // Attach this connection as the session's event stream right away.
    if (this.#session !== 0) {
      void connection.request({ type: 'keep-alive', session: this.#session, eventSeqSeen: this.#eventSeq }, this.#options.requestTimeoutMs).catch(() => undefined);
    }
    return connection;
  }

  #dropConnection(): void {
    this.#connection?.close();
    this.#connection = null;
  }
}
