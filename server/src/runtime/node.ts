// One replica process, wired (DESIGN.md, Running and testing; issue 4): the Multi-Paxos core
// over the SQLite acceptor store (paxos.db) and the peer transport, the state machine over
// state.db, and the client front end. Everything that arrives in one event-loop turn (peer
// messages, client proposals, a tick) is fed to the core in ONE runTurn, so one fsync covers
// the turn (group commit) and nothing is sent before it is on disk.
//
// Master duties live here too, because they need the process's clock: leases of client
// sessions (session-table.ts), ExpireSession when one runs out, LockDelayEnd when a lock-delay
// is over, and pushing events after their entry is applied. A replica that is not the master
// answers clients with a redirect.
//
// The master acknowledges a write only after its entry is chosen and applied, and answers a
// read only while canServeReads() holds (master, valid lease, own no-op applied).

import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import {
  decodeFrame,
  encodeFrame,
  ErrorCode,
  type ClientFrame,
  type CommandResult,
  type Epoch,
  type MachineCommand,
  type MachineEvent,
  type QueryResult,
  type ReplicaStatus,
  type ServerFrame,
} from '@paxlock/shared';
import { StateMachine } from '../machine/index.ts';
import { formatBallot } from '../paxos/ballot.ts';
import type { ChosenEntry, Command, Message } from '../paxos/messages.ts';
import type { Config as PaxosConfig, Logger as CoreLogger } from '../paxos/ports.ts';
import { Replica } from '../paxos/replica.ts';
import type { Status } from '../paxos/ready.ts';
import { validateMessage } from '../paxos/validate.ts';
import { Front, type FrontConnection, type FrontHandler } from '../sessions/front.ts';
import { SessionTable } from '../sessions/session-table.ts';
import { SqliteStore } from '../storage/sqlite-store.ts';
import { processClock, type Clock } from './clock.ts';
import type { CellConfig, ReplicaAddress } from './config.ts';
import { PeerTransport } from './peers.ts';
import { runTurn, type TurnInput } from './turn.ts';

export interface Timing {
  /** Master lease (Paxos) in ms. */
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly electionTimeoutMs: number;
  readonly electionJitterMs: number;
  readonly maxDriftRate: number;
  /** How often the process ticks the core and the master duties. */
  readonly tickMs: number;
  /** A client request not applied within this long is answered with NO_QUORUM. */
  readonly requestTimeoutMs: number;
  /** Take a durable snapshot (and let the core compact its log) every this many applied slots. */
  readonly snapshotEverySlots: number;
  /** Propose a digest comparison through the log every this many ms (0: never). */
  readonly digestEveryMs: number;
}

export const DEFAULT_TIMING: Timing = {
  leaseMs: 2_000,
  heartbeatMs: 200,
  electionTimeoutMs: 1_000,
  electionJitterMs: 500,
  maxDriftRate: 0.01,
  tickMs: 20,
  requestTimeoutMs: 5_000,
  snapshotEverySlots: 10_000,
  digestEveryMs: 30_000,
};

/** Snapshot transfer: the state database in chunks over the peer link (aux frames). */
const SNAPSHOT_CHUNK_BYTES = 256 * 1024;
/** A peer that asked for a snapshot is not sent another for this long. */
const SNAPSHOT_RESEND_MS = 10_000;

interface SnapshotChunk {
  readonly kind: 'snapshot-chunk';
  readonly slot: number;
  readonly index: number;
  readonly total: number;
  readonly sha256: string;
  readonly bytes: Uint8Array;
}

function validateSnapshotChunk(raw: unknown): SnapshotChunk | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const c = raw as Record<string, unknown>;
  const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (c['kind'] !== 'snapshot-chunk' || !isCount(c['slot']) || !isCount(c['index']) || !isCount(c['total'])) return null;
  if (c['total'] < 1 || c['total'] > 65_536 || c['index'] >= c['total']) return null;
  if (typeof c['sha256'] !== 'string' || !/^[0-9a-f]{64}$/.test(c['sha256']) || !(c['bytes'] instanceof Uint8Array)) return null;
  if (c['bytes'].byteLength > SNAPSHOT_CHUNK_BYTES) return null;
  return raw as SnapshotChunk;
}

export interface NodeOptions {
  readonly cell: CellConfig;
  readonly id: number;
  readonly dataDir: string;
  readonly logger: Logger;
  readonly timing?: Partial<Timing>;
  readonly clock?: Clock;
  /** Most commands per slot; 1 turns batching off (benchmarks). */
  readonly maxBatchCommands?: number;
  /** What to do when this replica's state digest differs from the master's (default: exit 3). */
  readonly onDiverged?: (detail: { slot: number; mine: string; master: string }) => void;
}

/**
 * Digest comparison through the log (Paxos Made Live, section 5.6): the master proposes a mark;
 * every replica records its own digest right after applying the mark's slot; the master then
 * proposes a check carrying its digest at that slot, and every replica compares. These two
 * runtime commands are not state-machine commands: the machine sees a null in their place (an
 * invalid command, which changes nothing) so results stay aligned with the batch.
 */
const DIGEST_MARK = 'digest-mark:';
const DIGEST_CHECK = 'digest-check:';

interface PendingRequest {
  readonly connection: FrontConnection;
  readonly id: number;
  readonly deadline: number;
}

interface PendingRead {
  readonly connection: FrontConnection;
  readonly frame: Extract<ClientFrame, { type: 'query' }>;
  readonly deadline: number;
}

/** The core's Logger over pino: object first, constant message. */
function coreLogger(log: Logger): CoreLogger {
  return {
    debug: (obj, msg) => log.debug(obj, msg),
    info: (obj, msg) => log.info(obj, msg),
    warn: (obj, msg) => log.warn(obj, msg),
    error: (obj, msg) => log.error(obj, msg),
  };
}

function commandKey(clientId: string, seq: number): string {
  return `${clientId}#${seq}`;
}

export class ReplicaNode {
  readonly #options: NodeOptions;
  readonly #timing: Timing;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #self: ReplicaAddress;
  readonly #store: SqliteStore;
  #stateDb: Database.Database;
  #machine: StateMachine;
  #lastSnapshotSlot = 0;
  readonly #snapshotsSent = new Map<number, number>();
  #incoming: { from: number; slot: number; sha256: string; chunks: (Uint8Array | undefined)[]; received: number } | null = null;
  readonly #replica: Replica;
  readonly #peers: PeerTransport;
  readonly #front: Front;
  readonly #sessions = new SessionTable();
  readonly #inputs: TurnInput[] = [];
  readonly #pending = new Map<string, PendingRequest>();
  readonly #reads: PendingRead[] = [];
  /** Per-session event numbering and the connection each session's events go to. */
  readonly #eventSeq = new Map<number, number>();
  readonly #eventStream = new Map<number, FrontConnection>();
  readonly #connections = new Set<FrontConnection>();
  readonly #delaysInFlight = new Set<string>();
  #isTurnScheduled = false;
  #ticker: NodeJS.Timeout | null = null;
  /** True once this replica, as master, has taken over the sessions and serves clients. */
  #isServing = false;
  #status: Status;
  #createSeq = 0;
  readonly #bootNonce: string;
  #isStopped = false;
  /** Digests this replica computed at the slots of digest marks, awaiting the master's. */
  readonly #digestAt = new Map<number, string>();
  #digestSeq = 0;
  #lastDigestMarkAt = 0;
  /** Called when this replica's state differs from the master's: the process must stop. */
  readonly #onDiverged: (detail: { slot: number; mine: string; master: string }) => void;

  constructor(options: NodeOptions) {
    this.#options = options;
    this.#timing = { ...DEFAULT_TIMING, ...options.timing };
    this.#clock = options.clock ?? processClock;
    this.#log = options.logger.child({ replica: options.id });
    const self = options.cell.replicas.find((r) => r.id === options.id);
    if (self === undefined) throw new Error(`replica ${options.id} is not in the cell configuration`);
    this.#self = self;
    this.#bootNonce = `${options.id}.${this.#clock.now().toString(36)}`;
    this.#onDiverged =
      options.onDiverged ??
      (() => {
        // Nothing this replica serves can be trusted; an operator must rebuild its state.db.
        process.exit(3);
      });

    mkdirSync(options.dataDir, { recursive: true });
    this.#store = new SqliteStore({ path: join(options.dataDir, 'paxos.db') });
    this.#stateDb = this.#openStateDb();
    this.#machine = StateMachine.open(this.#stateDb, { cell: options.cell.cell });
    this.#lastSnapshotSlot = this.#machine.appliedIndex;

    const now = this.#clock.now();
    const durable = this.#store.load();
    const config: PaxosConfig = {
      id: options.id,
      replicas: options.cell.replicas.map((r) => r.id),
      leaseMs: this.#timing.leaseMs,
      maxDriftRate: this.#timing.maxDriftRate,
      heartbeatMs: this.#timing.heartbeatMs,
      electionTimeoutMs: this.#timing.electionTimeoutMs,
      electionJitterMs: this.#timing.electionJitterMs,
      windowSlots: 32,
      maxBatchCommands: options.maxBatchCommands ?? 1024,
      catchUpBatchSlots: 256,
    };
    this.#replica = new Replica({
      config,
      random: { next: () => Math.random() },
      logger: coreLogger(this.#log.child({ component: 'paxos' })),
      durable,
      now,
      applied: this.#machine.appliedIndex,
    });
    this.#status = this.#replica.status(now);
    this.#log.info(
      { isFresh: durable.isFresh, promised: formatBallot(durable.promised), commit: durable.commit, applied: this.#machine.appliedIndex },
      'replica starting',
    );

    this.#peers = new PeerTransport({
      cell: options.cell.cell,
      self,
      replicas: options.cell.replicas,
      logger: this.#log,
      validate: validateMessage,
      onMessage: (from, message: Message) => {
        this.#enqueue({ type: 'message', from, message });
      },
      onAux: (from, body) => {
        this.#onAux(from, body);
      },
    });
    const handler: FrontHandler = {
      onFrame: (connection, frame) => {
        this.#onClientFrame(connection, frame);
      },
      onClose: (connection) => {
        this.#connections.delete(connection);
        for (const [session, stream] of this.#eventStream) if (stream === connection) this.#eventStream.delete(session);
      },
    };
    this.#front = new Front({ address: self.client, handler, logger: this.#log });
  }

  async start(): Promise<void> {
    await this.#peers.start();
    await this.#front.start();
    // A candidacy before the links to a majority are up is a Prepare into the void that only
    // delays the election by a timeout; wait for them (bounded: a lone replica must still try).
    await this.#untilMajorityLinked(2 * this.#timing.electionTimeoutMs);
    this.#ticker = setInterval(() => {
      this.#enqueue({ type: 'tick' });
    }, this.#timing.tickMs);
    this.#enqueue({ type: 'tick' });
    this.#log.info({ peer: this.#self.peer, client: this.#self.client }, 'replica listening');
  }

  async #untilMajorityLinked(timeoutMs: number): Promise<void> {
    const others = this.#options.cell.replicas.filter((r) => r.id !== this.#options.id);
    const needed = Math.floor(this.#options.cell.replicas.length / 2);
    const deadline = this.#clock.now() + timeoutMs;
    while (others.filter((r) => this.#peers.isConnected(r.id)).length < needed && this.#clock.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async stop(): Promise<void> {
    if (this.#isStopped) return;
    this.#isStopped = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    await this.#front.close();
    await this.#peers.close();
    this.#store.close();
    this.#stateDb.close();
    this.#log.info({}, 'replica stopped');
  }

  status(): ReplicaStatus {
    const now = this.#clock.now();
    const status = this.#replica.status(now);
    const master = status.masterId === null ? null : this.#addressOf(status.masterId);
    return {
      id: this.#options.id,
      role: status.role,
      epoch: status.ballot,
      masterId: status.masterId,
      master,
      commit: status.commit,
      applied: this.#machine.appliedIndex,
      leaseRemainingMs: status.leaseUntil === null ? 0 : Math.max(0, status.leaseUntil - now),
      digest: this.#machine.digest(),
      digestSlot: this.#machine.appliedIndex,
    };
  }

  // --- the turn ------------------------------------------------------------------------------

  #enqueue(input: TurnInput): void {
    if (this.#isStopped) return;
    this.#inputs.push(input);
    if (this.#isTurnScheduled) return;
    this.#isTurnScheduled = true;
    // setImmediate, not a microtask: every socket read already queued in this event-loop turn
    // joins the same core turn, and so the same fsync.
    setImmediate(() => {
      this.#isTurnScheduled = false;
      this.#turn();
    });
  }

  #turn(): void {
    if (this.#isStopped) return;
    const inputs = this.#inputs.splice(0);
    const now = this.#clock.now();
    const proposals = inputs.filter((i): i is Extract<TurnInput, { type: 'propose' }> => i.type === 'propose');
    const result = runTurn(
      {
        replica: this.#replica,
        store: this.#store,
        logger: coreLogger(this.#log),
        validate: (raw) => raw as Message, // already validated by the peer transport
        send: (envelope) => {
          this.#peers.send(envelope);
        },
        apply: (entry) => {
          this.#apply(entry, now);
        },
        snapshotFor: (to, slot) => {
          this.#sendSnapshot(to, slot, now);
        },
      },
      inputs,
      now,
    );
    result.proposals.forEach((outcome, i) => {
      if (outcome.ok) return;
      const command = proposals[i]?.command;
      if (command === undefined) return;
      const pending = this.#pending.get(commandKey(command.clientId, command.seq));
      if (pending === undefined) return;
      if (outcome.reason === 'duplicate') return; // the first copy's answer will serve both
      this.#pending.delete(commandKey(command.clientId, command.seq));
      this.#redirect(pending.connection, pending.id);
    });
    this.#maybeSnapshot();
    this.#afterTurn(now);
  }

  // --- snapshots: compaction and transfer ------------------------------------------------------

  #openStateDb(): Database.Database {
    const db = new Database(join(this.#options.dataDir, 'state.db'));
    db.pragma('journal_mode = WAL');
    // state.db may lose its last entries in a crash: it is replayed from paxos.db, whose log is
    // never truncated above the applied index of a durable snapshot (DESIGN.md, Storage).
    db.pragma('synchronous = NORMAL');
    return db;
  }

  /**
   * Every snapshotEverySlots applied slots, make state.db durable (a WAL checkpoint syncs the
   * database file) and tell the core it may compact its log below that slot.
   */
  #maybeSnapshot(): void {
    const applied = this.#machine.appliedIndex;
    if (applied - this.#lastSnapshotSlot < this.#timing.snapshotEverySlots) return;
    this.#stateDb.pragma('wal_checkpoint(TRUNCATE)');
    this.#lastSnapshotSlot = applied;
    this.#replica.snapshotTaken(applied);
    this.#log.info({ slot: applied }, 'snapshot taken, log compacted behind it');
    this.#scheduleTurn();
  }

  /** A peer is behind our compaction point: ship it the whole state database, in chunks. */
  #sendSnapshot(to: number, slot: number, now: number): void {
    const lastSent = this.#snapshotsSent.get(to);
    if (lastSent !== undefined && now - lastSent < SNAPSHOT_RESEND_MS) return;
    this.#snapshotsSent.set(to, now);
    const bytes = this.#machine.snapshot();
    const applied = this.#machine.appliedIndex;
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const total = Math.max(1, Math.ceil(bytes.byteLength / SNAPSHOT_CHUNK_BYTES));
    this.#log.info({ peer: to, slot: applied, asked: slot, sizeBytes: bytes.byteLength, chunks: total }, 'sending snapshot');
    for (let index = 0; index < total; index++) {
      const chunk: SnapshotChunk = {
        kind: 'snapshot-chunk',
        slot: applied,
        index,
        total,
        sha256,
        bytes: bytes.subarray(index * SNAPSHOT_CHUNK_BYTES, (index + 1) * SNAPSHOT_CHUNK_BYTES),
      };
      this.#peers.sendFrame(to, { type: 'aux', body: chunk });
    }
  }

  #onAux(from: number, body: unknown): void {
    const chunk = validateSnapshotChunk(body);
    if (chunk === null) {
      this.#log.warn({ peer: from }, 'invalid aux frame dropped');
      return;
    }
    if (chunk.slot <= this.#machine.appliedIndex) return; // stale: we are already past it
    const incoming = this.#incoming;
    if (incoming?.from !== from || incoming.slot !== chunk.slot || incoming.sha256 !== chunk.sha256 || incoming.chunks.length !== chunk.total) {
      this.#incoming = { from, slot: chunk.slot, sha256: chunk.sha256, chunks: new Array<Uint8Array | undefined>(chunk.total), received: 0 };
    }
    const current = this.#incoming;
    if (current === null || current.chunks[chunk.index] !== undefined) return;
    current.chunks[chunk.index] = Buffer.from(chunk.bytes);
    current.received++;
    if (current.received < chunk.total) return;
    this.#incoming = null;
    const bytes = Buffer.concat(current.chunks.map((c) => c ?? Buffer.alloc(0)));
    if (createHash('sha256').update(bytes).digest('hex') !== current.sha256) {
      this.#log.warn({ peer: from, slot: current.slot }, 'snapshot checksum mismatch, dropped');
      return;
    }
    this.#installSnapshot(bytes, from);
  }

  /**
   * Replaces state.db with a snapshot: write it beside, fsync it, swap it in, reopen the
   * machine, and tell the core. A crash at any point leaves either the old database or the new
   * one, and the core restarts from whichever applied index it finds.
   */
  #installSnapshot(bytes: Buffer, from: number): void {
    const dir = this.#options.dataDir;
    const target = join(dir, 'state.db');
    const temporary = join(dir, 'state.db.incoming');
    rmSync(temporary, { force: true });
    StateMachine.restoreToFile(bytes, temporary);
    const fd = openSync(temporary, 'r');
    fsyncSync(fd);
    closeSync(fd);
    this.#stateDb.close();
    for (const suffix of ['-wal', '-shm']) if (existsSync(target + suffix)) rmSync(target + suffix);
    renameSync(temporary, target);
    const dirFd = openSync(dir, 'r');
    fsyncSync(dirFd);
    closeSync(dirFd);
    this.#stateDb = this.#openStateDb();
    this.#machine = StateMachine.open(this.#stateDb, { cell: this.#options.cell.cell });
    this.#lastSnapshotSlot = this.#machine.appliedIndex;
    const now = this.#clock.now();
    this.#replica.installSnapshot(this.#machine.appliedIndex, now);
    this.#log.info({ peer: from, slot: this.#machine.appliedIndex, sizeBytes: bytes.byteLength }, 'snapshot installed');
    this.#scheduleTurn();
  }

  #afterTurn(now: number): void {
    const status = this.#replica.status(now);
    const wasMaster = this.#status.role === 'master';
    this.#status = status;
    if (status.role !== 'master' && wasMaster) this.#onStepDown();
    if (status.role === 'master' && !this.#isServing && this.#replica.canServeReads(now)) this.#onMastership(now);
    if (this.#isServing) this.#masterDuties(now);
    this.#serveReads(now);
    this.#expireRequests(now);
  }

  #onMastership(now: number): void {
    this.#isServing = true;
    const listed = this.#machine.query({ type: 'ListSessions' });
    const sessions = listed.type === 'sessions' ? listed.sessions : [];
    this.#sessions.onMastership(sessions.map((s) => ({ session: s.session, leaseMs: s.leaseMs })), now);
    this.#log.info({ epoch: formatBallot(this.#status.ballot), sessions: sessions.length }, 'serving as master');
    const epoch = this.#epoch();
    for (const connection of this.#connections) connection.send({ type: 'master-failover', epoch });
  }

  #onStepDown(): void {
    if (this.#isServing) this.#log.warn({ epoch: formatBallot(this.#status.ballot) }, 'no longer master');
    this.#isServing = false;
    this.#sessions.onStepDown();
    this.#delaysInFlight.clear();
    // Unanswered requests may or may not be chosen; the client retries them with the same
    // (session, seq) at the new master, which answers from its record instead of re-applying.
    for (const [key, pending] of this.#pending) {
      this.#pending.delete(key);
      this.#redirect(pending.connection, pending.id);
    }
    for (const read of this.#reads.splice(0)) this.#redirect(read.connection, read.frame.id);
  }

  #masterDuties(now: number): void {
    if (this.#timing.digestEveryMs > 0 && now - this.#lastDigestMarkAt >= this.#timing.digestEveryMs) {
      this.#lastDigestMarkAt = now;
      this.#proposeInternalRaw({ clientId: `${DIGEST_MARK}${this.#bootNonce}`, seq: ++this.#digestSeq, payload: new Uint8Array(0) }, now);
    }
    for (const session of this.#sessions.takeExpired(now)) {
      this.#log.info({ session }, 'session lease expired');
      this.#proposeInternal({ type: 'ExpireSession', session }, `expire:${session}`, 1, now);
    }
    for (const delay of this.#machine.pendingLockDelays()) {
      if (delay.endsMs > now) break;
      if (this.#delaysInFlight.has(delay.path)) continue;
      this.#delaysInFlight.add(delay.path);
      this.#proposeInternal({ type: 'LockDelayEnd', path: delay.path }, `delay:${delay.path}`, delay.endsMs, now);
    }
  }

  #proposeInternalRaw(command: Command, now: number): void {
    if (this.#replica.propose(command, now).ok) this.#scheduleTurn();
  }

  #proposeInternal(command: MachineCommand, clientId: string, seq: number, now: number): void {
    const proposal: Command = { clientId, seq, payload: encodeFrame(command) };
    const outcome = this.#replica.propose(proposal, now);
    if (!outcome.ok && outcome.reason === 'not-master') this.#delaysInFlight.clear();
    if (outcome.ok) this.#scheduleTurn();
  }

  #scheduleTurn(): void {
    if (this.#isTurnScheduled) return;
    this.#isTurnScheduled = true;
    setImmediate(() => {
      this.#isTurnScheduled = false;
      this.#turn();
    });
  }

  // --- applying chosen entries ---------------------------------------------------------------

  #apply(entry: ChosenEntry, now: number): void {
    const value = entry.value;
    const commands = value.type === 'batch' ? value.commands : [];
    const isRuntime = (c: Command): boolean => c.clientId.startsWith(DIGEST_MARK) || c.clientId.startsWith(DIGEST_CHECK);
    const decoded = commands.map((c) => {
      if (isRuntime(c)) return null;
      const frame = decodeFrame(c.payload);
      return frame.ok ? frame.value : null;
    });
    const outcome = this.#machine.apply({ slot: entry.slot, stampMs: Math.floor(value.stampMs), commands: decoded });
    commands.forEach((command, i) => {
      const result = outcome.results[i];
      if (result === undefined || isRuntime(command)) return;
      this.#onResult(command, decoded[i], result, entry.slot, now);
    });
    if (outcome.events.length > 0) this.#pushEvents(outcome.events);
    for (const command of commands) {
      if (command.clientId.startsWith(DIGEST_MARK)) this.#onDigestMark(entry.slot, now);
      else if (command.clientId.startsWith(DIGEST_CHECK)) this.#onDigestCheck(command.payload);
    }
  }

  #onDigestMark(slot: number, now: number): void {
    const digest = this.#machine.digest();
    this.#digestAt.set(slot, digest);
    // Keep only recent marks: a check for an older one is for a replica that restarted.
    for (const s of this.#digestAt.keys()) if (s < slot - 100_000) this.#digestAt.delete(s);
    if (this.#isServing) {
      const check = { slot, digest };
      this.#replica.propose({ clientId: `${DIGEST_CHECK}${this.#bootNonce}`, seq: ++this.#digestSeq, payload: encodeFrame(check) }, now);
    }
  }

  #onDigestCheck(payload: Uint8Array): void {
    const decoded = decodeFrame(payload);
    const check = decoded.ok ? (decoded.value as { slot?: unknown; digest?: unknown }) : null;
    if (check === null || typeof check.slot !== 'number' || typeof check.digest !== 'string') {
      this.#log.warn({}, 'malformed digest check ignored');
      return;
    }
    const mine = this.#digestAt.get(check.slot);
    this.#digestAt.delete(check.slot);
    if (mine === undefined) return; // applied that slot before a restart, or from a snapshot
    if (mine === check.digest) {
      this.#log.debug({ slot: check.slot, digest: mine }, 'state digest agrees with the master');
      return;
    }
    this.#log.fatal(
      { slot: check.slot, mine, master: check.digest },
      'STATE DIGEST DIFFERS FROM THE MASTER: this replica has diverged and stops serving; rebuild its state.db from a snapshot',
    );
    this.#onDiverged({ slot: check.slot, mine, master: check.digest });
  }

  #onResult(command: Command, decoded: unknown, result: CommandResult, slot: number, now: number): void {
    const type = (decoded as { type?: unknown } | null)?.type;
    if (this.#isServing) {
      if (result.type === 'session-created') {
        const leaseMs = (decoded as { leaseMs: number }).leaseMs;
        this.#sessions.onCreated(result.session, leaseMs, now);
      } else if (result.type === 'session-closed' || result.type === 'session-expired') {
        const session = (decoded as { session: number }).session;
        this.#sessions.onRemoved(session);
        this.#eventSeq.delete(session);
        this.#eventStream.delete(session);
      } else if (type === 'ExpireSession' && result.type === 'error') {
        this.#sessions.onRemoved((decoded as { session: number }).session);
      }
      if (type === 'LockDelayEnd') this.#delaysInFlight.delete((decoded as { path: string }).path);
    }
    const key = commandKey(command.clientId, command.seq);
    const pending = this.#pending.get(key);
    if (pending === undefined) return;
    this.#pending.delete(key);
    pending.connection.send({ type: 'result', id: pending.id, epoch: this.#epoch(), slot, result });
  }

  #pushEvents(events: readonly MachineEvent[]): void {
    if (!this.#isServing) return;
    const epoch = this.#epoch();
    for (const event of events) {
      const eventSeq = (this.#eventSeq.get(event.session) ?? 0) + 1;
      this.#eventSeq.set(event.session, eventSeq);
      // A session with no attached connection misses the event; its next KeepAlive reply says
      // so (isEventGap), and the client re-reads.
      this.#eventStream.get(event.session)?.send({ type: 'event', session: event.session, eventSeq, epoch, event });
    }
  }

  // --- clients ---------------------------------------------------------------------------------

  #onClientFrame(connection: FrontConnection, frame: ClientFrame): void {
    this.#connections.add(connection);
    const now = this.#clock.now();
    switch (frame.type) {
      case 'status':
        connection.send({ type: 'status', id: frame.id, status: this.status() });
        return;
      case 'keep-alive': {
        if (!this.#isServing) {
          this.#redirect(connection, frame.id);
          return;
        }
        const remaining = this.#sessions.keepAlive(frame.session, now);
        if (remaining === null) {
          connection.send({ type: 'error', id: frame.id, code: ErrorCode.SESSION_EXPIRED, message: `session ${frame.session} has expired` });
          return;
        }
        this.#eventStream.set(frame.session, connection);
        const eventSeq = this.#eventSeq.get(frame.session) ?? 0;
        connection.send({
          type: 'keep-alive-ack',
          id: frame.id,
          epoch: this.#epoch(),
          leaseRemainingMs: remaining,
          eventSeq,
          isEventGap: frame.eventSeqSeen !== eventSeq,
        });
        return;
      }
      case 'query':
        if (!this.#isServing) {
          this.#redirect(connection, frame.id);
          return;
        }
        this.#reads.push({ connection, frame, deadline: now + this.#timing.requestTimeoutMs });
        this.#serveReads(now);
        return;
      case 'command':
        this.#onCommand(connection, frame, now);
        return;
    }
  }

  #onCommand(connection: FrontConnection, frame: Extract<ClientFrame, { type: 'command' }>, now: number): void {
    if (!this.#isServing) {
      this.#redirect(connection, frame.id);
      return;
    }
    const command = frame.command;
    let clientId: string;
    let seq: number;
    if (command.type === 'CreateSession') {
      clientId = `create:${this.#bootNonce}`;
      seq = ++this.#createSeq;
    } else if ('seq' in command) {
      if (!this.#sessions.has(command.session)) {
        connection.send({ type: 'error', id: frame.id, code: ErrorCode.SESSION_EXPIRED, message: `session ${command.session} has expired` });
        return;
      }
      clientId = `session:${command.session}`;
      seq = command.seq;
    } else {
      connection.send({ type: 'error', id: frame.id, code: ErrorCode.BAD_REQUEST, message: 'not a client command' });
      return;
    }
    this.#pending.set(commandKey(clientId, seq), { connection, id: frame.id, deadline: now + this.#timing.requestTimeoutMs });
    this.#enqueue({ type: 'propose', command: { clientId, seq, payload: encodeFrame(command) } });
  }

  #serveReads(now: number): void {
    if (this.#reads.length === 0 || !this.#replica.canServeReads(now)) return;
    const epoch = this.#epoch();
    for (const read of this.#reads.splice(0)) {
      const result: QueryResult = this.#machine.query(read.frame.query);
      read.connection.send({ type: 'query-result', id: read.frame.id, epoch, slot: this.#machine.appliedIndex, result });
    }
  }

  #expireRequests(now: number): void {
    for (const [key, pending] of this.#pending) {
      if (pending.deadline > now) continue;
      this.#pending.delete(key);
      pending.connection.send({ type: 'error', id: pending.id, code: ErrorCode.NO_QUORUM, message: 'no quorum: the write was not chosen in time; retry with the same seq' });
    }
    for (let i = this.#reads.length - 1; i >= 0; i--) {
      const read = this.#reads[i];
      if (read === undefined || read.deadline > now) continue;
      this.#reads.splice(i, 1);
      read.connection.send({ type: 'error', id: read.frame.id, code: ErrorCode.NO_QUORUM, message: 'no quorum: the master could not confirm its lease in time' });
    }
  }

  #redirect(connection: FrontConnection, id: number): void {
    const masterId = this.#status.masterId;
    const master = masterId === null || masterId === this.#options.id ? null : this.#addressOf(masterId);
    const frame: ServerFrame = { type: 'redirect', id, master, epoch: this.#epoch() };
    connection.send(frame);
  }

  #addressOf(id: number): string | null {
    return this.#options.cell.replicas.find((r) => r.id === id)?.client ?? null;
  }

  #epoch(): Epoch {
    return this.#status.ballot;
  }
}
