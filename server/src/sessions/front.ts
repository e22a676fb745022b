// The client front end's socket shell (DESIGN.md, sessions/front.ts): a WebSocket server on the
// replica's client address. It owns framing only: every frame is size-checked (ws maxPayload),
// decoded and validated before the handler sees it. A frame that validates badly but has a
// readable id gets an error reply and the connection stays; bytes that are not a frame at all
// (not binary, not msgpack, no readable id) close the connection with 1003/1007 after a final
// error reply. Nothing a client sends can throw past this file: the replica and every other
// connection are unaffected. Plain HTTP on the same port serves GET /metrics (runtime/metrics.ts)
// GET /health and GET /backup (the state database, from the master, streamed from a copy) and
// nothing else; a connection that stops reading is cut off (DEFAULT_SEND_BUFFER_MAX_BYTES).

import { createServer, type Server, type ServerResponse } from 'node:http';
import { pipeline, Readable } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { decodeFrame, encodeFrame, ErrorCode, isFrameError, LIMITS, validateClientFrame } from '@paxlock/shared';
import type { ClientFrame, ServerFrame } from '@paxlock/shared';
import { parseHostPort } from '../runtime/config.ts';

const CLOSE_UNSUPPORTED = 1003;
const CLOSE_INVALID = 1007;

/**
 * A connection whose unsent replies and events pile up past this (a client that stopped
 * reading) is cut off, so one stuck reader cannot grow the master's memory without bound. Its
 * session lives on: the client reconnects and learns of missed events (isEventGap).
 */
export const DEFAULT_SEND_BUFFER_MAX_BYTES = 16 * 1024 * 1024;

export interface FrontConnection {
  readonly id: number;
  send(frame: ServerFrame): void;
  close(code: number, reason: string): void;
  readonly isOpen: boolean;
}

/**
 * An answer to a plain HTTP request. A Readable body is streamed (GET /backup: a copy of the
 * state database read from its file); it is destroyed if the client goes away first, so its
 * owner cleans up on its 'close'.
 */
export interface HttpAnswer {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body: string | Uint8Array | Readable;
}

export interface FrontHandler {
  onFrame(connection: FrontConnection, frame: ClientFrame): void;
  onClose(connection: FrontConnection): void;
  /** The body of GET /metrics (Prometheus text); without it the path is not served. */
  metrics?(): string;
  /**
   * The answer to GET /backup (a consistent copy of the state); without it the path is not
   * served. Asynchronous: the copy is taken a few pages per event-loop turn.
   */
  backup?(): HttpAnswer | Promise<HttpAnswer>;
  /** The answer to GET /health (200 if this replica is part of a working cell, else 503). */
  health?(): HttpAnswer;
}

export interface FrontStats {
  connections: number;
  framesIn: number;
  badFrames: number;
  closedForGarbage: number;
  /** Connections cut off because they stopped reading (DEFAULT_SEND_BUFFER_MAX_BYTES). */
  closedForSlowness: number;
}

export class Front {
  readonly stats: FrontStats = { connections: 0, framesIn: 0, badFrames: 0, closedForGarbage: 0, closedForSlowness: 0 };
  readonly #sendBufferMaxBytes: number;
  readonly #address: string;
  readonly #handler: FrontHandler;
  readonly #log: Logger;
  readonly #sockets = new Set<WebSocket>();
  #server: WebSocketServer | null = null;
  #http: Server | null = null;
  #nextId = 1;

  constructor(options: { address: string; handler: FrontHandler; logger: Logger; sendBufferMaxBytes?: number }) {
    this.#address = options.address;
    this.#sendBufferMaxBytes = options.sendBufferMaxBytes ?? DEFAULT_SEND_BUFFER_MAX_BYTES;
    this.#handler = options.handler;
    this.#log = options.logger.child({ component: 'front' });
  }

  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.#address);
    // Plain HTTP on the same port answers GET /metrics and /backup; everything else must upgrade to WebSocket.
    const http = createServer((request, response) => {
      void this.#httpAnswer(request.method, request.url).then((answer) => {
        this.#respond(response, answer, request.url);
      });
    });
    this.#http = http;
    const server = new WebSocketServer({ server: http, maxPayload: LIMITS.frameMaxBytes, perMessageDeflate: false });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      http.once('listening', resolve);
      http.once('error', reject);
      http.listen(port, host);
    });
    http.on('error', (err) => {
      this.#log.error({ err }, 'client listener failed');
    });
    server.on('error', (err) => {
      this.#log.error({ err }, 'client listener failed');
    });
    server.on('connection', (socket) => {
      this.#onConnection(socket);
    });
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.terminate();
    const server = this.#server;
    const http = this.#http;
    if (server !== null) {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    }
    if (http !== null) {
      http.closeAllConnections();
      await new Promise<void>((resolve) => {
        http.close(() => {
          resolve();
        });
      });
    }
  }

  /** Writes an answer; a streamed body is piped, and destroyed if the client is gone or goes. */
  #respond(response: ServerResponse, answer: HttpAnswer, url: string | undefined): void {
    const { status, headers, body } = answer;
    if (response.destroyed) {
      if (body instanceof Readable) body.destroy();
      return;
    }
    response.writeHead(status, { 'content-type': 'text/plain', ...headers });
    if (!(body instanceof Readable)) {
      response.end(body);
      return;
    }
    // (Node calls back with undefined on success, whatever its typings say.)
    pipeline(body, response, (err: NodeJS.ErrnoException | null | undefined) => {
      if (err === null || err === undefined) return;
      // A client that hung up mid-body is theirs to retry; a body that failed to read is worth a line.
      if ('code' in err && err.code === 'ERR_STREAM_PREMATURE_CLOSE') this.#log.debug({ err, url }, 'HTTP client went away mid-answer');
      else this.#log.warn({ err, url }, 'HTTP answer cut off');
    });
  }

  /** The answer to a plain HTTP request: GET /metrics, /health or /backup, or a hint to use WebSocket. */
  async #httpAnswer(method: string | undefined, url: string | undefined): Promise<HttpAnswer> {
    const path = url?.split('?')[0];
    const serve = this.#route(path);
    if (serve === undefined)
      return { status: 426, body: 'this is a paxlock replica: connect with a WebSocket client, or GET /metrics, /health or /backup\n' };
    if (method !== 'GET') return { status: 405, body: 'GET only\n' };
    try {
      return await serve();
    } catch (err: unknown) {
      this.#log.error({ err, path }, 'HTTP request failed');
      return { status: 500, body: `${path ?? ''} failed\n` };
    }
  }

  /** The handler's answer for `path`, if it serves that path. */
  #route(path: string | undefined): (() => HttpAnswer | Promise<HttpAnswer>) | undefined {
    const handler = this.#handler;
    const metrics = handler.metrics?.bind(handler);
    if (path === '/metrics' && metrics !== undefined)
      return () => ({ status: 200, headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }, body: metrics() });
    if (path === '/health') return handler.health?.bind(handler);
    if (path === '/backup') return handler.backup?.bind(handler);
    return undefined;
  }

  #onConnection(socket: WebSocket): void {
    this.#sockets.add(socket);
    this.stats.connections++;
    const connection: FrontConnection = {
      id: this.#nextId++,
      send: (frame) => {
        if (socket.readyState !== socket.OPEN) return;
        if (socket.bufferedAmount > this.#sendBufferMaxBytes) {
          this.stats.closedForSlowness++;
          this.#log.warn({ connection: connection.id, bufferedBytes: socket.bufferedAmount }, 'client stopped reading, connection cut off');
          socket.terminate();
          return;
        }
        socket.send(encodeFrame(frame));
      },
      close: (code, reason) => {
        socket.close(code, reason);
      },
      get isOpen() {
        return socket.readyState === socket.OPEN;
      },
    };
    socket.on('message', (data: RawData, isBinary: boolean) => {
      this.stats.framesIn++;
      this.#onMessage(connection, data, isBinary);
    });
    socket.on('error', (err) => {
      // ws reports oversized frames (1009) and protocol violations here, then closes the socket.
      this.#log.debug({ connection: connection.id, err }, 'client socket error');
    });
    socket.on('close', () => {
      this.#sockets.delete(socket);
      this.#handler.onClose(connection);
    });
  }

  #onMessage(connection: FrontConnection, data: RawData, isBinary: boolean): void {
    if (!isBinary) {
      this.#garbage(connection, CLOSE_UNSUPPORTED, 'frames are binary msgpack');
      return;
    }
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
    const decoded = decodeFrame(bytes);
    if (!decoded.ok) {
      this.#garbage(connection, CLOSE_INVALID, decoded.reason === 'too-large' ? 'frame too large' : 'frame is not msgpack');
      return;
    }
    const frame = validateClientFrame(decoded.value);
    if (isFrameError(frame)) {
      this.stats.badFrames++;
      if (frame.id === null) {
        this.#garbage(connection, CLOSE_INVALID, frame.message);
        return;
      }
      connection.send({ type: 'error', id: frame.id, code: frame.error, message: frame.message });
      return;
    }
    this.#handler.onFrame(connection, frame);
  }

  #garbage(connection: FrontConnection, code: number, reason: string): void {
    this.stats.closedForGarbage++;
    this.#log.warn({ connection: connection.id, reason }, 'client sent garbage, connection closed');
    connection.send({ type: 'error', id: null, code: ErrorCode.BAD_FRAME, message: reason });
    connection.close(code, reason);
  }
}
