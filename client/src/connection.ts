// One WebSocket connection to one replica: request/response matched by id, pushes (events,
// fail-over notices) handed to a listener. Every frame from the replica is validated before
// use; a frame that does not validate closes the connection (the replica is broken or is not a
// paxlock replica), and every waiting request fails with BAD_FRAME.

import { WebSocket, type RawData } from 'ws';
import {
  decodeFrame,
  encodeFrame,
  ErrorCode,
  isFrameError,
  LIMITS,
  validateServerFrame,
  type ClientFrame,
  type ServerFrame,
} from '@paxlock/shared';
import { PaxlockError } from './errors.ts';

/** A request frame before the connection gives it an id. */
export type Request = ClientFrame extends infer F
  ? F extends ClientFrame
    ? Omit<F, 'id'>
    : never
  : never;
export type Push = Extract<ServerFrame, { type: 'event' | 'master-failover' }>;
export type Reply = Exclude<ServerFrame, Push>;

export class Connection {
  readonly address: string;
  readonly #socket: WebSocket;
  readonly #waiting = new Map<
    number,
    { resolve: (reply: Reply) => void; reject: (err: Error) => void }
  >();
  #nextId = 1;
  #onPush: ((push: Push) => void) | null = null;
  #onClose: (() => void) | null = null;
  #isClosed = false;

  private constructor(address: string, socket: WebSocket) {
    this.address = address;
    this.#socket = socket;
    socket.on('message', (data: RawData) => {
      this.#onMessage(data);
    });
    socket.on('close', () => {
      this.#closed('connection closed');
    });
    socket.on('error', () => {
      // 'close' follows and fails whatever was waiting.
    });
  }

  /** Opens a connection, failing with UNAVAILABLE-style errors within `timeoutMs`. */
  static async open(address: string, timeoutMs = 2_000): Promise<Connection> {
    const socket = new WebSocket(`ws://${address}/`, {
      maxPayload: LIMITS.frameMaxBytes * 2,
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => {
        resolve();
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        // Out of file descriptors is this process's problem, not the cell's: do not let it
        // read as "replica unreachable" (and so as "no quorum").
        if (err.code === 'EMFILE' || err.code === 'ENFILE') {
          reject(
            new Error(
              `this process is out of file descriptors (${err.code}) connecting to ${address}`,
            ),
          );
          return;
        }
        reject(new PaxlockError(ErrorCode.NO_MASTER, `cannot reach ${address}: ${err.message}`));
      });
    });
    return new Connection(address, socket);
  }

  get isOpen(): boolean {
    return !this.#isClosed;
  }

  onPush(listener: (push: Push) => void): void {
    this.#onPush = listener;
  }

  onClose(listener: () => void): void {
    this.#onClose = listener;
  }

  /** Sends a request and resolves with its reply, or rejects after `timeoutMs` with TIMEOUT. */
  async request(request: Request, timeoutMs: number): Promise<Reply> {
    if (this.#isClosed)
      throw new PaxlockError(ErrorCode.NO_MASTER, `connection to ${this.address} is closed`);
    const id = this.#nextId++;
    const frame = { ...request, id } as ClientFrame;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(
          new PaxlockError(
            ErrorCode.TIMEOUT,
            `no reply from ${this.address} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.#waiting.set(id, {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.#socket.send(encodeFrame(frame));
    });
  }

  close(): void {
    this.#socket.close();
    this.#closed('closed by the client');
  }

  #onMessage(data: RawData): void {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
    const decoded = decodeFrame(bytes, LIMITS.frameMaxBytes * 2);
    const frame = decoded.ok ? validateServerFrame(decoded.value) : null;
    if (frame === null || isFrameError(frame)) {
      this.#socket.terminate();
      this.#closed('the replica sent a malformed frame', ErrorCode.BAD_FRAME);
      return;
    }
    if (frame.type === 'event' || frame.type === 'master-failover') {
      this.#onPush?.(frame);
      return;
    }
    if (frame.id === null) return; // an error about a frame too broken to have an id
    const waiter = this.#waiting.get(frame.id);
    if (waiter === undefined) return;
    this.#waiting.delete(frame.id);
    waiter.resolve(frame);
  }

  #closed(reason: string, code: ErrorCode = ErrorCode.NO_MASTER): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const waiter of this.#waiting.values())
      waiter.reject(new PaxlockError(code, `${this.address}: ${reason}`));
    this.#waiting.clear();
    this.#onClose?.();
  }
}
