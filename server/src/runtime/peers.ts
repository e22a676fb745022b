// Peer transport: persistent WebSocket links between the replicas of a cell (DESIGN.md,
// runtime/peers.ts). Each replica dials every other replica and sends on that outbound link;
// it receives on the links others dialed to it. A link that drops is redialed with exponential
// backoff. Messages are msgpack frames; every frame from the network is validated before use.
//
// Why drop instead of queue while a link is down: Multi-Paxos tolerates loss (the core resends
// on its ticks), and a queue would deliver stale Prepares and heartbeats in a burst after a
// partition heals. Every drop is counted and, at debug level, logged with its reason.
//
// The first frame on a link is a hello naming the cell, the dialer's id and the id it meant to
// reach, and the history (incarnation) of the cell its state belongs to. A hello from an unknown
// replica, for another cell or for another replica, from an address that is not the configured
// one, or from another history of the cell (one replica restored from a backup, the other not, or
// from another backup; as etcd refuses a member with another cluster ID), is refused: the link
// is closed with code 4403. A fresh replica, of no history yet, takes the history of the first
// master it hears from (a heartbeat or an Accept) and then closes its links from peers of any
// other: a master holds a majority's promises, so at most one history can win a fresh replica.

import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { decodeFrame, encodeFrame } from '@paxlock/shared';
import type { Logger } from 'pino';
import type { Envelope, Message } from '../paxos/messages.ts';
import type { ReplicaId } from '../paxos/ports.ts';
import { parseHostPort, type ReplicaAddress } from './config.ts';

const PROTOCOL_VERSION = 1;
const CLOSE_REFUSED = 4403;
const CLOSE_BAD_FRAME = 4400;
/** Most messages in one paxos-batch frame; a turn never produces anywhere near this many. */
const MAX_BATCH_MESSAGES = 100_000;


/** A frame on a peer link after the hello. Snapshot transfer adds its own frames later. */
export type PeerFrame =
  | {
      readonly type: 'hello';
      readonly version: number;
      readonly cell: string;
      readonly from: ReplicaId;
      readonly to: ReplicaId;
      /** The sender's history of the cell (SqliteStore.incarnation); null or absent: fresh. */
      readonly incarnation?: number | null;
    }
  | { readonly type: 'paxos'; readonly message: Message }
  /** Several messages for one peer from one turn: one frame, one write. */
  | { readonly type: 'paxos-batch'; readonly messages: readonly Message[] }
  | { readonly type: 'aux'; readonly body: unknown };

export interface PeerTransportOptions {
  readonly cell: string;
  readonly self: ReplicaAddress;
  /** Every replica of the cell, self included. */
  readonly replicas: readonly ReplicaAddress[];
  readonly logger: Logger;
  /** The only door for paxos messages: unknown -> Message, or null to drop the frame. */
  readonly validate: (raw: unknown) => Message | null;
  readonly onMessage: (from: ReplicaId, message: Message) => void;
  /** Frames other than paxos messages (snapshot chunks, digests), still unvalidated. */
  readonly onAux?: (from: ReplicaId, body: unknown) => void;
  /** This replica's history of the cell; null while fresh. Absent: null. */
  readonly incarnation?: () => number | null;
  /** A fresh replica met a peer of history `incarnation`: it belongs to that history now. */
  readonly onIncarnation?: (incarnation: number) => void;
  readonly maxFrameBytes?: number;
  readonly maxBufferedBytes?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
}

export interface PeerStats {
  sent: number;
  received: number;
  dropped: number;
  refused: number;
  invalid: number;
}

/** Checks a hello frame against the configuration; returns the peer's id or why it is refused. */
export function checkHello(
  raw: unknown,
  expect: { cell: string; self: ReplicaId; replicas: readonly ReplicaAddress[]; remoteAddress: string | undefined; incarnation?: number | null },
): { ok: true; from: ReplicaId; incarnation: number | null } | { ok: false; reason: string } {
  if (typeof raw !== 'object' || raw === null) return { ok: false, reason: 'hello is not an object' };
  const hello = raw as Record<string, unknown>;
  if (hello['type'] !== 'hello') return { ok: false, reason: 'first frame is not a hello' };
  if (hello['version'] !== PROTOCOL_VERSION) return { ok: false, reason: 'protocol version differs' };
  if (hello['cell'] !== expect.cell) return { ok: false, reason: 'hello is for another cell' };
  if (hello['to'] !== expect.self) return { ok: false, reason: 'hello is for another replica' };
  const from = hello['from'];
  const peer = expect.replicas.find((r) => r.id === from);
  if (typeof from !== 'number' || peer === undefined || from === expect.self) {
    return { ok: false, reason: 'hello is from an unknown replica' };
  }
  const { host } = parseHostPort(peer.peer);
  const remote = normalizeAddress(expect.remoteAddress);
  if (isIpAddress(host) && remote !== normalizeAddress(host)) {
    return { ok: false, reason: `replica ${from} must connect from ${host}` };
  }
  const theirs = hello['incarnation'];
  if (theirs !== undefined && theirs !== null && !(typeof theirs === 'number' && Number.isSafeInteger(theirs) && theirs >= 0)) {
    return { ok: false, reason: 'hello has a malformed incarnation' };
  }
  const incarnation = theirs ?? null;
  const mine = expect.incarnation ?? null;
  if (incarnation !== null && mine !== null && incarnation !== mine) {
    return { ok: false, reason: `replica ${from} holds another history of cell ${expect.cell} (incarnation ${incarnation}, here ${mine}): restore every replica from the same backup, or start it on an empty data directory` };
  }
  return { ok: true, from, incarnation };
}

function normalizeAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}

function isIpAddress(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}

interface OutboundLink {
  readonly peer: ReplicaAddress;
  socket: WebSocket | null;
  isOpen: boolean;
  backoffMs: number;
  timer: NodeJS.Timeout | null;
  /** Why the peer last refused our hello (logged once per reason), or null. */
  refusedFor: string | null;
}

export class PeerTransport {
  readonly stats: PeerStats = { sent: 0, received: 0, dropped: 0, refused: 0, invalid: 0 };
  readonly #options: PeerTransportOptions;
  readonly #log: Logger;
  readonly #links = new Map<ReplicaId, OutboundLink>();
  /** Links peers dialed to us, with the history each peer's hello named (null: fresh or unknown yet). */
  readonly #inbound = new Map<WebSocket, number | null>();
  /** Inbound links closed because their peer is of another history than the one adopted. */
  readonly #leftBehind = new WeakSet<WebSocket>();
  #server: WebSocketServer | null = null;
  #isClosed = false;

  constructor(options: PeerTransportOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'peers' });
  }

  /** Listen on this replica's peer address and start dialing every other replica. */
  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.#options.self.peer);
    const server = new WebSocketServer({ host, port, maxPayload: this.#maxFrameBytes() });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    server.on('error', (err) => {
      this.#log.error({ err }, 'peer listener failed');
    });
    server.on('connection', (socket, request) => {
      this.#onInbound(socket, request.socket.remoteAddress);
    });
    for (const peer of this.#options.replicas) {
      if (peer.id === this.#options.self.id) continue;
      const link: OutboundLink = { peer, socket: null, isOpen: false, backoffMs: this.#backoffInitialMs(), timer: null, refusedFor: null };
      this.#links.set(peer.id, link);
      this.#dial(link);
    }
  }

  /** Send one message; dropped (and counted) if the link is down or too far behind. */
  send(envelope: Envelope): void {
    this.sendFrame(envelope.to, { type: 'paxos', message: envelope.message });
  }

  /** Sends messages to one peer as one frame (one msgpack encoding, one socket write). */
  sendBatch(to: ReplicaId, messages: readonly Message[]): void {
    this.sendBatchToEach([to], messages);
  }

  /**
   * Sends the same messages to each of `to` as one frame each, encoded once (the master's
   * Accepts go to every follower alike, and their batch is the bulk of what it encodes).
   */
  sendBatchToEach(to: readonly ReplicaId[], messages: readonly Message[]): void {
    if (messages.length === 0 || to.length === 0) return;
    const [first] = messages;
    const frame: PeerFrame = messages.length === 1 && first !== undefined ? { type: 'paxos', message: first } : { type: 'paxos-batch', messages };
    const bytes = encodeFrame(frame);
    for (const peer of to) this.#sendEncoded(peer, bytes);
  }

  sendFrame(to: ReplicaId, frame: PeerFrame): void {
    this.#sendEncoded(to, encodeFrame(frame));
  }

  #sendEncoded(to: ReplicaId, bytes: Uint8Array): void {
    const link = this.#links.get(to);
    if (link?.socket == null || !link.isOpen) {
      this.stats.dropped++;
      return;
    }
    if (link.socket.bufferedAmount > this.#maxBufferedBytes()) {
      this.stats.dropped++;
      this.#log.warn({ peer: to, bufferedBytes: link.socket.bufferedAmount }, 'peer link backed up, message dropped');
      return;
    }
    link.socket.send(bytes);
    this.stats.sent++;
  }

  /**
   * Bytes sent to `to` and not yet handed to the kernel, or null while the link is down: a
   * snapshot send (node.ts) waits for this to fall before it reads its next chunk.
   */
  bufferedBytes(to: ReplicaId): number | null {
    const link = this.#links.get(to);
    if (link?.socket == null || !link.isOpen) return null;
    return link.socket.bufferedAmount;
  }

  isConnected(to: ReplicaId): boolean {
    return this.#links.get(to)?.isOpen ?? false;
  }

  async close(): Promise<void> {
    this.#isClosed = true;
    for (const link of this.#links.values()) {
      if (link.timer !== null) clearTimeout(link.timer);
      link.socket?.terminate();
    }
    for (const socket of this.#inbound.keys()) socket.terminate();
    const server = this.#server;
    if (server !== null) {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    }
  }

  #dial(link: OutboundLink): void {
    if (this.#isClosed) return;
    link.timer = null;
    const socket = new WebSocket(`ws://${link.peer.peer}/peer`, { maxPayload: this.#maxFrameBytes(), perMessageDeflate: false });
    link.socket = socket;
    socket.on('open', () => {
      const hello: PeerFrame = {
        type: 'hello',
        version: PROTOCOL_VERSION,
        cell: this.#options.cell,
        from: this.#options.self.id,
        to: link.peer.id,
        incarnation: this.#incarnation(),
      };
      socket.send(encodeFrame(hello));
      link.isOpen = true;
      link.backoffMs = this.#backoffInitialMs();
      this.#log.info({ peer: link.peer.id }, 'peer link up');
    });
    socket.on('message', () => {
      // Outbound links carry traffic one way; a peer has nothing to say on them.
    });
    socket.on('error', (err) => {
      this.#log.debug({ peer: link.peer.id, err }, 'peer link error');
    });
    socket.on('close', (code, reason) => {
      if (code === CLOSE_REFUSED) {
        // The peer refused our hello (another cell, another history...): nothing will change
        // soon, so redial at the slowest pace, and say why once rather than on every try.
        const why = reason.toString();
        if (link.refusedFor !== why) this.#log.warn({ peer: link.peer.id, reason: why }, 'peer refused this replica');
        link.refusedFor = why;
        link.backoffMs = this.#backoffMaxMs();
      } else if (link.isOpen) {
        link.refusedFor = null;
        this.#log.info({ peer: link.peer.id, code }, 'peer link down');
      }
      link.isOpen = false;
      link.socket = null;
      if (this.#isClosed) return;
      const delayMs = link.backoffMs;
      link.backoffMs = Math.min(link.backoffMs * 2, this.#backoffMaxMs());
      link.timer = setTimeout(() => {
        this.#dial(link);
      }, delayMs);
    });
  }

  #onInbound(socket: WebSocket, remoteAddress: string | undefined): void {
    let from: ReplicaId | null = null;
    this.#inbound.set(socket, null);
    socket.on('close', () => this.#inbound.delete(socket));
    socket.on('error', (err) => {
      this.#log.debug({ peer: from, err }, 'inbound peer link error');
    });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      const decoded = isBinary ? decodeFrame(rawBytes(data), this.#maxFrameBytes()) : null;
      // Bytes that are not msgpack read as `undefined`: no hello, no frame, and so refused.
      const raw = decoded?.ok === true ? decoded.value : undefined;
      if (from === null) {
        const verdict = checkHello(raw, {
          cell: this.#options.cell,
          self: this.#options.self.id,
          replicas: this.#options.replicas,
          remoteAddress,
          incarnation: this.#incarnation(),
        });
        if (!verdict.ok) {
          this.stats.refused++;
          this.#log.warn({ remoteAddress, reason: verdict.reason }, 'peer refused');
          socket.close(CLOSE_REFUSED, verdict.reason.slice(0, 120));
          return;
        }
        from = verdict.from;
        this.#inbound.set(socket, verdict.incarnation);
        return;
      }
      this.stats.received++;
      this.#onFrame(from, raw, socket);
    });
  }

  #onFrame(from: ReplicaId, raw: unknown, socket: WebSocket): void {
    if (typeof raw !== 'object' || raw === null) {
      this.#invalid(from, socket, 'frame is not an object');
      return;
    }
    const frame = raw as Record<string, unknown>;
    if (frame['type'] === 'paxos') {
      this.#onPaxos(from, frame['message'], socket);
      return;
    }
    const batch = frame['messages'];
    if (frame['type'] === 'paxos-batch' && Array.isArray(batch) && batch.length <= MAX_BATCH_MESSAGES) {
      for (const raw of batch) this.#onPaxos(from, raw, socket);
      return;
    }
    if (frame['type'] === 'aux' && this.#options.onAux !== undefined) {
      this.#options.onAux(from, frame['body']);
      return;
    }
    this.#invalid(from, socket, 'unknown frame type');
  }

  #onPaxos(from: ReplicaId, raw: unknown, socket: WebSocket): void {
    const message = this.#options.validate(raw);
    if (message === null) {
      // A malformed message from a configured peer is a bug or corruption there; drop it
      // without touching state, and keep the link (the next message may be fine).
      this.stats.invalid++;
      this.#log.warn({ peer: from }, 'invalid paxos message dropped');
      return;
    }
    if (this.#leftBehind.has(socket)) return; // a peer of another history (#maybeAdopt)
    if (message.type === 'heartbeat' || message.type === 'accept') this.#maybeAdopt(socket);
    this.#options.onMessage(from, message);
  }

  /**
   * A fresh replica hears from a master: it takes that master's history, and drops its links
   * from peers of another (they are refused at their next hello).
   */
  #maybeAdopt(socket: WebSocket): void {
    const theirs = this.#inbound.get(socket) ?? null;
    if (theirs === null || this.#incarnation() !== null) return;
    this.#options.onIncarnation?.(theirs);
    for (const [other, incarnation] of this.#inbound) {
      if (incarnation === null || incarnation === theirs) continue;
      this.#leftBehind.add(other);
      other.close(CLOSE_REFUSED, 'this replica joined another history of the cell');
    }
  }

  #invalid(from: ReplicaId, socket: WebSocket, reason: string): void {
    this.stats.invalid++;
    this.#log.warn({ peer: from, reason }, 'bad peer frame, link closed');
    socket.close(CLOSE_BAD_FRAME, reason);
  }

  /** This replica's history of the cell (null while fresh). */
  #incarnation(): number | null {
    return this.#options.incarnation?.() ?? null;
  }

  #maxFrameBytes(): number {
    return this.#options.maxFrameBytes ?? 16 * 1024 * 1024;
  }
  #maxBufferedBytes(): number {
    return this.#options.maxBufferedBytes ?? 64 * 1024 * 1024;
  }
  #backoffInitialMs(): number {
    return this.#options.backoffInitialMs ?? 50;
  }
  #backoffMaxMs(): number {
    return this.#options.backoffMaxMs ?? 2000;
  }
}

function rawBytes(data: RawData): Buffer {
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
}
