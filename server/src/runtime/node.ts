// One replica process, wired (DESIGN.md, Running and testing; issue 4): the Multi-Paxos core
// over the SQLite acceptor store (paxos.db) and the peer transport, the state machine over
// state.db, and the client service (sessions/service.ts, pure) behind the WebSocket front end.
// Everything that arrives in one event-loop turn (peer messages, client proposals, a tick) is
// fed to the core in ONE runTurn, so one fsync covers the turn (group commit) and nothing is
// sent before it is on disk.
//
// What lives here and not in the service is what touches the world: sockets, files, timers,
// the clock, snapshots of state.db (compaction and transfer) and the process exit on divergence.

import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fdatasync, mkdirSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { ReplicaStatus } from '@paxlock/shared';
import { StateMachine } from '../machine/index.ts';
import { formatBallot } from '../paxos/ballot.ts';
import type { Admission, Message } from '../paxos/messages.ts';
import type { Config as PaxosConfig, Logger as CoreLogger } from '../paxos/ports.ts';
import { Replica } from '../paxos/replica.ts';
import { validateMessage } from '../paxos/validate.ts';
import { Front, type FrontConnection, type FrontHandler, type HttpAnswer } from '../sessions/front.ts';
import { CellService } from '../sessions/service.ts';
import { SqliteStore } from '../storage/sqlite-store.ts';
import { processClock, type Clock } from './clock.ts';
import type { CellConfig, ReplicaAddress } from './config.ts';
import { PeerTransport } from './peers.ts';
import { renderMetrics, type Metric } from './metrics.ts';
import { SNAPSHOT_CHUNK_BYTES, SnapshotReceiver, validateSnapshotChunk, type SnapshotChunk } from './snapshot-frames.ts';
import { renameDurably } from './state-file.ts';
import { copyState, INCOMING_PREFIX, removeLeftoverCopies, removeStateCopy, sendInChunks, sha256OfFile, type StateCopy } from './state-copy.ts';
import { WriteTrace } from './trace.ts';
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
  /** Longest a stopping master waits for its successor to take over before it closes anyway. */
  readonly handoverWaitMs: number;
}

export const DEFAULT_TIMING: Timing = {
  leaseMs: 2_000,
  heartbeatMs: 200,
  electionTimeoutMs: 1_000,
  electionJitterMs: 500,
  maxDriftRate: 0.01,
  tickMs: 50,
  requestTimeoutMs: 5_000,
  snapshotEverySlots: 10_000,
  digestEveryMs: 30_000,
  handoverWaitMs: 1_000,
};

/**
 * Entries applied to state.db go into one open transaction, each entry a savepoint in it
 * (machine.ts nests its own), committed after this many entries, at every tick, and before
 * anything reads the file from outside this connection (a snapshot, a copy, stop). A commit
 * writes the pages the entries dirtied to the WAL: per entry, it was most of the cost of an
 * apply (pnpm bench:machine: an Acquire or Release alone costs 50 us with a commit each, 22 us
 * with 32 entries to a commit). state.db was never the durable record: paxos.db is, and a
 * crash replays what state.db lost from its log (DESIGN.md, Storage).
 */
const STATE_ENTRIES_PER_COMMIT = 32;

/** How often a follower asks the master for its commit index, for stale reads (freshness.ts). */
const FRESHNESS_PROBE_MS = 100;

/** A follower's freshness probe and the master's answer (aux frames). */
type FreshnessProbe =
  | { readonly kind: 'commit-probe'; readonly sentAt: number }
  | { readonly kind: 'commit-answer'; readonly sentAt: number; readonly commit: number };

function validateFreshnessProbe(raw: unknown): FreshnessProbe | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const r = raw as Record<string, unknown>;
  if (typeof r['sentAt'] !== 'number' || !Number.isFinite(r['sentAt'])) return null;
  if (r['kind'] === 'commit-probe') return { kind: 'commit-probe', sentAt: r['sentAt'] };
  if (r['kind'] === 'commit-answer' && typeof r['commit'] === 'number' && Number.isSafeInteger(r['commit']) && r['commit'] >= 0) {
    return { kind: 'commit-answer', sentAt: r['sentAt'], commit: r['commit'] };
  }
  return null;
}

/** A peer that asked for a snapshot is not sent another for this long. */
const SNAPSHOT_RESEND_MS = 10_000;
/**
 * A snapshot's next chunk is read and queued only while the peer link holds at most this many
 * unsent bytes (four chunks): the link keeps busy, and the state is never all in memory.
 */
const SNAPSHOT_WINDOW_BYTES = 4 * SNAPSHOT_CHUNK_BYTES;
/** GET /backup answers 503 while this many backups are being copied or streamed already. */
const BACKUPS_IN_FLIGHT_MAX = 2;

/** A replacement disk's id: 48 random bits, never 0 (the founding disks' id). */
function randomDiskId(): number {
  for (;;) {
    const id = randomBytes(6).readUIntBE(0, 6);
    if (id !== 0) return id;
  }
}

export interface NodeOptions {
  readonly cell: CellConfig;
  readonly id: number;
  readonly dataDir: string;
  /**
   * A fresh data directory is a founding disk of a new cell (--bootstrap, or --restore): disk 0,
   * a voter at once. Otherwise a fresh directory is a replacement disk: a random disk id, and a
   * learner until the master admits it (docs/cell.md, Replacing a lost disk). Ignored once the
   * directory has a disk id.
   */
  readonly isFoundingDisk?: boolean;
  /** Append the write-path trace (trace.ts) to this file; off when absent. */
  readonly traceFile?: string;
  /** Cut off a client whose unsent frames exceed this (front.ts; default 16 MiB). */
  readonly clientSendBufferMaxBytes?: number;
  readonly logger: Logger;
  readonly timing?: Partial<Timing>;
  readonly clock?: Clock;
  /** Most commands per slot; 1 turns batching off (benchmarks). */
  readonly maxBatchCommands?: number;
  /** How long an Acquire that would only queue may wait to share a log entry (service.ts; 0: never). */
  readonly queueHoldMs?: number;
  /** What to do when this replica's state digest differs from the master's (default: exit 3). */
  readonly onDiverged?: (detail: { slot: number; mine: string; master: string }) => void;
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

export class ReplicaNode {
  readonly #options: NodeOptions;
  readonly #timing: Timing;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #self: ReplicaAddress;
  readonly #store: SqliteStore;
  readonly #trace: WriteTrace | null;
  #stateDb: Database.Database;
  #machine: StateMachine;
  /** Entries applied in the open state.db transaction (STATE_ENTRIES_PER_COMMIT). */
  #stateEntriesUncommitted = 0;
  #lastSnapshotSlot = 0;
  readonly #snapshotsSent = new Map<number, number>();
  /** The peer a snapshot is being copied for or sent to (one at a time), or null. */
  #snapshotSendingTo: number | null = null;
  /** Copies of state.db under way (snapshots, backups), so a snapshot install or stop() can end them. */
  readonly #copies = new Set<{ readonly controller: AbortController; readonly done: Promise<unknown> }>();
  #backupsInFlight = 0;
  /** The snapshot being received: its chunks are written to `path` in order as they come, and hashed. */
  readonly #incoming: SnapshotReceiver;
  /** A received snapshot being made durable and swapped in: chunks meanwhile are dropped. */
  #isInstalling = false;
  readonly #replicaIds: ReadonlySet<number>;
  readonly #replica: Replica;
  readonly #peers: PeerTransport;
  readonly #front: Front;
  readonly #service: CellService;
  readonly #inputs: TurnInput[] = [];
  readonly #connections = new Map<number, FrontConnection>();
  /** Counts for /metrics that no component keeps itself. */
  readonly #counts = { turns: 0, snapshotsTaken: 0, snapshotsSent: 0, masterChanges: 0, candidacies: 0, backupsServed: 0 };
  /** What the last turn left: to count master changes and candidacies (for /metrics). */
  #seen: { masterId: number | null; role: string; round: number } = { masterId: null, role: 'follower', round: -1 };
  #isTurnScheduled = false;
  #ticker: NodeJS.Timeout | null = null;
  #holdTimer: NodeJS.Timeout | null = null;
  #prober: NodeJS.Timeout | null = null;
  readonly #bootNonce: string;
  /** This replica's history of the cell (SqliteStore.incarnation; peers.ts refuses other histories). */
  #incarnation: number | null;
  #isStopped = false;
  #stopping: Promise<void> | null = null;

  constructor(options: NodeOptions) {
    this.#options = options;
    this.#timing = { ...DEFAULT_TIMING, ...options.timing };
    this.#clock = options.clock ?? processClock;
    this.#log = options.logger.child({ replica: options.id });
    const self = options.cell.replicas.find((r) => r.id === options.id);
    if (self === undefined) throw new Error(`replica ${options.id} is not in the cell configuration`);
    this.#self = self;
    this.#trace = options.traceFile === undefined ? null : new WriteTrace(options.traceFile, options.id);
    this.#bootNonce = `${options.id}.${this.#clock.now().toString(36)}`;

    mkdirSync(options.dataDir, { recursive: true });
    this.#incoming = new SnapshotReceiver(options.dataDir, INCOMING_PREFIX);
    const leftovers = removeLeftoverCopies(options.dataDir);
    if (leftovers > 0) this.#log.info({ files: leftovers }, 'removed state copies and snapshot files left by a crash');
    // Chosen marks and the commit index ride with the next fsynced transaction (or the next
    // tick's flush): one transaction per slot on the master, none between quorum and apply.
    this.#store = new SqliteStore({ path: join(options.dataDir, 'paxos.db'), deferUnsynced: true });
    const disk = this.#claimDisk(options.isFoundingDisk === true);
    this.#stateDb = this.#openStateDb();
    this.#machine = StateMachine.open(this.#stateDb, { cell: options.cell.cell });
    this.#lastSnapshotSlot = this.#machine.appliedIndex;

    const now = this.#clock.now();
    const durable = this.#store.load();
    this.#incarnation = this.#store.incarnation;
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
      diskId: disk.diskId,
    });
    this.#replicaIds = new Set(options.cell.replicas.map((r) => r.id));
    this.#service = new CellService(
      {
        id: options.id,
        cell: options.cell.cell,
        maxDriftRate: this.#timing.maxDriftRate,
        clientAddresses: new Map(options.cell.replicas.map((r) => [r.id, r.client])),
        replica: this.#replica,
        machine: () => this.#machine,
        logger: coreLogger(this.#log.child({ component: 'service' })),
        bootNonce: this.#bootNonce,
        requestTimeoutMs: this.#timing.requestTimeoutMs,
        digestEveryMs: this.#timing.digestEveryMs,
        ...(options.queueHoldMs === undefined ? {} : { queueHoldMs: options.queueHoldMs }),
        onDiverged:
          options.onDiverged ??
          (() => {
            // Nothing this replica serves can be trusted; an operator must rebuild its state.db.
            process.exit(3);
          }),
      },
      now,
    );
    const isVoter = this.#replica.status(now).isVoter;
    this.#log.info(
      { isFresh: durable.isFresh, promised: formatBallot(durable.promised), commit: durable.commit, applied: this.#machine.appliedIndex, incarnation: this.#incarnation, diskId: disk.diskId, isNewDisk: disk.isNew, isVoter },
      isVoter ? 'replica starting: a voter' : 'replica starting: a learner',
    );
    // A disk that held the seat once (a founding disk, or one admitted before) and whose seat a
    // later admission gave to another disk: the master never admits it again as it is.
    const ownAdmissions = this.#replica.admitted().filter((a) => a.replica === options.id);
    const seatHolder = ownAdmissions.at(-1);
    const heldSeatOnce = disk.diskId === 0 || ownAdmissions.some((a) => a.diskId === disk.diskId);
    if (!isVoter && seatHolder !== undefined && seatHolder.diskId !== disk.diskId && heldSeatOnce) {
      this.#log.warn(
        { diskId: disk.diskId, seatHolder: seatHolder.diskId, sinceSlot: seatHolder.slot + 1 },
        "this disk was replaced: this replica's seat belongs to another disk, so this disk never votes again. Wipe this data directory and start the replica without --bootstrap to rejoin as a replacement disk",
      );
    } else if (!isVoter) {
      // The one line an operator who forgot --bootstrap on a new cell must see: five learners wait forever.
      this.#log.warn(
        { diskId: disk.diskId },
        'this disk does not hold its seat: it is a replacement disk, a learner (it follows the master and catches up, but neither votes nor runs for master) until the master admits it through the log. If this is the first start of a NEW cell, stop it: every replica of a new cell needs --bootstrap on its first start',
      );
    }

    this.#peers = new PeerTransport({
      cell: options.cell.cell,
      self,
      replicas: options.cell.replicas,
      logger: this.#log,
      validate: validateMessage,
      onMessage: (from, message: Message) => {
        this.#trace?.mark('peer-in', `${message.type} from ${String(from)}`);
        this.#enqueue({ type: 'message', from, message });
      },
      onAux: (from, body) => {
        this.#onAux(from, body);
      },
      incarnation: () => this.#incarnation,
      onIncarnation: (incarnation) => {
        this.#store.setIncarnation(incarnation);
        this.#incarnation = incarnation;
        this.#log.info({ incarnation }, 'fresh replica joined the cell history of its peers');
      },
    });
    const handler: FrontHandler = {
      onFrame: (connection, frame) => {
        this.#trace?.mark('client-frame', frame.type);
        this.#connections.set(connection.id, connection);
        this.#service.onClientFrame(connection.id, frame, this.#clock.now());
        this.#flush();
      },
      metrics: () => this.#metricsText(),
      backup: async () => this.#backupAnswer(),
      health: () => this.#healthAnswer(),
      onClose: (connection) => {
        this.#connections.delete(connection.id);
        this.#service.onClientClosed(connection.id);
      },
    };
    this.#front = new Front({
      address: self.client,
      handler,
      logger: this.#log,
      ...(options.clientSendBufferMaxBytes === undefined ? {} : { sendBufferMaxBytes: options.clientSendBufferMaxBytes }),
    });
  }

  /**
   * This data directory's disk id (SqliteStore.diskId): the one recorded, or for a fresh
   * directory 0 (a founding disk) or a new random id (a replacement disk), recorded durably
   * before the core starts, so a crash cannot turn a replacement into a founding disk.
   */
  #claimDisk(isFoundingDisk: boolean): { diskId: number; isNew: boolean } {
    const recorded = this.#store.diskId;
    if (recorded !== null) return { diskId: recorded, isNew: false };
    const diskId = isFoundingDisk ? 0 : randomDiskId();
    this.#store.setDiskId(diskId);
    return { diskId, isNew: true };
  }

  async start(): Promise<void> {
    await this.#peers.start();
    await this.#front.start();
    // A candidacy before the links to a majority are up is a Prepare into the void that only
    // delays the election by a timeout; wait for them (bounded: a lone replica must still try).
    await this.#untilMajorityLinked(2 * this.#timing.electionTimeoutMs);
    if (this.#stopping !== null) return; // stopped while starting: no timers
    this.#ticker = setInterval(() => {
      this.#commitState();
      this.#store.flushDeferred();
      this.#enqueue({ type: 'tick' });
    }, this.#timing.tickMs);
    this.#enqueue({ type: 'tick' });
    this.#prober = setInterval(() => {
      this.#probeFreshness();
    }, FRESHNESS_PROBE_MS);
    this.#log.info({ peer: this.#self.peer, client: this.#self.client }, 'replica listening');
  }

  async #untilMajorityLinked(timeoutMs: number): Promise<void> {
    const deadline = this.#clock.now() + timeoutMs;
    while (this.#stopping === null && !this.#isMajorityLinked() && this.#clock.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Linked to enough peers that, with this replica, they make a majority of the cell. */
  #isMajorityLinked(): boolean {
    const others = this.#options.cell.replicas.filter((r) => r.id !== this.#options.id);
    return others.filter((r) => this.#peers.isConnected(r.id)).length >= Math.floor(this.#options.cell.replicas.length / 2);
  }

  /**
   * Gives mastership up without stopping (SIGUSR2; etcd's move-leader): the replica resigns,
   * naming a successor, and carries on as a follower. Returns the successor, or null if this
   * replica is not master (or is stopping).
   */
  stepDown(): number | null {
    if (this.#stopping !== null) return null;
    const successor = this.#resign();
    if (successor !== null) this.#log.info({ successor }, 'mastership given up on request');
    return successor;
  }

  /** Replica.resign, and a turn to send the resign messages; the successor, or null if not master. */
  #resign(): number | null {
    const successor = this.#replica.resign(this.#clock.now());
    if (successor !== null) this.#scheduleTurn();
    return successor;
  }

  /** Stops the replica (handing mastership over first if it is master); a second call waits for the first. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    await this.#handOver();
    this.#isStopped = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
    if (this.#prober !== null) clearInterval(this.#prober);
    // Copies end at their next step and remove their files; backups being streamed end with
    // their connections (the front closes them), which removes their files.
    await this.#abortCopies('replica stopping');
    this.#incoming.drop();
    await this.#front.close();
    await this.#peers.close();
    this.#store.close();
    this.#commitState();
    this.#stateDb.close();
    this.#trace?.close();
    this.#log.info({}, 'replica stopped');
  }

  /**
   * A stopping master resigns (Replica.resign) and keeps running as a follower until another
   * replica is master, so its clients are redirected instead of waiting out the lease and an
   * election. Bounded: it gives up after handoverWaitMs, or at once when too few peers are
   * linked for anyone to be elected (the whole cell stopping together).
   */
  async #handOver(): Promise<void> {
    const startedAt = this.#clock.now();
    const successor = this.#resign();
    if (successor === null) return;
    let masterId: number | null = null;
    while (this.#clock.now() - startedAt < this.#timing.handoverWaitMs) {
      masterId = this.#replica.status(this.#clock.now()).masterId;
      if (masterId !== null && masterId !== this.#options.id) break;
      // Too few links for the successor to gather a majority (this replica is one of its acceptors).
      if (!this.#isMajorityLinked()) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const tookMs = Math.round(this.#clock.now() - startedAt);
    if (masterId !== null && masterId !== this.#options.id) this.#log.info({ successor, masterId, tookMs }, 'mastership handed over');
    else this.#log.warn({ successor, tookMs }, 'stopping before a successor took over');
  }

  /** GET /health: 200 if this replica is part of a working cell (service.ts), else 503; JSON either way. */
  #healthAnswer(): HttpAnswer {
    const now = this.#clock.now();
    const { isHealthy, reason } = this.#service.health(now);
    const status = this.#service.status(now, false);
    const body = { health: isHealthy, ...(reason === null ? {} : { reason }), id: status.id, cell: status.cell, role: status.role, masterId: status.masterId, master: status.master, commit: status.commit, applied: status.applied, isVoter: status.isVoter, diskId: status.diskId, bootedAtMs: this.#store.bootedAtMs };
    return { status: isHealthy ? 200 : 503, headers: { 'content-type': 'application/json' }, body: `${JSON.stringify(body)}\n` };
  }

  /**
   * GET /backup: the state database from the master (service.ts), or where the master is. The
   * master copies state.db a few pages per turn (state-copy.ts), hashes the copy for the
   * x-paxlock-sha256 header, then streams it; the copy is removed when the answer ends, however
   * it ends. The lease is checked when asked: every write acknowledged before then is in the
   * copy, which is as of when it completed (its slot, read from the copy).
   */
  async #backupAnswer(): Promise<HttpAnswer> {
    const answer = this.#service.backup(this.#clock.now());
    if ('master' in answer) {
      if (answer.master !== null) return { status: 307, headers: { location: `http://${answer.master}/backup` }, body: `the master is ${answer.master}\n` };
      return { status: 503, body: 'no master yet: retry shortly\n' };
    }
    if (this.#backupsInFlight >= BACKUPS_IN_FLIGHT_MAX) return { status: 503, body: 'backups under way already: retry shortly\n' };
    this.#backupsInFlight++;
    let copy: (StateCopy & { readonly sha256: string }) | null = null;
    try {
      const startedAt = this.#clock.now();
      copy = await this.#withCopy(async (signal, taken) => ({ ...taken, sha256: await sha256OfFile(taken.path, signal) }));
      if (this.#isStopped) throw new Error('replica stopping');
      const { path, slot, sizeBytes, sha256 } = copy;
      const body = createReadStream(path);
      body.once('close', () => {
        removeStateCopy(path);
        this.#backupsInFlight--;
      });
      copy = null; // the stream owns the file now
      this.#counts.backupsServed++;
      this.#log.info({ slot, sizeBytes, sha256, copyMs: Math.round(this.#clock.now() - startedAt) }, 'backup served');
      return {
        status: 200,
        headers: { 'content-type': 'application/vnd.sqlite3', 'content-length': String(sizeBytes), 'x-paxlock-cell': this.#options.cell.cell, 'x-paxlock-slot': String(slot), 'x-paxlock-sha256': sha256 },
        body,
      };
    } catch (err: unknown) {
      if (copy !== null) removeStateCopy(copy.path);
      this.#backupsInFlight--;
      if (this.#isStopped) return { status: 503, body: 'replica stopping: retry at another replica\n' };
      throw err; // the front answers 500 and logs it
    }
  }

  /** GET /metrics: this replica's role, progress, lease, sessions, disk and links (metrics.ts). */
  #metricsText(): string {
    const status = this.#service.status(this.#clock.now(), false);
    const sessions = (this.#stateDb.prepare('SELECT COUNT(*) AS n FROM sessions').get() as { n: number }).n;
    const peers = this.#options.cell.replicas.filter((r) => r.id !== this.#options.id);
    const one = (value: number): { value: number }[] => [{ value }];
    const metrics: Metric[] = [
      { name: 'replica_info', help: 'This replica: its id and cell (always 1).', type: 'gauge', samples: [{ labels: { cell: this.#options.cell.cell, id: String(this.#options.id) }, value: 1 }] },
      { name: 'is_master', help: '1 if this replica is the master.', type: 'gauge', samples: one(status.role === 'master' ? 1 : 0) },
      { name: 'master_id', help: 'The replica this one takes for master (0: none known).', type: 'gauge', samples: one(status.masterId ?? 0) },
      { name: 'is_voter', help: '1 if this replica\'s disk holds its seat (0: a replacement disk not yet admitted, a learner).', type: 'gauge', samples: one(status.isVoter ? 1 : 0) },
      { name: 'disk_id', help: 'This replica\'s disk: 0 for a founding disk, else the replacement disk\'s random id.', type: 'gauge', samples: one(status.diskId) },
      { name: 'epoch_round', help: 'The round of the highest ballot promised (the cell epoch).', type: 'gauge', samples: one(status.epoch.round) },
      { name: 'commit_index', help: 'Every slot up to this one is chosen and known here.', type: 'gauge', samples: one(status.commit) },
      { name: 'applied_index', help: 'Every slot up to this one is applied to the state machine here.', type: 'gauge', samples: one(status.applied) },
      { name: 'lease_remaining_seconds', help: 'Master lease left (0 unless master).', type: 'gauge', samples: one(status.leaseRemainingMs / 1000) },
      { name: 'sessions', help: 'Sessions in the replicated state.', type: 'gauge', samples: one(sessions) },
      { name: 'client_connections', help: 'Client WebSocket connections open to this replica.', type: 'gauge', samples: one(this.#connections.size) },
      { name: 'client_frames_total', help: 'Client frames received.', type: 'counter', samples: one(this.#front.stats.framesIn) },
      { name: 'client_bad_frames_total', help: 'Client frames refused as invalid.', type: 'counter', samples: one(this.#front.stats.badFrames) },
      { name: 'client_slow_closed_total', help: 'Client connections cut off because they stopped reading.', type: 'counter', samples: one(this.#front.stats.closedForSlowness) },
      { name: 'turns_total', help: 'Turns of the consensus core run.', type: 'counter', samples: one(this.#counts.turns) },
      { name: 'log_commits_total', help: 'paxos.db transactions committed.', type: 'counter', samples: one(this.#store.stats.commits) },
      { name: 'log_fsyncs_total', help: 'paxos.db transactions made durable with an fsync (promises, acceptances).', type: 'counter', samples: one(this.#store.stats.syncedCommits) },
      { name: 'log_fsync_seconds_total', help: 'Time spent in those durable transactions.', type: 'counter', samples: one(this.#store.stats.syncedSeconds) },
      { name: 'snapshots_taken_total', help: 'Durable state.db snapshots taken (each lets the log be compacted).', type: 'counter', samples: one(this.#counts.snapshotsTaken) },
      { name: 'snapshots_sent_total', help: 'Snapshots shipped to replicas behind the compaction point.', type: 'counter', samples: one(this.#counts.snapshotsSent) },
      { name: 'master_changes_total', help: 'Times this replica came to know a new master (the first included); alert on its rate.', type: 'counter', samples: one(this.#counts.masterChanges) },
      { name: 'candidacies_total', help: 'Elections this replica started (each a new ballot of its own).', type: 'counter', samples: one(this.#counts.candidacies) },
      { name: 'is_healthy', help: '1 while GET /health answers 200 here.', type: 'gauge', samples: one(this.#service.health(this.#clock.now()).isHealthy ? 1 : 0) },
      { name: 'backups_served_total', help: 'GET /backup answered with the state database.', type: 'counter', samples: one(this.#counts.backupsServed) },
      { name: 'peer_connected', help: '1 if the link to this peer is up.', type: 'gauge', samples: peers.map((r) => ({ labels: { peer: String(r.id) }, value: this.#peers.isConnected(r.id) ? 1 : 0 })) },
      { name: 'peer_frames_sent_total', help: 'Frames written to peers.', type: 'counter', samples: one(this.#peers.stats.sent) },
      { name: 'peer_frames_dropped_total', help: 'Frames to peers dropped (link down or backed up).', type: 'counter', samples: one(this.#peers.stats.dropped) },
      { name: 'peer_frames_invalid_total', help: 'Frames from peers refused as invalid.', type: 'counter', samples: one(this.#peers.stats.invalid) },
    ];
    return renderMetrics(metrics);
  }

  status(): ReplicaStatus {
    return this.#service.status(this.#clock.now());
  }

  // --- the turn ------------------------------------------------------------------------------

  #enqueue(input: TurnInput): void {
    if (this.#isStopped) return;
    this.#inputs.push(input);
    this.#scheduleTurn();
  }

  #turn(): void {
    if (this.#isStopped) return;
    this.#counts.turns++;
    const now = this.#clock.now();
    const proposals = this.#service.takeProposals(now);
    const inputs = [...this.#inputs.splice(0), ...proposals.map((command): TurnInput => ({ type: 'propose', command }))];
    this.#trace?.mark('turn', String(inputs.length));
    // Messages are gathered per peer and written as one frame each: before every persist (so
    // the master's early Accepts still leave before its fsync), before the first entry is
    // applied (the answers are durable by then) and at the end of the turn.
    const outgoing = new Map<number, Message[]>();
    const flushPeers = (): void => {
      // Peers whose queues hold the very same message objects (the master's Accepts, which go
      // to every follower alike) get one encoding of them between them.
      const groups: { to: number[]; messages: Message[] }[] = [];
      for (const [to, messages] of outgoing) {
        const same = groups.find((g) => g.messages.length === messages.length && g.messages.every((m, i) => m === messages[i]));
        if (same === undefined) groups.push({ to: [to], messages });
        else same.to.push(to);
      }
      for (const { to, messages } of groups) {
        this.#trace?.mark('peers-out', `${messages.map((m) => m.type).join('+')} to ${to.join(',')}`);
        this.#peers.sendBatchToEach(to, messages);
      }
      outgoing.clear();
    };
    const result = runTurn(
      {
        replica: this.#replica,
        store: {
          persist: (batch) => {
            flushPeers();
            this.#trace?.mark('persist-start', `accepted ${String(batch.accepted.length)} chosen ${String(batch.chosen.length)}`);
            this.#store.persist(batch);
            this.#trace?.mark('persist-end');
          },
        },
        logger: coreLogger(this.#log),
        validate: (raw) => raw as Message, // already validated by the peer transport
        send: (envelope) => {
          const queue = outgoing.get(envelope.to);
          if (queue === undefined) outgoing.set(envelope.to, [envelope.message]);
          else queue.push(envelope.message);
        },
        apply: (entry) => {
          // The Ready's answers (Accepted, promises) are durable already: let them go before
          // the state machine runs, so an acceptor's reply does not wait for its own apply.
          flushPeers();
          this.#trace?.mark('apply-start', String(entry.slot));
          if (!this.#stateDb.inTransaction) this.#stateDb.exec('BEGIN');
          this.#stateEntriesUncommitted++;
          this.#service.apply(entry, now);
          this.#trace?.mark('apply-end');
        },
        snapshotFor: (to, slot) => {
          this.#sendSnapshot(to, slot, now);
        },
      },
      inputs,
      now,
    );
    flushPeers();
    // While a copy of state.db is under way, each turn commits: its steps run between turns
    // and must not meet a transaction open on the connection they copy through.
    if (this.#stateEntriesUncommitted >= STATE_ENTRIES_PER_COMMIT || this.#copies.size > 0) this.#commitState();
    result.proposals.forEach((outcome, i) => {
      const command = proposals[i];
      if (command !== undefined) this.#service.onProposed(command, outcome);
    });
    // Replies to applied writes leave now, not after the master duties and snapshot check.
    this.#flush();
    this.#noteLeadership(now);
    this.#maybeSnapshot();
    this.#service.afterTurn(now);
    this.#flush();
    // The service may have proposed (expiries, lock-delay ends, digest marks) after the turn.
    if (this.#replica.hasReady()) this.#scheduleTurn();
  }

  /** Counts a new master known here, and each candidacy this replica starts (a new ballot as candidate). */
  #noteLeadership(now: number): void {
    const status = this.#replica.status(now);
    const seen = this.#seen;
    if (status.masterId !== null && status.masterId !== seen.masterId) this.#counts.masterChanges++;
    if (status.role === 'candidate' && (seen.role !== 'candidate' || status.ballot.round !== seen.round)) this.#counts.candidacies++;
    this.#seen = { masterId: status.masterId, role: status.role, round: status.ballot.round };
  }

  /** Sends what the service produced, to connections that are still open. */
  #flush(): void {
    const outbox = this.#service.takeOutbox();
    if (outbox.length > 0) this.#trace?.mark('replies-out', String(outbox.length));
    for (const { to, frame } of outbox) this.#connections.get(to)?.send(frame);
    if (this.#service.hasProposals) this.#scheduleTurn();
    else this.#armHoldTimer();
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

  /** Commits the open state.db transaction, if any (STATE_ENTRIES_PER_COMMIT). */
  #commitState(): void {
    if (this.#stateDb.inTransaction) this.#stateDb.exec('COMMIT');
    this.#stateEntriesUncommitted = 0;
  }

  /**
   * Every snapshotEverySlots applied slots, make state.db durable (a WAL checkpoint syncs the
   * database file) and tell the core it may compact its log below that slot.
   */
  #maybeSnapshot(): void {
    const applied = this.#machine.appliedIndex;
    if (applied - this.#lastSnapshotSlot < this.#timing.snapshotEverySlots) return;
    this.#commitState();
    this.#stateDb.pragma('wal_checkpoint(TRUNCATE)');
    this.#lastSnapshotSlot = applied;
    this.#counts.snapshotsTaken++;
    this.#replica.snapshotTaken(applied);
    this.#log.info({ slot: applied }, 'snapshot taken, log compacted behind it');
    this.#scheduleTurn();
  }

  /**
   * Copies state.db (state-copy.ts) and hands the copy to `use`, which removes it when done with
   * it (or hands it on); if the copy or `use` fails, it is removed here. Registered in #copies,
   * so that a snapshot install or stop() aborts it: the copy at its next step (closing the
   * database under it would end it too), `use` through its signal.
   */
  async #withCopy<T>(use: (signal: AbortSignal, copy: StateCopy) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const { signal } = controller;
    const work = async (): Promise<T> => {
      this.#commitState();
      const copy = await copyState(this.#stateDb, { dir: this.#options.dataDir, cell: this.#options.cell.cell, signal });
      try {
        return await use(signal, copy);
      } catch (err: unknown) {
        removeStateCopy(copy.path);
        throw err;
      }
    };
    const done = work();
    const entry = { controller, done };
    this.#copies.add(entry);
    try {
      return await done;
    } finally {
      this.#copies.delete(entry);
    }
  }

  /** Ends every copy under way and waits until each has let go of state.db and its file. */
  async #abortCopies(reason: string): Promise<void> {
    const copies = [...this.#copies];
    for (const { controller } of copies) controller.abort(new Error(reason));
    await Promise.allSettled(copies.map((c) => c.done));
  }

  /**
   * A peer is behind our compaction point: ship it the whole state database, in chunks. The
   * copy and the send run across many event-loop turns (state-copy.ts); one at a time, and a
   * request meanwhile is dropped (the peer asks again).
   */
  #sendSnapshot(to: number, slot: number, now: number): void {
    const lastSent = this.#snapshotsSent.get(to);
    if (lastSent !== undefined && now - lastSent < SNAPSHOT_RESEND_MS) return;
    if (this.#snapshotSendingTo !== null) {
      this.#log.debug({ peer: to, sendingTo: this.#snapshotSendingTo }, 'snapshot request waits: another is being sent');
      return;
    }
    this.#snapshotsSent.set(to, now);
    this.#snapshotSendingTo = to;
    this.#counts.snapshotsSent++;
    void this.#streamSnapshot(to, slot)
      .catch((err: unknown) => {
        if (this.#isStopped) return;
        this.#log.warn({ peer: to, err }, 'snapshot not sent');
      })
      .finally(() => {
        this.#snapshotSendingTo = null;
      });
  }

  async #streamSnapshot(to: number, asked: number): Promise<void> {
    const startedAt = this.#clock.now();
    await this.#withCopy(async (signal, copy) => {
      const copiedAt = this.#clock.now();
      const sha256 = await sha256OfFile(copy.path, signal);
      const admitted = this.#replica.admitted();
      const total = Math.max(1, Math.ceil(copy.sizeBytes / SNAPSHOT_CHUNK_BYTES));
      this.#log.info({ peer: to, slot: copy.slot, asked, sizeBytes: copy.sizeBytes, chunks: total, admissions: admitted.length, copyMs: Math.round(copiedAt - startedAt) }, 'sending snapshot');
      await sendInChunks({
        path: copy.path,
        chunkBytes: SNAPSHOT_CHUNK_BYTES,
        windowBytes: SNAPSHOT_WINDOW_BYTES,
        signal,
        bufferedBytes: () => this.#peers.bufferedBytes(to),
        send: ({ index, total: count, bytes }) => {
          const chunk: SnapshotChunk = { kind: 'snapshot-chunk', slot: copy.slot, index, total: count, sha256, bytes, admitted };
          this.#peers.sendFrame(to, { type: 'aux', body: chunk });
        },
      });
      removeStateCopy(copy.path);
      this.#log.info({ peer: to, slot: copy.slot, sizeBytes: copy.sizeBytes, tookMs: Math.round(this.#clock.now() - startedAt) }, 'snapshot sent');
    });
  }

  /** A follower asks the master it knows for its commit index (for stale reads). */
  #probeFreshness(): void {
    if (this.#isStopped) return;
    const now = this.#clock.now();
    const masterId = this.#service.freshnessProbeTarget(now);
    if (masterId === null) return;
    const probe: FreshnessProbe = { kind: 'commit-probe', sentAt: now };
    this.#peers.sendFrame(masterId, { type: 'aux', body: probe });
  }

  #onFreshnessProbe(from: number, probe: FreshnessProbe): void {
    if (probe.kind === 'commit-answer') {
      this.#service.onMasterCommit(probe.sentAt, probe.commit);
      return;
    }
    const commit = this.#service.answerFreshnessProbe(this.#clock.now());
    if (commit === null) return;
    const answer: FreshnessProbe = { kind: 'commit-answer', sentAt: probe.sentAt, commit };
    this.#peers.sendFrame(from, { type: 'aux', body: answer });
  }

  #onAux(from: number, body: unknown): void {
    const probe = validateFreshnessProbe(body);
    if (probe !== null) {
      this.#onFreshnessProbe(from, probe);
      return;
    }
    const chunk = validateSnapshotChunk(body, this.#replicaIds);
    if (chunk === null) {
      this.#log.warn({ peer: from }, 'invalid aux frame dropped');
      return;
    }
    if (chunk.slot <= this.#machine.appliedIndex) {
      if (this.#incoming.slot === chunk.slot) this.#incoming.drop(); // caught up another way meanwhile
      return;
    }
    if (this.#isInstalling) return;
    const outcome = this.#incoming.receive(from, chunk);
    if (outcome.kind === 'more') return;
    if (outcome.kind === 'dropped') {
      this.#log.warn({ peer: from, slot: outcome.slot }, outcome.reason === 'gap' ? 'snapshot chunk missing, transfer dropped' : 'snapshot checksum mismatch, dropped');
      return;
    }
    const current = outcome.snapshot;
    // The sender's seats must agree with every admission known here (each is a chosen value):
    // a disagreement is a peer that is broken or lying, and the core would stop on it.
    const known = new Map(this.#replica.admitted().map((a) => [a.slot, a]));
    const clash = current.admitted.find((a) => {
      const mine = known.get(a.slot);
      return mine !== undefined && (mine.replica !== a.replica || mine.diskId !== a.diskId);
    });
    if (clash !== undefined) {
      this.#log.warn({ peer: from, slot: current.slot, admissionSlot: clash.slot }, 'snapshot admissions disagree with the ones known here, dropped');
      closeSync(current.fd);
      rmSync(current.path, { force: true });
      return;
    }
    this.#isInstalling = true;
    void this.#installSnapshot(current)
      .catch((err: unknown) => {
        // A snapshot that cannot be made durable or is not a state of this cell: this replica
        // keeps its own state.db, and asks again.
        this.#log.warn({ peer: from, slot: current.slot, err }, 'snapshot not installed');
        rmSync(current.path, { force: true });
      })
      .finally(() => {
        this.#isInstalling = false;
      });
  }

  /**
   * Replaces state.db with a received snapshot: fsync its file (on the thread pool), check that
   * it is a state of this cell at the slot the sender named, swap it in, reopen the machine,
   * and tell the core. A crash at any point leaves either the old database or the new one, and
   * the core restarts from whichever applied index it finds. The file's bytes are the sender's
   * copy of its state.db, WAL mark included, and open as they are.
   */
  async #installSnapshot(incoming: { from: number; slot: number; admitted: readonly Admission[]; sizeBytes: number; fd: number; path: string }): Promise<void> {
    const { from, slot, admitted, sizeBytes, fd, path } = incoming;
    try {
      await promisify(fdatasync)(fd);
    } finally {
      closeSync(fd);
    }
    if (this.#isStopped || slot <= this.#machine.appliedIndex) {
      rmSync(path, { force: true }); // stopped meanwhile, or caught up another way
      return;
    }
    const copy = new Database(path, { readonly: true, fileMustExist: true });
    let copySlot: number;
    try {
      copySlot = StateMachine.appliedIndexOf(copy, { cell: this.#options.cell.cell });
    } finally {
      copy.close();
      for (const suffix of ['-wal', '-shm']) rmSync(path + suffix, { force: true });
    }
    if (copySlot !== slot) throw new Error(`the snapshot holds slot ${String(copySlot)}, not ${String(slot)} as its sender said`);
    const target = join(this.#options.dataDir, 'state.db');
    // A copy of the old state.db under way (a snapshot for another peer, a backup) would copy
    // from a closed connection: it ends at its next step (closing fails it too) and cleans up.
    for (const { controller } of this.#copies) controller.abort(new Error('snapshot installed'));
    this.#commitState();
    this.#stateDb.close();
    for (const suffix of ['-wal', '-shm']) if (existsSync(target + suffix)) rmSync(target + suffix);
    renameDurably(path, target);
    this.#stateDb = this.#openStateDb();
    this.#machine = StateMachine.open(this.#stateDb, { cell: this.#options.cell.cell });
    this.#lastSnapshotSlot = this.#machine.appliedIndex;
    const now = this.#clock.now();
    this.#replica.installSnapshot(this.#machine.appliedIndex, now, admitted);
    this.#log.info({ peer: from, slot: this.#machine.appliedIndex, sizeBytes, admissions: admitted.length }, 'snapshot installed');
    this.#scheduleTurn();
  }

  /** Runs a turn when the service's held proposals are due (service.ts, queueHoldMs). */
  #armHoldTimer(): void {
    const due = this.#service.proposalsDueMs;
    if (due === null || this.#holdTimer !== null || this.#isStopped) return;
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = null;
      this.#scheduleTurn();
    }, Math.max(0, due - this.#clock.now()));
  }

  #scheduleTurn(): void {
    if (this.#isTurnScheduled || this.#isStopped) return;
    this.#isTurnScheduled = true;
    // setImmediate, not a microtask: every socket read already queued in this event-loop turn
    // joins the same core turn, and so the same fsync.
    setImmediate(() => {
      this.#isTurnScheduled = false;
      this.#turn();
    });
  }
}
