// The cell simulation (issue 4, "What done looks like" item 9): five replicas, each the real
// Multi-Paxos core with its in-memory acceptor store, driven through the real turn function
// (runtime/turn.ts), applying to the real SQLite state machine and serving clients through the
// real pure CellService (sessions/service.ts), in virtual time with per-replica clocks, a lossy
// peer network, master partitions and crash-restarts. Simulated clients create sessions, keep
// them alive at whoever they think is master, open lock files, acquire, wait, hold and release;
// some vanish so their sessions expire; others create ephemeral files, write a shared file,
// watch a directory and close their sessions. checkers.ts is consulted after every step.
//
// What stands in for what: a replica's StateMachine object is its live state.db. Per seed,
// state.db is either kept whole across a crash (as if every applied entry were durable) or
// checkpointed every 8 or 32 applied slots (serialize()): a crash then restores the last
// checkpoint, and the core, restarted with `applied: machine.appliedIndex`, replays the log above
// it. After some checkpoints the replica tells the core `snapshotTaken` and the core compacts; a
// replica behind its peers' compaction point is shipped a peer's serialized machine and calls
// `installSnapshot`. The CellService (session table, pending requests) is memory and dies with
// the crash. Crashes also come at the turn's fault points (runtime/turn.ts).
//
// In a share of seeds the master also resigns now and then (Replica.resign, a planned hand-over
// as on SIGTERM): its service stops serving at the next turn and redirects what it held, and
// clients find the successor. Whether a seed has them, and when, comes from a stream of its own
// (plan.ts, RESIGN_STREAM), never `r`: a seed without resignations runs exactly as before them.
//
// In another share of seeds replicas lose their disks (plan.ts, DISK_STREAM): the process dies,
// paxos.db and state.db are thrown away, and it comes back on an empty disk with a new random
// disk id, a learner until the master admits it through the log. Half the losses are aimed: the
// wiped replica is one of exactly three that hold the newest slot some replicas lack, and the
// other two are cut off, so the only majority left never saw that slot unless the wiped replica
// remembers it, which it cannot.
//
// A run has two phases, as in the KV mode (../liveness.ts): the safety phase (4 or 6 s) with
// the faults above, then the liveness phase: every isolation ends, links stop losing,
// duplicating and holding back frames (peer and client alike), every replica that is down
// restarts, and no more faults come (crashes, isolations, resignations, disk losses, crashes at
// the turn's fault points all stop). From then on a master must serve within the stated bound,
// client requests, reads and KeepAlives must be answered, no session of a client that keeps
// sending KeepAlives may expire, every replica must apply every acknowledged write and vote, a
// queued Acquire's grant must reach its waiter (the lock-granted push, or the answer to the
// ListLocks recheck a waiter sends when told it may have missed events), a free lock's waiter
// must be granted once its lock-delay is due, and each of a live client's events must reach it
// or it must be told it may have missed it (../liveness.ts, notificationBounds). Waiters stop
// giving up at the heal, and in half the seeds a pair of clients meets at HEAL_LOCK so that one
// waits on the other across the heal.
//
// In a share of seeds (a stream of its own, DOWN_PAST_HEAL_STREAM) one or two replicas stay down
// from the heal to the end of the run (issue 4: "two replicas down: the cell still serves"),
// half the time with the master the heal finds among them: every liveness check above must hold
// with the majority that is left, the master bound allowing one election more (../liveness.ts).
// A client's frame to a replica kept down is refused at once (#refuse), and the client tries
// another replica.

import {
  decodeFrame,
  ErrorCode,
  EventMask,
  type Acquire,
  type ClientFrame,
  type CommandResult,
  type Epoch,
  type LockInfo,
  type LockMode,
  type MachineCommand,
  type MachineEvent,
  type QueryResult,
  type ServerFrame,
} from '@paxlock/shared';
import type { Statement } from 'better-sqlite3';
import { StateMachine, type Entry } from '../../src/machine/index.ts';
import { compareBallots } from '../../src/paxos/ballot.ts';
import type {
  Admission,
  ChosenEntry,
  Command,
  Envelope,
  Message,
} from '../../src/paxos/messages.ts';
import { silentLogger, type Config, type ReplicaId } from '../../src/paxos/ports.ts';
import { Replica } from '../../src/paxos/replica.ts';
import { runTurn, type TurnInput, type TurnWiring } from '../../src/runtime/turn.ts';
import { CellService } from '../../src/sessions/service.ts';
import { MemoryStore } from '../../src/storage/memory-store.ts';
import { bugsFor, type BugName } from '../bugs.ts';
import { rateSpread, SimClock } from '../clock.ts';
import { EventQueue } from '../event-queue.ts';
import { isFaultPointInteresting } from '../paxos-checks.ts';
import {
  diskEventRandom,
  diskLossMeanFor,
  drawDiskId,
  resignEventRandom,
  resignMeanFor,
} from '../plan.ts';
import {
  AckedSlots,
  catchUpFailures,
  isCaughtUp,
  livenessBounds,
  LivenessPhase,
  notificationBounds,
  type NotificationBounds,
  type ReplicaProgress,
} from '../liveness.ts';
import { SimRandom } from '../random.ts';
import { CellCheckers, type Belief, type CellViolation, type EventSync } from './checkers.ts';

const REPLICAS: readonly ReplicaId[] = [1, 2, 3, 4, 5];
const CELL = 'sim';
const DIR = `/ls/${CELL}/dir`;
const WATCH_MASK = EventMask.childAdded | EventMask.childRemoved | EventMask.childModified;
/**
 * Digests are compared at every slot divisible by this (a digest costs ~40 µs) and at every
 * restored or installed state; a wrong state shows at the next sampled slot either way.
 */
const DIGEST_EVERY = 4;
const LOCK_WATCH_MASK = EventMask.lockAcquired | EventMask.conflictingLockRequest;
/** How often a follower probes the master's commit index, by its own clock (runtime/node.ts). */
const FRESHNESS_PROBE_MS = 100;
/** How much later than it was the lateProbeSentAt bug reports a probe's sentAt. */
const LATE_PROBE_MS = 150;
/** Readers' connection ids start here (clients' are their index). */
const READER_BASE = 1000;
const READ_PATH = `${DIR}/config`;
const READ_QUERY = { type: 'ReadPath', path: READ_PATH } as const;
const STALENESS_BOUNDS = [50, 100, 200, 500, 1000, 2000] as const;
/** Mean gaps between resignations in the seeds that have them (plan.ts, resignMeanFor). */
const CELL_RESIGN_MEANS_MS = [100, 300, 1000] as const;
/** Mean gaps between disk losses in the seeds that have them (plan.ts, diskLossMeanFor). */
const CELL_DISK_LOSS_MEANS_MS = [500, 1500, 3000] as const;
/** The lock the heal pair meets at; no other client uses it. */
const HEAL_LOCK = `/ls/${CELL}/lock-heal`;
/** The heal pair's random stream (plan.ts's streams are the KV mode's; this one is the cell's). */
const HEAL_PAIR_STREAM = 0x6865616c;
/** The stream that decides which seeds keep replicas down past the heal, and which ones. */
const DOWN_PAST_HEAL_STREAM = 0x646f776e;
/** The share of seeds that keep one or two replicas down past the heal. */
const DOWN_PAST_HEAL_SHARE = 0.3;
/** The lock-delays a client's handles ask for (in 40 % of clients; the rest ask for none). */
const LOCK_DELAYS_MS = [100, 300] as const;
/** A client resends a request with no answer after this (its time-out, for the liveness bound). */
const CLIENT_RESEND_MS = 300;
/** Per copy in the safety phase: peer frames duplicated, held back (a delay spike), client frames lost. */
const PEER_DUPLICATE_RATE = 0.02;
const PEER_SPIKE_RATE = 0.03;
const CLIENT_LOSS_RATE = 0.01;

/**
 * Planted bugs of the cell mode itself (the checkers must catch each): a client that takes a
 * `queued` Acquire for a grant; a service that never reports an event gap on KeepAlive; a
 * client whose "ephemeral" files are created permanent; a freshness probe whose answer reports
 * `sentAt` LATE_PROBE_MS later than the probe was sent (stale reads understate their staleness).
 * Two break liveness only: every KeepAlive a client sends after the heal is lost
 * (loseKeepAlivesAfterHeal: sessions of clients that keep sending must expire), and every
 * snapshot shipped is lost (loseSnapshots: a replica behind its peers' compaction point never
 * catches up), and every lock-granted push and every answer to a waiter's ListLocks recheck is
 * lost after the heal (loseGrantsAfterHeal: a queued Acquire's grant never reaches its waiter).
 */
export const CELL_BUGS = [
  'queuedIsHeld',
  'hideEventGaps',
  'forgetEphemeral',
  'lateProbeSentAt',
  'loseKeepAlivesAfterHeal',
  'loseSnapshots',
  'loseGrantsAfterHeal',
] as const;
export type CellBug = (typeof CELL_BUGS)[number];

function addressOf(id: ReplicaId): string {
  return `sim://replica-${id}`;
}

export interface CellSeedOptions {
  readonly seed: number;
  /** A planted bug: the cell mode's own (CELL_BUGS) or the core's (Config.bugs). */
  readonly bug?: CellBug | BugName;
  /** False: stale reads are not judged (stale-read off), to show linearizable-read alone bites. */
  readonly checkStaleReads?: boolean;
  /**
   * True: a wait held by a lock-delay frozen behind the master's clock (#isFrozenDelay) is held
   * against the liveness phase like any other, which shows the stamping bug docs/simulator.md
   * describes. By default such waits are excused and counted (frozenLockDelays).
   */
  readonly strictLockDelays?: boolean;
}

export interface CellSeedResult {
  readonly seed: number;
  readonly violations: readonly CellViolation[];
  readonly stats: {
    readonly simulatedMs: number;
    readonly slotsApplied: number;
    readonly sessionsCreated: number;
    readonly sessionsExpired: number;
    readonly grants: number;
    readonly expiriesChecked: number;
    readonly digestsCompared: number;
    readonly restoresChecked: number;
    readonly chosenSlots: number;
    readonly acceptsJudged: number;
    readonly crashes: number;
    readonly turnCrashes: number;
    readonly compactions: number;
    readonly snapshotsInstalled: number;
    readonly partitions: number;
    readonly unleasedAcks: number;
    readonly ephemeralsCreated: number;
    readonly ephemeralChecks: number;
    readonly sessionsClosed: number;
    readonly lockDelayChecks: number;
    readonly eventsChecked: number;
    readonly noGapAcksChecked: number;
    readonly resyncs: number;
    readonly linearizableReadsChecked: number;
    readonly staleReadsChecked: number;
    readonly staleReadsByFollowers: number;
    readonly staleReadsRedirected: number;
    readonly maxStatedStalenessMs: number;
    readonly staleReadsPastQuorum: number;
    readonly staleReadsOverDriftBound: number;
    readonly probeAnswers: number;
    /** Graceful resignations of a master (Replica.resign). */
    readonly resignations: number;
    /** Disk losses: a replica back on an empty disk with a new disk id. */
    readonly diskLosses: number;
    /** Of those, the aimed ones (a holder of a fresh slot wiped, the other holders cut off). */
    readonly diskLossesAimed: number;
    /** Replacement disks admitted through the log ('admit' values chosen). */
    readonly admissions: number;
    /** Replicas still learners when the run ended. */
    readonly learnersAtEnd: number;
    /** 1 if the run reached the liveness phase (no safety violation before the heal). */
    readonly livenessPhases: number;
    /** 1 if everything the liveness phase asks for happened before the run's last moment. */
    readonly livenessCompleted: number;
    /** Global ms from the heal to the first master serving (0 if none). */
    readonly maxMasterAfterHealMs: number;
    /** The same, summed over seeds (divided by livenessPhases: the mean). */
    readonly masterAfterHealMsTotal: number;
    /** Global ms from the heal to the liveness phase's completion (0 if it did not complete). */
    readonly maxCompletedAfterHealMs: number;
    /** ExpireSession proposals judged against the sessions' live clients in the liveness phase. */
    readonly expiriesJudgedLive: number;
    /** Clients waiting on a queued Acquire at the heal. */
    readonly waitersAtHeal: number;
    /** Grants told to their waiters in the liveness phase (by the push, or by a recheck). */
    readonly grantsJudgedLive: number;
    /** Of those, the ones told by a ListLocks recheck after a gap (the push missed). */
    readonly grantsByRecheck: number;
    /** Global ms from a grant's first apply (or the heal, if later) to its waiter knowing it. */
    readonly maxGrantToldMs: number;
    /** Events judged in the liveness phase: delivered, or their loss told to the client. */
    readonly eventsJudgedLive: number;
    /** Global ms from an event's first apply (or the heal, if later) to its delivery or gap. */
    readonly maxEventToldMs: number;
    /** Waits on a lock with no holder (a lock-delay running) the free-lock bound judged. */
    readonly freeLocksJudged: number;
    /** Locks whose lock-delay stood still behind a master clock that was behind machine time. */
    readonly frozenLockDelays: number;
    /** The furthest such a delay's end was ahead of the serving master's clock (ms). */
    readonly maxFrozenDelayAheadMs: number;
    /** 1 if the seed kept replicas down from the heal to its end. */
    readonly downPastHeal: number;
    /** How many (one or two). */
    readonly replicasDownPastHeal: number;
    /** 1 if the master the heal found was among them (a fail-over in the liveness phase). */
    readonly mastersDownPastHeal: number;
    /** 1 if they were kept up and cut off from every other replica rather than crashed. */
    readonly cutOffPastHeal: number;
    /** 1 if such a seed completed the liveness phase. */
    readonly livenessCompletedDown: number;
    /** In such seeds, global ms from the heal to the first master serving. */
    readonly maxMasterAfterHealDownMs: number;
    /** Client and reader frames refused by a replica kept down. */
    readonly refusedFrames: number;
  };
}

type SimEvent =
  | { readonly type: 'turn'; readonly id: ReplicaId }
  | { readonly type: 'tick'; readonly id: ReplicaId; readonly incarnation: number }
  | {
      readonly type: 'peer';
      readonly from: ReplicaId;
      readonly to: ReplicaId;
      /** A deep copy, unknown until the turn validates it. */
      readonly message: unknown;
      /** The sender's typed message, for the checkers only. */
      readonly sent: Message;
    }
  | {
      readonly type: 'to-replica';
      readonly to: ReplicaId;
      readonly client: number;
      readonly frame: ClientFrame;
    }
  | {
      readonly type: 'to-client';
      readonly client: number;
      readonly frame: ServerFrame;
      /** The sender's applied slot when it sent the frame (what a KeepAlive ack vouches for). */
      readonly appliedAt: number;
    }
  | { readonly type: 'client-wake'; readonly client: number }
  | { readonly type: 'crash'; readonly id: ReplicaId }
  | { readonly type: 'restart'; readonly id: ReplicaId; readonly incarnation: number }
  | {
      readonly type: 'snapshot';
      readonly from: ReplicaId;
      readonly to: ReplicaId;
      readonly bytes: Uint8Array;
      readonly slot: number;
      /** The sender's admissions, shipped with the snapshot (installSnapshot takes them). */
      readonly admitted: readonly Admission[];
    }
  | {
      readonly type: 'snapshot-pull';
      readonly server: ReplicaId;
      readonly asker: ReplicaId;
      readonly slotAtLeast: number;
    }
  | { readonly type: 'partition'; readonly id: ReplicaId; readonly untilMs: number }
  | { readonly type: 'probe'; readonly id: ReplicaId; readonly incarnation: number }
  | {
      /** A freshness probe or its answer on the peer link (runtime/node.ts's aux frames). */
      readonly type: 'probe-frame';
      readonly from: ReplicaId;
      readonly to: ReplicaId;
      readonly kind: 'commit-probe' | 'commit-answer';
      readonly sentAt: number;
      readonly commit: number;
    }
  | { readonly type: 'reader-wake'; readonly reader: number }
  | {
      /** A client's connection to a replica kept down past the heal, refused (#refuse). */
      readonly type: 'refused';
      readonly client: number;
      readonly frameId: number;
      readonly from: ReplicaId;
    }
  | { readonly type: 'resign' }
  | { readonly type: 'disk-loss' }
  | { readonly type: 'heal' }
  | { readonly type: 'liveness-deadline' }
  | { readonly type: 'end' };

/** A client that only reads `READ_PATH`: linearizable or stale, at random replicas. */
interface Reader {
  readonly id: number;
  readonly random: SimRandom;
  target: ReplicaId;
  read: {
    readonly frameId: number;
    readonly maxStalenessMs: number | undefined;
    readonly ackedSlotAtSend: number;
    readonly giveUpAtMs: number;
  } | null;
  /** When a read of this reader was last answered with a result. */
  answeredAtMs: number;
}

interface Node {
  readonly id: ReplicaId;
  readonly clock: SimClock;
  /** paxos.db: replaced by an empty store when the disk is lost. */
  store: MemoryStore;
  /** The disk's id (kept in paxos.db): 0 for the founding disk, random for a replacement. */
  diskId: number;
  /** The live state.db. */
  machine: StateMachine;
  /** state.db's durable checkpoint, when the seed does not keep it whole across crashes. */
  checkpoint: { readonly bytes: Uint8Array; readonly slot: number } | null;
  lastCheckpointSlot: number;
  checkpointsSinceCompaction: number;
  pendingSnapshotTaken: number | null;
  readonly random: SimRandom;
  replica: Replica | null;
  service: CellService | null;
  wiring: TurnWiring | null;
  incarnation: number;
  inbox: TurnInput[];
  isTurnScheduled: boolean;
  /** Ephemeral files without a live handle of a live session, prepared on the current machine. */
  orphans: { readonly machine: StateMachine; readonly statement: Statement } | null;
  /**
   * Since when (global ms) this replica has served as master under a valid lease without a
   * break (its service serving, canServeReads true at every event since); null if it does not.
   */
  servingSince: number | null;
}

type Phase =
  | 'none'
  | 'watching'
  | 'opening'
  | 'acquiring'
  | 'waiting'
  | 'holding'
  | 'releasing'
  | 'writing'
  | 'closing'
  | 'ending';

/** A command on a client's handle, before its session, seq and handle are filled in. */
type HandleCommand =
  | { readonly type: 'Release' | 'Close' }
  | { readonly type: 'SetContents'; readonly contents: Uint8Array }
  | { readonly type: 'Acquire'; readonly mode: LockMode; readonly wait: boolean };

/** What a client does between sessions' creation and end: lock, ephemeral file, or write. */
type Op = 'lock' | 'ephemeral' | 'write';

/** A client's view of its session's event stream (see checkers.ts, event-order/event-gap). */
interface EventView {
  epoch: Epoch | null;
  /** The last eventSeq received in this epoch (for the order check). */
  last: number;
  /** The eventSeq the client reports seen: the last received, or the ack it re-synced at. */
  seen: number;
  /** Null: the client was told of a gap and re-syncs at its next KeepAlive ack. */
  sync: EventSync | null;
}

interface Request {
  readonly command: MachineCommand;
  /** When the client first sent it (retries keep the request and its time). */
  readonly issuedAtMs: number;
  frameId: number;
  resendAtMs: number;
  /** A redirect or error named where to retry; a plain time-out tries another replica. */
  hasNewTarget: boolean;
}

interface Client {
  readonly index: number;
  readonly random: SimRandom;
  /** One of the heal pair (see the constructor): its first operation is on HEAL_LOCK. */
  readonly script: 'holder' | 'waiter' | null;
  isScriptDone: boolean;
  readonly lockDelayMs: number;
  readonly vanishAtMs: number | null;
  nonceCount: number;
  target: ReplicaId;
  session: number | null;
  seq: number;
  request: Request | null;
  keepAliveId: number | null;
  keepAliveSentAtMs: number;
  /** When the session was created. */
  sessionCreatedAtMs: number;
  /** When a KeepAlive of the session was last acknowledged (-Infinity: none yet). */
  keepAliveAckAtMs: number;
  nextKeepAliveAtMs: number;
  phase: Phase;
  op: Op;
  handle: number;
  path: string;
  mode: LockMode;
  phaseUntilMs: number;
  /** Watches the directory (and its lock files' events) in each session. */
  readonly watches: boolean;
  watchHandle: number | null;
  ephemeralCount: number;
  events: EventView;
  /** When the current wait (phase 'waiting') began. */
  waitSinceMs: number;
  /**
   * Told of a gap while waiting, or while its Acquire was in flight: ask the master whether the
   * lock is now held (ListLocks).
   */
  needsRecheck: boolean;
  /** The grant's push came before the Acquire's `queued` answer (LockState's early grant). */
  hasEarlyGrant: boolean;
  /** The recheck in flight, resent after CLIENT_RESEND_MS without an answer. */
  recheck: { readonly frameId: number; readonly resendAtMs: number } | null;
  /** The session's events first applied and not yet delivered or told lost, in slot order. */
  pendingEvents: { readonly slot: number; readonly atMs: number }[];
}

/**
 * A seed's plan to keep replicas down past the heal (DOWN_PAST_HEAL_STREAM): how many, whether
 * the master the heal finds goes first, how (crashed and never restarted, or up and cut off from
 * every other replica, its clients still reaching it), and the stream that picks the rest.
 */
interface DownPlan {
  readonly count: 1 | 2;
  readonly aimAtMaster: boolean;
  readonly how: 'crashed' | 'cut-off';
  readonly random: SimRandom;
}

function freshEventView(): EventView {
  return { epoch: null, last: 0, seen: 0, sync: null };
}

/** The orphan-ephemeral query, over state.db's tables (read-only). */
const ORPHAN_EPHEMERALS = `SELECT n.path FROM nodes n
  WHERE n.is_ephemeral = 1 AND n.is_directory = 0 AND NOT EXISTS (
    SELECT 1 FROM handles h JOIN sessions s ON s.id = h.session
    WHERE h.path = n.path AND h.instance = n.instance)`;

export function runCellSeed(options: CellSeedOptions): CellSeedResult {
  return new CellCluster(options).run();
}

function isCellBug(bug: CellSeedOptions['bug']): bug is CellBug {
  return CELL_BUGS.some((b) => b === bug);
}

class CellCluster {
  readonly #o: CellSeedOptions;
  readonly #r: SimRandom;
  readonly #queue = new EventQueue<SimEvent>();
  readonly #nodes = new Map<ReplicaId, Node>();
  readonly #clients: Client[] = [];
  readonly #checkers: CellCheckers;
  readonly #config: Omit<Config, 'id'>;
  readonly #cellBug: CellBug | null;
  readonly #sessionLeaseMs: number;
  /** Peer frames lost, per copy; 0 in the liveness phase. */
  #dropRate: number;
  #duplicateRate = PEER_DUPLICATE_RATE;
  #spikeRate = PEER_SPIKE_RATE;
  #clientLossRate = CLIENT_LOSS_RATE;
  /** 1: state.db kept whole across crashes; otherwise checkpointed every this many slots. */
  readonly #checkpointEvery: number;
  /** Tell the core snapshotTaken after this many checkpoints (Infinity: never compact). */
  readonly #compactEveryCheckpoints: number;
  readonly #turnCrashRate: number;
  /** Frame id -> session, for the KeepAlive acks the checkers attribute. */
  readonly #keepAliveSession = new Map<number, number>();
  readonly #expired = new Set<number>();
  readonly #closed = new Set<number>();
  /** Paths clients asked to be ephemeral (a client's intent, whatever the command says). */
  readonly #wantEphemeral = new Set<string>();
  /** Session -> "path#instance" of the ephemeral files it created. */
  readonly #ephemeralsOf = new Map<number, Set<string>>();
  /** Handle -> the lock-delay its Open asked for. */
  readonly #handleDelay = new Map<number, number>();
  /** "replica>client" -> the latest delivery time on that connection (frames arrive in order). */
  readonly #connectionAt = new Map<string, number>();
  readonly #safetyMs: number;
  /** The liveness phase: it starts at the heal (#safetyMs). */
  readonly #liveness: LivenessPhase;
  #phase: 'safety' | 'liveness' = 'safety';
  /** Everything the liveness phase asks for has happened: the run ends. */
  #isDone = false;
  #isLivenessComplete = false;
  /**
   * A master that has served under its lease for this long in the healed cell must not expire a
   * session whose client keeps sending KeepAlives: a session lease stretched by the drift bound
   * (the master measures it on its own clock), plus 100 ms for the turn that proposes it.
   */
  readonly #sessionGraceMs: number;
  /** Session -> the index of the client that created it. */
  readonly #sessionOwner = new Map<number, number>();
  /** Session -> when its client stopped holding it, and whether it was told the session expired. */
  readonly #sessionLost = new Map<number, { readonly atMs: number; readonly isExpiry: boolean }>();
  #expiriesJudgedLive = 0;
  /** What a live client must be told after the heal, and by when (../liveness.ts). */
  readonly #notify: NotificationBounds;
  /** The highest slot applied anywhere: a slot above it is applied for the first time. */
  #firstAppliedThrough = 0;
  /** Path -> since when its lock has had waiters, no holder and no lock-delay still running. */
  readonly #freeLockSince = new Map<string, number>();
  /** "session:handle" -> when a lock-granted event for that handle was first applied anywhere. */
  readonly #grantAppliedAt = new Map<string, number>();
  #waitersAtHeal = 0;
  #grantsJudgedLive = 0;
  #grantsByRecheck = 0;
  #maxGrantToldMs = 0;
  #eventsJudgedLive = 0;
  #maxEventToldMs = 0;
  #freeLocksJudged = 0;
  /** Paths whose lock-delay ends further ahead of the serving master's clock than any delay. */
  readonly #frozenDelayPaths = new Set<string>();
  #maxFrozenDelayAheadMs = 0;
  /** Replicas cut off from the others (one, or after an aimed disk loss two), until untilMs. */
  #isolated: { ids: readonly ReplicaId[]; untilMs: number } | null = null;
  #now = 0;
  #frameId = 0;
  #slotsApplied = 0;
  #sessionsCreated = 0;
  #crashes = 0;
  #turnCrashes = 0;
  #compactions = 0;
  #snapshotsInstalled = 0;
  #partitions = 0;
  #resyncs = 0;
  readonly #readers: Reader[] = [];
  /** The highest slot of a write result any client has received. */
  #ackedSlot = 0;
  /** The same, over time, for the liveness phase's catch-up check. */
  readonly #acked = new AckedSlots();
  #staleReadsByFollowers = 0;
  #staleReadsRedirected = 0;
  #staleReadsOverDriftBound = 0;
  #probeAnswers = 0;
  /** Resignations' times and targets: never `#r`, whose draws would all shift. */
  readonly #resignRandom: SimRandom;
  #resignations = 0;
  /** Disk losses' times, victims and disk ids: never `#r` (plan.ts, DISK_STREAM). */
  readonly #diskRandom: SimRandom;
  #diskLosses = 0;
  #diskLossesAimed = 0;
  /** The seed's plan to keep replicas down past the heal; null in the seeds without it. */
  readonly #downPlan: DownPlan | null;
  /** The replicas kept down (crashed, or cut off: #downPlan.how) from the heal to the end. */
  readonly #keptDown = new Set<ReplicaId>();
  #isMasterKeptDown = false;
  #refusedFrames = 0;

  constructor(options: CellSeedOptions) {
    this.#o = options;
    this.#cellBug = isCellBug(options.bug) ? options.bug : null;
    this.#r = new SimRandom(options.seed, 0x63656c6c);
    const r = this.#r;
    const leaseMs = r.pick([500, 1000]);
    const maxDriftRate = r.pick([0.001, 0.01, 0.05]);
    const coreBugs =
      options.bug === undefined || isCellBug(options.bug) ? undefined : bugsFor(options.bug);
    this.#config = {
      replicas: REPLICAS,
      leaseMs,
      maxDriftRate,
      heartbeatMs: leaseMs / r.pick([4, 5]),
      electionTimeoutMs: leaseMs * r.pick([1, 1.5]),
      electionJitterMs: leaseMs / 2,
      windowSlots: r.pick([1, 4, 16]),
      maxBatchCommands: r.pick([1, 8, 64]),
      catchUpBatchSlots: r.pick([2, 16, 64]),
      ...(coreBugs === undefined ? {} : { bugs: coreBugs }),
    };
    const spread = rateSpread(maxDriftRate);
    this.#checkers = new CellCheckers({
      clockSpread: spread,
      replicaCount: REPLICAS.length,
      ...(options.checkStaleReads === undefined
        ? {}
        : { checkStaleReads: options.checkStaleReads }),
    });
    // Session leases at the low end of the allowed range, so expiries happen within a run.
    this.#sessionLeaseMs = r.pick([1000, 1500, 2000]);
    this.#dropRate = r.pick([0, 0.01, 0.05]);
    this.#safetyMs = r.pick([4000, 6000]);
    // In a share of seeds one or two replicas stay down from the heal to the end (#onHeal). The
    // draws come from a stream of their own, so a seed without it runs exactly as before; the
    // seeds with it give the master bound one election more (../liveness.ts, livenessBounds).
    const downRandom = new SimRandom(options.seed, DOWN_PAST_HEAL_STREAM);
    this.#downPlan = downRandom.chance(DOWN_PAST_HEAL_SHARE)
      ? {
          count: downRandom.chance(0.5) ? 2 : 1,
          aimAtMaster: downRandom.chance(0.5),
          how: downRandom.chance(0.5) ? 'cut-off' : 'crashed',
          random: downRandom,
        }
      : null;
    this.#liveness = new LivenessPhase({
      healAt: this.#safetyMs,
      bounds: livenessBounds({
        config: this.#config,
        clientTimeoutMs: CLIENT_RESEND_MS,
        ...(this.#downPlan === null ? {} : { extraElections: 1 }),
      }),
    });
    this.#sessionGraceMs = this.#sessionLeaseMs * (1 + maxDriftRate) + 100;
    this.#notify = notificationBounds({
      operationWithinMs: this.#liveness.bounds.operationWithinMs,
      sessionLeaseMs: this.#sessionLeaseMs,
    });
    this.#checkpointEvery = r.pick([1, 8, 32]);
    this.#compactEveryCheckpoints = r.pick([Infinity, 1, 4]);
    this.#turnCrashRate = r.pick([0, 0.002, 0.01, 0.03]);
    for (const id of REPLICAS) {
      const node: Node = {
        id,
        clock: new SimClock({
          globalNow: 0,
          localStart: r.range(0, 1e6),
          rate: 1 + r.range(-spread, spread),
        }),
        store: new MemoryStore(),
        diskId: 0,
        machine: StateMachine.createInMemory({ cell: CELL }),
        checkpoint: null,
        lastCheckpointSlot: 0,
        checkpointsSinceCompaction: 0,
        pendingSnapshotTaken: null,
        random: r.fork(id),
        replica: null,
        service: null,
        wiring: null,
        incarnation: 0,
        inbox: [],
        isTurnScheduled: false,
        orphans: null,
        servingSince: null,
      };
      this.#nodes.set(id, node);
      this.#checkers.onDigest({ replica: id, slot: 0, atMs: 0, digest: node.machine.digest() });
      this.#start(node);
    }
    const clientCount = r.pick([3, 4, 6]);
    for (let index = 0; index < clientCount; index++) {
      this.#clients.push(this.#newClient(index, r.fork(100 + index), null));
      this.#queue.push(r.range(0, 50), { type: 'client-wake', client: index });
    }
    // In half the seeds, two more clients meet at HEAL_LOCK shortly before the heal: one takes
    // it and holds it until after the heal, the other queues behind it, so a grant is owed
    // across the heal (and, when the master changes there, across a fail-over). Their draws
    // come from a stream of their own: the other clients' and the world's are untouched.
    const pairRandom = new SimRandom(options.seed, HEAL_PAIR_STREAM);
    if (pairRandom.chance(0.5)) {
      const startAt = this.#safetyMs - pairRandom.range(1200, 2000);
      for (const [k, script] of (['holder', 'waiter'] as const).entries()) {
        const index = clientCount + k;
        this.#clients.push(this.#newClient(index, pairRandom.fork(k), script));
        this.#queue.push(startAt + k * 400, { type: 'client-wake', client: index });
      }
    }
    for (let k = 0; k < 2; k++) {
      const random = r.fork(200 + k);
      this.#readers.push({
        id: READER_BASE + k,
        random,
        target: random.pick(REPLICAS),
        read: null,
        answeredAtMs: 0,
      });
      this.#queue.push(r.range(0, 50), { type: 'reader-wake', reader: READER_BASE + k });
    }
    // Faults, in the safety phase only: crashes (often of the master) and master isolations.
    for (let at = r.range(300, 1200); at < this.#safetyMs; at += r.range(500, 1500)) {
      if (r.chance(0.5)) this.#queue.push(at, { type: 'crash', id: r.pick(REPLICAS) });
      else
        this.#queue.push(at, {
          type: 'partition',
          id: r.pick(REPLICAS),
          untilMs: Math.min(this.#safetyMs, at + r.range(200, 2.5 * leaseMs)),
        });
    }
    // Resignations, in the safety phase of the seeds that have them (exponential gaps).
    this.#resignRandom = resignEventRandom(options.seed);
    const resignMeanMs = resignMeanFor(options.seed, CELL_RESIGN_MEANS_MS);
    if (resignMeanMs !== Infinity) {
      const gap = (): number => -Math.log(1 - this.#resignRandom.next()) * resignMeanMs;
      for (let at = gap(); at < this.#safetyMs; at += gap())
        this.#queue.push(at, { type: 'resign' });
    }
    // Disk losses, in the safety phase of the seeds that have them (exponential gaps).
    this.#diskRandom = diskEventRandom(options.seed);
    const diskLossMeanMs = diskLossMeanFor(options.seed, CELL_DISK_LOSS_MEANS_MS);
    if (diskLossMeanMs !== Infinity) {
      const gap = (): number => -Math.log(1 - this.#diskRandom.next()) * diskLossMeanMs;
      for (let at = gap(); at < this.#safetyMs; at += gap())
        this.#queue.push(at, { type: 'disk-loss' });
    }
    // The liveness phase: the heal, the master's deadline, and the last moment of the run (a
    // seed whose liveness checks are all met ends earlier). The end leaves room for every
    // operation's bound after the master's, for a session lease past the grace, and for a grant
    // owed from the master bound to reach its waiter.
    const { bounds } = this.#liveness;
    this.#queue.push(this.#safetyMs, { type: 'heal' });
    this.#queue.push(this.#liveness.masterDeadlineAt, { type: 'liveness-deadline' });
    const endMs =
      this.#liveness.masterDeadlineAt +
      Math.max(
        bounds.operationWithinMs,
        this.#sessionGraceMs + this.#sessionLeaseMs,
        this.#notify.grantWithinMs,
      ) +
      1000;
    this.#queue.push(endMs, { type: 'end' });
  }

  run(): CellSeedResult {
    while (!this.#isDone) {
      const next = this.#queue.pop();
      if (next === undefined) break;
      this.#now = next.at;
      this.#checkers.setNow(next.at);
      this.#step(next.event);
      this.#checkBeliefs();
      this.#checkLeases();
      if (this.#checkers.violations.length > 0) break;
      if (this.#phase === 'liveness') this.#checkLivenessDone();
    }
    const masterAfterHealMs =
      this.#liveness.masterAt === null
        ? 0
        : Math.round(this.#liveness.masterAt - this.#liveness.healAt);
    // A replacement disk cut off past the heal cannot be admitted: not counted.
    const learnersAtEnd = [...this.#nodes.values()].filter(
      (n) => n.replica !== null && !this.#isVoter(n) && !this.#keptDown.has(n.id),
    ).length;
    // SQLite's native memory is freed only by close(): a long run would otherwise hold gigabytes.
    for (const node of this.#nodes.values()) node.machine.database.close();
    const c = this.#checkers;
    return {
      seed: this.#o.seed,
      violations: c.violations,
      stats: {
        simulatedMs: this.#now,
        slotsApplied: this.#slotsApplied,
        sessionsCreated: this.#sessionsCreated,
        sessionsExpired: this.#expired.size,
        grants: c.grantsChecked,
        expiriesChecked: c.expiriesChecked,
        digestsCompared: c.digestsCompared,
        restoresChecked: c.restoresChecked,
        chosenSlots: c.paxos.chosenSlots,
        acceptsJudged: c.paxos.acceptsJudged,
        crashes: this.#crashes,
        turnCrashes: this.#turnCrashes,
        compactions: this.#compactions,
        snapshotsInstalled: this.#snapshotsInstalled,
        partitions: this.#partitions,
        unleasedAcks: c.unleasedAcks,
        ephemeralsCreated: [...this.#ephemeralsOf.values()].reduce((n, set) => n + set.size, 0),
        ephemeralChecks: c.ephemeralChecks,
        sessionsClosed: this.#closed.size,
        lockDelayChecks: c.lockDelayChecks,
        eventsChecked: c.eventsChecked,
        noGapAcksChecked: c.noGapAcksChecked,
        resyncs: this.#resyncs,
        linearizableReadsChecked: c.linearizableReadsChecked,
        staleReadsChecked: c.staleReadsChecked,
        staleReadsByFollowers: this.#staleReadsByFollowers,
        staleReadsRedirected: this.#staleReadsRedirected,
        maxStatedStalenessMs: c.maxStatedStalenessMs,
        staleReadsPastQuorum: c.staleReadsPastQuorum,
        staleReadsOverDriftBound: this.#staleReadsOverDriftBound,
        probeAnswers: this.#probeAnswers,
        resignations: this.#resignations,
        diskLosses: this.#diskLosses,
        diskLossesAimed: this.#diskLossesAimed,
        admissions: c.paxos.admissionsChosen,
        learnersAtEnd,
        livenessPhases: this.#phase === 'liveness' ? 1 : 0,
        livenessCompleted: this.#isLivenessComplete ? 1 : 0,
        maxMasterAfterHealMs: masterAfterHealMs,
        masterAfterHealMsTotal: masterAfterHealMs,
        maxCompletedAfterHealMs: this.#isLivenessComplete
          ? Math.round(this.#now - this.#liveness.healAt)
          : 0,
        expiriesJudgedLive: this.#expiriesJudgedLive,
        waitersAtHeal: this.#waitersAtHeal,
        grantsJudgedLive: this.#grantsJudgedLive,
        grantsByRecheck: this.#grantsByRecheck,
        maxGrantToldMs: Math.round(this.#maxGrantToldMs),
        eventsJudgedLive: this.#eventsJudgedLive,
        maxEventToldMs: Math.round(this.#maxEventToldMs),
        freeLocksJudged: this.#freeLocksJudged,
        frozenLockDelays: this.#frozenDelayPaths.size,
        maxFrozenDelayAheadMs: Math.round(this.#maxFrozenDelayAheadMs),
        downPastHeal: this.#keptDown.size > 0 ? 1 : 0,
        replicasDownPastHeal: this.#keptDown.size,
        mastersDownPastHeal: this.#isMasterKeptDown ? 1 : 0,
        cutOffPastHeal: this.#keptDown.size > 0 && this.#downPlan?.how === 'cut-off' ? 1 : 0,
        livenessCompletedDown: this.#keptDown.size > 0 && this.#isLivenessComplete ? 1 : 0,
        maxMasterAfterHealDownMs: this.#keptDown.size > 0 ? masterAfterHealMs : 0,
        refusedFrames: this.#refusedFrames,
      },
    };
  }

  #newClient(index: number, random: SimRandom, script: Client['script']): Client {
    const lockDelayMs = random.chance(0.4) ? random.pick(LOCK_DELAYS_MS) : 0;
    const vanishAtMs = random.chance(0.3) ? random.range(500, this.#safetyMs) : null;
    const target = random.pick(REPLICAS);
    const watches = random.chance(0.6);
    return {
      index,
      random,
      script,
      isScriptDone: false,
      lockDelayMs,
      // The heal pair stays: its wait is what the liveness phase judges.
      vanishAtMs: script === null ? vanishAtMs : null,
      nonceCount: 0,
      target,
      session: null,
      seq: 0,
      request: null,
      keepAliveId: null,
      keepAliveSentAtMs: 0,
      sessionCreatedAtMs: 0,
      keepAliveAckAtMs: -Infinity,
      nextKeepAliveAtMs: 0,
      phase: 'none',
      op: 'lock',
      handle: 0,
      path: '',
      mode: 'exclusive',
      phaseUntilMs: 0,
      watches: script === null && watches,
      watchHandle: null,
      ephemeralCount: 0,
      events: freshEventView(),
      waitSinceMs: 0,
      needsRecheck: false,
      hasEarlyGrant: false,
      recheck: null,
      pendingEvents: [],
    };
  }

  #node(id: ReplicaId): Node {
    const node = this.#nodes.get(id);
    if (node === undefined) throw new RangeError(`no replica ${id}`);
    return node;
  }

  #local(node: Node): number {
    return node.clock.localAt(this.#now);
  }

  /**
   * The time a master stamps entries with now (its clock, plus what carries the machine's time
   * over a fail-over: Replica.stampNow), which is what lock-delay ends are compared with.
   */
  #stampClock(node: Node): number {
    const local = this.#local(node);
    return node.replica === null ? local : node.replica.stampNow(local);
  }

  #step(event: SimEvent): void {
    switch (event.type) {
      case 'turn':
        this.#turn(this.#node(event.id));
        return;
      case 'tick': {
        const node = this.#node(event.id);
        if (node.replica === null || node.incarnation !== event.incarnation) return;
        node.inbox.push({ type: 'tick' });
        this.#scheduleTurn(node);
        this.#queue.push(this.#now + 10, event);
        return;
      }
      case 'peer': {
        const node = this.#node(event.to);
        if (node.replica === null || this.#isCut(event.from, event.to)) return;
        if (event.sent.type === 'promise')
          this.#checkers.paxos.onPromiseDelivered(event.to, event.from, event.sent);
        node.inbox.push({ type: 'message', from: event.from, message: event.message });
        this.#scheduleTurn(node);
        return;
      }
      case 'to-replica': {
        const node = this.#node(event.to);
        if (node.service === null) {
          if (this.#keptDown.has(node.id)) this.#refuse(event);
          return;
        }
        const now = this.#local(node);
        node.service.onClientFrame(event.client, event.frame, now);
        this.#drainOutbox(node);
        if (node.service.hasProposals) this.#scheduleTurn(node);
        return;
      }
      case 'to-client':
        if (event.client >= READER_BASE)
          this.#onReaderFrame(this.#readerAt(event.client), event.frame);
        else this.#onClientFrame(this.#clientAt(event.client), event.frame, event.appliedAt);
        return;
      case 'reader-wake':
        this.#wakeReader(this.#readerAt(event.reader));
        this.#queue.push(this.#now + 20, event);
        return;
      case 'refused':
        if (event.client >= READER_BASE) this.#onReaderRefused(event);
        else this.#onClientRefused(event);
        return;
      case 'probe': {
        const node = this.#node(event.id);
        if (node.replica === null || node.incarnation !== event.incarnation) return;
        this.#probeFreshness(node);
        // Every FRESHNESS_PROBE_MS of the replica's own clock.
        this.#queue.push(this.#now + FRESHNESS_PROBE_MS / node.clock.rate, event);
        return;
      }
      case 'probe-frame':
        this.#onProbeFrame(event);
        return;
      case 'client-wake':
        this.#wake(this.#clientAt(event.client));
        this.#queue.push(this.#now + 20, event);
        return;
      case 'crash': {
        const node = this.#node(event.id);
        if (node.replica === null) return;
        this.#crash(node);
        return;
      }
      case 'restart': {
        const node = this.#node(event.id);
        if (node.replica !== null || node.incarnation !== event.incarnation) return;
        this.#restoreStateDb(node);
        this.#start(node);
        return;
      }
      case 'snapshot':
        this.#onSnapshot(event);
        return;
      case 'snapshot-pull': {
        const server = this.#node(event.server);
        if (server.replica === null || this.#isCut(event.asker, event.server)) return;
        this.#shipSnapshot(server, event.asker, event.slotAtLeast);
        return;
      }
      case 'partition':
        if (this.#isolated !== null && this.#isolated.untilMs > this.#now) return;
        this.#partitions++;
        this.#isolated = { ids: [event.id], untilMs: event.untilMs };
        return;
      case 'resign':
        this.#onResign();
        return;
      case 'disk-loss':
        this.#onDiskLoss();
        return;
      case 'heal':
        this.#onHeal();
        return;
      case 'liveness-deadline': {
        const missed = this.#liveness.masterMissed(
          'serve as master (its service serving, its lease valid)',
        );
        if (missed !== null) this.#checkers.fail('liveness', this.#now, missed);
        return;
      }
      case 'end':
        this.#onEnd();
        return;
    }
  }

  /**
   * A planned hand-over: a live master that is not isolated resigns, naming a successor. Its turn
   * runs the Ready (the resign messages) and then `afterTurn`, where the service sees the step
   * down, stops serving and redirects its pending requests and reads, as runtime/node.ts's
   * hand-over does. An isolated master is left alone, as in the KV mode: resigning it would end
   * the deposed-master hazard the isolations set up.
   */
  #onResign(): void {
    const masters = [...this.#nodes.values()].filter(
      (node) =>
        node.replica !== null &&
        !this.#isIsolated(node.id) &&
        node.replica.status(this.#local(node)).role === 'master',
    );
    if (masters.length === 0) return;
    const node = this.#resignRandom.pick(masters);
    const replica = node.replica;
    if (replica === null) return;
    let successor: ReplicaId | null;
    try {
      successor = replica.resign(this.#local(node));
    } catch (err: unknown) {
      this.#threw(node, err);
      return;
    }
    if (successor === null) return;
    this.#resignations++;
    this.#scheduleTurn(node);
  }

  /**
   * single-lease, over every live replica that believes it is master with a lease; and, for the
   * liveness checks, since when each replica has served as master under its lease.
   */
  #checkLeases(): void {
    const holders: { id: ReplicaId; localNow: number; leaseUntil: number }[] = [];
    for (const node of this.#nodes.values()) {
      const replica = node.replica;
      if (replica === null) {
        node.servingSince = null;
        continue;
      }
      const localNow = this.#local(node);
      const status = replica.status(localNow);
      if (status.role === 'master' && status.leaseUntil !== null)
        holders.push({ id: node.id, localNow, leaseUntil: status.leaseUntil });
      const isServing =
        status.role === 'master' &&
        node.service?.isServing === true &&
        replica.canServeReads(localNow);
      if (!isServing) node.servingSince = null;
      else node.servingSince ??= this.#now;
    }
    if (holders.length > 1) this.#checkers.paxos.checkLeases(holders);
  }

  #isIsolated(id: ReplicaId): boolean {
    const cut = this.#isolated;
    return cut !== null && cut.ids.includes(id) && cut.untilMs > this.#now;
  }

  /**
   * A link is cut if exactly one end is among the isolated replicas, or (past the heal) if
   * either end is a replica kept cut off from every other.
   */
  #isCut(from: ReplicaId, to: ReplicaId): boolean {
    if (from !== to && (this.#keptDown.has(from) || this.#keptDown.has(to))) return true;
    const cut = this.#isolated;
    if (cut === null || cut.untilMs <= this.#now) return false;
    return cut.ids.includes(from) !== cut.ids.includes(to);
  }

  /** Up and holding its seat (not down, not a learner: a replacement disk not yet admitted). */
  #isVoter(node: Node): boolean {
    return node.replica !== null && node.replica.status(this.#local(node)).isVoter;
  }

  /**
   * A replica loses its disk: the process dies, paxos.db and state.db go, and it comes back
   * (0.1-1 s later) on an empty disk with a new random id, a learner until the master admits it.
   * Within the budget only: afterwards at most two replicas may be down or learners, so three
   * voters remain to elect a master that admits the learners. Half are aimed (see the header).
   */
  #onDiskLoss(): void {
    const nodes = [...this.#nodes.values()];
    const unavailable = nodes.filter((n) => !this.#isVoter(n)).length;
    const eligible = nodes.filter(
      (n) => n.replica !== null && unavailable + (this.#isVoter(n) ? 1 : 0) <= 2,
    );
    if (eligible.length === 0) return;
    const aimed = this.#diskRandom.chance(0.5) ? this.#freshQuorumHolder(eligible) : null;
    const node = aimed?.node ?? this.#diskRandom.pick(eligible);
    this.#diskLosses++;
    this.#crash(node, this.#diskRandom.range(100, 1000));
    node.store = new MemoryStore();
    node.checkpoint = null;
    node.machine.database.close(); // the lost state.db
    node.machine = StateMachine.createInMemory({ cell: CELL });
    node.lastCheckpointSlot = 0;
    node.diskId = drawDiskId(this.#diskRandom);
    this.#checkers.onMachineRestored(node.id, 0);
    if (aimed === null) return;
    this.#diskLossesAimed++;
    this.#partitions++;
    const leaseMs = this.#config.leaseMs;
    const durationMs = this.#diskRandom.range(
      leaseMs,
      3 * leaseMs + 2 * this.#config.electionTimeoutMs,
    );
    this.#isolated = {
      ids: aimed.others,
      untilMs: Math.min(this.#safetyMs, this.#now + durationMs),
    };
  }

  /**
   * A live voter among `eligible` that, with exactly two other replicas, durably holds the
   * highest slot not every replica holds (accepted in any ballot, or chosen); null if none.
   */
  #freshQuorumHolder(eligible: readonly Node[]): { node: Node; others: ReplicaId[] } | null {
    const nodes = [...this.#nodes.values()];
    const holds = (n: Node, slot: number): boolean =>
      slot < n.store.durableCompactedBelow() || n.store.durableEntry(slot) !== undefined;
    // Nothing is accepted above the highest commit by more than a window of slots.
    const commits = nodes.map((n) => n.store.load().commit);
    const top = Math.max(...commits) + this.#config.windowSlots + 1;
    for (let slot = top; slot > 0 && slot > top - 64; slot--) {
      const holders = nodes.filter((n) => holds(n, slot));
      if (holders.length === nodes.length) return null;
      if (holders.length !== 3) continue;
      const candidates = eligible.filter((n) => this.#isVoter(n) && holders.includes(n));
      if (candidates.length === 0) continue;
      const node = this.#diskRandom.pick(candidates);
      return { node, others: holders.filter((n) => n !== node).map((n) => n.id) };
    }
    return null;
  }

  #clientAt(index: number): Client {
    const client = this.#clients[index];
    if (client === undefined) throw new RangeError(`no client ${index}`);
    return client;
  }

  // --- liveness ----------------------------------------------------------------------------------

  /**
   * The heal: the liveness phase starts. Isolations end, links stop losing, duplicating and
   * holding back frames, and every replica that is down restarts now (its state.db as it was
   * left, as on any restart). No fault is scheduled past this point.
   */
  #onHeal(): void {
    this.#phase = 'liveness';
    this.#isolated = null;
    this.#dropRate = 0;
    this.#duplicateRate = 0;
    this.#spikeRate = 0;
    this.#clientLossRate = 0;
    // A waiter no longer gives up: its grant must come, and reach it, within the bounds.
    for (const client of this.#clients) {
      if (client.phase !== 'waiting' || this.#isVanished(client)) continue;
      this.#waitersAtHeal++;
      client.phaseUntilMs = Infinity;
    }
    const plan = this.#downPlan;
    const keep = plan === null ? [] : this.#pickKeptDown(plan);
    for (const node of this.#nodes.values()) {
      // A replica to be kept crashed stays down; one to be cut off restarts like the rest.
      if (node.replica !== null || (plan?.how === 'crashed' && keep.includes(node.id))) continue;
      this.#restoreStateDb(node);
      this.#start(node);
    }
    // Three voters must be left (a replacement disk not yet admitted cannot vote, and only a
    // master elected by three voters can admit it): keep fewer down until they are.
    const votersLeft = (): number =>
      [...this.#nodes.values()].filter((n) => !keep.includes(n.id) && this.#isVoter(n)).length;
    while (votersLeft() < 3) {
      const id = keep.pop();
      if (id === undefined) break;
      const node = this.#node(id);
      if (node.replica !== null) continue;
      this.#restoreStateDb(node);
      this.#start(node);
    }
    for (const id of keep) this.#keepDown(this.#node(id), plan?.how ?? 'crashed');
  }

  /**
   * Which replicas stay down past the heal: `plan.count` of them, the first the master the heal
   * finds (serving, or else believing it is master) when the plan aims at it, the rest at random.
   * Called before the heal restarts anyone: a master found is up.
   */
  #pickKeptDown(plan: DownPlan): ReplicaId[] {
    const keep: ReplicaId[] = [];
    if (plan.aimAtMaster) {
      const master =
        this.#servingMaster() ??
        [...this.#nodes.values()].find((n) => n.replica?.status(this.#local(n)).role === 'master');
      if (master !== undefined) keep.push(master.id);
    }
    while (keep.length < plan.count)
      keep.push(plan.random.pick(REPLICAS.filter((id) => !keep.includes(id))));
    return keep;
  }

  /**
   * A replica kept down from the heal to the end. Crashed: if it is up, its process dies now
   * (memory goes, the disk stays, as in #crash), and no restart is ever scheduled; counted apart
   * from the safety phase's crashes. Cut off: it runs on, and #isCut drops every frame between
   * it and any other replica (its clients still reach it, as in the safety phase's isolations).
   */
  #keepDown(node: Node, how: DownPlan['how']): void {
    this.#keptDown.add(node.id);
    if (node.servingSince !== null || node.replica?.status(this.#local(node)).role === 'master')
      this.#isMasterKeptDown = true;
    if (how === 'cut-off') return;
    // A restart still queued from a safety-phase crash must not bring it back.
    node.incarnation++;
    node.replica = null;
    node.service = null;
    node.wiring = null;
    node.inbox = [];
    node.servingSince = null;
  }

  /**
   * A client's (or reader's) frame reaches a replica kept down past the heal: its machine is up
   * and nothing listens on the port, so the connection is refused at once and the client hears
   * of it after a link delay, as a real client's connect fails (its findMaster sweep then moves
   * on to the next replica). Only kept-down replicas refuse: in the safety phase a frame to a
   * crashed replica is lost as before, so no draw of a seed without them moves.
   */
  #refuse(event: Extract<SimEvent, { type: 'to-replica' }>): void {
    this.#refusedFrames++;
    this.#queue.push(this.#now + this.#r.range(0.5, 4), {
      type: 'refused',
      client: event.client,
      frameId: event.frame.id,
      from: event.to,
    });
  }

  /** A refused client tries another replica at once with whatever the refused frame carried. */
  #onClientRefused(event: Extract<SimEvent, { type: 'refused' }>): void {
    const client = this.#clientAt(event.client);
    if (this.#isVanished(client)) return;
    if (client.target === event.from)
      client.target = client.random.pick(REPLICAS.filter((id) => id !== event.from));
    if (client.request?.frameId === event.frameId) {
      client.request.resendAtMs = this.#now;
      client.request.hasNewTarget = true;
    }
    if (event.frameId === client.keepAliveId) {
      client.keepAliveId = null;
      client.nextKeepAliveAtMs = this.#now;
    }
    if (client.recheck?.frameId === event.frameId) client.needsRecheck = true;
  }

  /** A refused reader drops the read; its next wake reads again, elsewhere. */
  #onReaderRefused(event: Extract<SimEvent, { type: 'refused' }>): void {
    const reader = this.#readerAt(event.client);
    if (reader.read?.frameId !== event.frameId) return;
    reader.read = null;
    reader.target = reader.random.pick(REPLICAS.filter((id) => id !== event.from));
  }

  /**
   * Every replica's applied slot and whether it is a learner, for the liveness checks. A replica
   * kept down past the heal is left out: it cannot catch up or vote, and the checks ask it of
   * the majority that is up.
   */
  #progress(): ReplicaProgress[] {
    const up = [...this.#nodes.values()].filter((node) => !this.#keptDown.has(node.id));
    return up.map((node) => ({
      id: node.id,
      applied: node.machine.appliedIndex,
      isLearner: node.replica !== null && !this.#isVoter(node),
      diskId: node.diskId,
    }));
  }

  /** The replica that serves as master under its lease now, if any (the first, if two think so). */
  #servingMaster(): Node | null {
    // A master cut off past the heal (serving out its lease) is not the one the checks judge.
    for (const node of this.#nodes.values())
      if (node.servingSince !== null && !this.#keptDown.has(node.id)) return node;
    return null;
  }

  /**
   * A client's request, a reader's next answer and a session's next KeepAlive ack are the
   * operations of the cell mode: from the master bound on, each must come within the operation
   * bound (a KeepAlive is due a quarter session lease after the last ack).
   */
  #checkClientLiveness(client: Client): void {
    if (this.#phase !== 'liveness' || this.#isVanished(client)) return;
    const request = client.request;
    if (request !== null) {
      const overdueMs = this.#liveness.operationOverdueMs(request.issuedAtMs, this.#now);
      if (overdueMs !== null)
        this.#checkers.fail(
          'liveness',
          this.#now,
          `client ${client.index}'s ${request.command.type} (seq ${'seq' in request.command ? request.command.seq : '-'}) is still unanswered ${this.#liveness.describeOverdue(overdueMs)}`,
        );
    }
    if (client.session !== null) {
      const lastAt = Math.max(client.sessionCreatedAtMs, client.keepAliveAckAtMs);
      const overdueMs = this.#liveness.operationOverdueMs(
        lastAt + this.#sessionLeaseMs / 4,
        this.#now,
      );
      if (overdueMs !== null)
        this.#checkers.fail(
          'liveness',
          this.#now,
          `client ${client.index}'s session ${client.session} has had no KeepAlive acknowledged since ${(lastAt / 1000).toFixed(3)}s, a quarter lease after which the next was due: ${this.#liveness.describeOverdue(overdueMs)}`,
        );
      this.#checkNotifications(client, client.session);
    }
  }

  /**
   * What a live client must be told (../liveness.ts, notificationBounds): a waiter, its grant
   * once applied; a free lock it waits on must be granted once its lock-delay is due on the
   * master's clock; and each event of its session, delivered or its loss told.
   */
  #checkNotifications(client: Client, session: number): void {
    const { grantWithinMs, eventWithinMs } = this.#notify;
    const now = this.#now;
    if (client.phase === 'waiting') {
      const grantedAt = this.#grantAppliedAt.get(`${session}:${client.handle}`);
      const overdueMs =
        grantedAt === undefined ? null : this.#liveness.overdueMs(grantedAt, grantWithinMs, now);
      if (grantedAt !== undefined && overdueMs !== null)
        this.#checkers.fail(
          'liveness',
          now,
          `client ${client.index} (session ${session}) still waits for ${client.path} on handle ${client.handle}, granted at ${(grantedAt / 1000).toFixed(3)}s: not told ${overdueMs.toFixed(0)} ms after the later of the grant and the master bound, over ${grantWithinMs.toFixed(0)} ms`,
        );
      else if (grantedAt === undefined) this.#checkFreeLock(client);
    }
    const oldest = client.pendingEvents[0];
    if (oldest === undefined) return;
    const overdueMs = this.#liveness.overdueMs(oldest.atMs, eventWithinMs, now);
    if (overdueMs !== null)
      this.#checkers.fail(
        'liveness',
        now,
        `client ${client.index} (session ${session}) neither got the event of slot ${oldest.slot} (first applied at ${(oldest.atMs / 1000).toFixed(3)}s) nor was told it may have missed it, ${overdueMs.toFixed(0)} ms after the later of the apply and the master bound, over ${eventWithinMs.toFixed(0)} ms`,
      );
  }

  /**
   * True if `path`'s lock-delay, on the serving master, ends further ahead of the master's clock
   * than any lock-delay lasts: the delay was stamped by an earlier master whose clock was ahead,
   * machine time stands still (max of the stamps) until this master's clock catches up, and the
   * service proposes LockDelayEnd only then (docs/state-machine.md, rule 2: the cell must stamp
   * on a time base that carries over a fail-over; it does not yet). Such a wait is reported in
   * the figures and not held against the liveness phase's completion: see docs/simulator.md.
   */
  #isFrozenDelay(path: string): boolean {
    const aheadMs = this.#frozenDelayAheadMs(path);
    if (aheadMs === null) return false;
    this.#frozenDelayPaths.add(path);
    this.#maxFrozenDelayAheadMs = Math.max(this.#maxFrozenDelayAheadMs, aheadMs);
    return this.#o.strictLockDelays !== true;
  }

  /** How far `path`'s lock-delay ends ahead of the serving master's clock, if frozen; else null. */
  #frozenDelayAheadMs(path: string): number | null {
    const master = this.#servingMaster();
    const delay = master?.machine.pendingLockDelays().find((d) => d.path === path);
    if (master === null || delay === undefined) return null;
    const aheadMs = delay.endsMs - this.#stampClock(master);
    return aheadMs > Math.max(...LOCK_DELAYS_MS) ? aheadMs : null;
  }

  /**
   * A waiter's lock on the serving master: if it has waiters and no holder (a lock-delay) and
   * the delay is due by the master's clock (when the service proposes LockDelayEnd), a waiter
   * must be granted within the free-lock bound. With strictLockDelays, a frozen delay
   * (#isFrozenDelay) is judged so too.
   */
  #checkFreeLock(client: Client): void {
    const master = this.#servingMaster();
    if (master === null) return;
    const listed = master.machine.query({ type: 'ListLocks', path: client.path });
    const lock = listed.type === 'locks' ? listed.locks[0] : undefined;
    if (lock === undefined || lock.holders.length > 0 || lock.waiters.length === 0) {
      this.#freeLockSince.delete(client.path);
      return;
    }
    const delay = master.machine.pendingLockDelays().find((d) => d.path === client.path);
    // Not due yet on the master's clock: not judged, unless strictLockDelays and it is frozen
    // (it ends further ahead than any delay lasts), which is then judged as if due.
    const isStrictFrozen =
      this.#o.strictLockDelays === true && this.#frozenDelayAheadMs(client.path) !== null;
    if (delay !== undefined && delay.endsMs > this.#stampClock(master) && !isStrictFrozen) {
      this.#freeLockSince.delete(client.path);
      this.#isFrozenDelay(client.path);
      return;
    }
    let since = this.#freeLockSince.get(client.path);
    if (since === undefined) {
      since = this.#now;
      this.#freeLockSince.set(client.path, since);
      this.#freeLocksJudged++;
    }
    const overdueMs = this.#liveness.overdueMs(since, this.#notify.freeLockWithinMs, this.#now);
    if (overdueMs !== null)
      this.#checkers.fail(
        'liveness',
        this.#now,
        `${client.path} has had waiters and no holder on master r${master.id} since ${(since / 1000).toFixed(3)}s with its lock-delay ${isStrictFrozen ? `frozen, ending ${((delay?.endsMs ?? 0) - this.#stampClock(master)).toFixed(0)} ms ahead of the master's clock (machine time stands still behind an earlier master's stamps)` : 'due'}: not granted ${this.#liveness.describeOverdue(overdueMs)}`,
      );
  }

  #checkReaderLiveness(reader: Reader): void {
    if (this.#phase !== 'liveness') return;
    const overdueMs = this.#liveness.operationOverdueMs(reader.answeredAtMs, this.#now);
    if (overdueMs !== null)
      this.#checkers.fail(
        'liveness',
        this.#now,
        `reader ${reader.id} has had no read answered since ${(reader.answeredAtMs / 1000).toFixed(3)}s: ${this.#liveness.describeOverdue(overdueMs)}`,
      );
  }

  /**
   * An ExpireSession proposed by `node` in the liveness phase: if the session's client is live
   * (it keeps sending KeepAlives every quarter lease, and the healed cell delivers them), a
   * master that has served under its lease for a session lease (#sessionGraceMs) in the healed
   * cell has heard from it, so the expiry is a liveness failure. A session its client gave up
   * (CloseSession), or learned had expired before this master served, is not judged.
   */
  #onExpireProposed(node: Node, session: number): void {
    if (this.#phase !== 'liveness') return;
    const owner = this.#sessionOwner.get(session);
    if (owner === undefined || this.#isVanished(this.#clientAt(owner))) return;
    const since = Math.max(this.#liveness.healAt, node.servingSince ?? this.#now);
    const lost = this.#sessionLost.get(session);
    if (lost !== undefined && (!lost.isExpiry || lost.atMs < since)) return;
    this.#expiriesJudgedLive++;
    const servedMs = this.#now - since;
    if (servedMs > this.#sessionGraceMs)
      this.#checkers.fail(
        'liveness',
        this.#now,
        `replica ${node.id} proposes to expire session ${session} of live client ${owner} (it keeps sending KeepAlives) after serving under its lease for ${servedMs.toFixed(0)} ms in the healed cell, over a session lease (${this.#sessionGraceMs.toFixed(0)} ms)`,
      );
  }

  /** Ends the run early once everything the liveness phase asks for has happened. */
  #checkLivenessDone(): void {
    if (this.#livenessUnmet(this.#acked.highest) !== null) return;
    this.#isDone = true;
    this.#isLivenessComplete = true;
  }

  /**
   * What the liveness phase still waits for, or null once all has happened: a master serves;
   * it has served under its lease without a break, in the healed cell, for the session grace
   * and half a lease more (time for a wrongly expired session to show); every request, read and
   * KeepAlive pending from before the first master served was answered; every wait begun
   * before then was granted and its client knows it (unless a lock-delay frozen behind the
   * master's clock holds it: #isFrozenDelay), and every event applied before then reached its
   * client or it was told of the gap; and every replica applied `ackedSlot` and votes.
   */
  #livenessUnmet(ackedSlot: number): string | null {
    const masterAt = this.#liveness.masterAt;
    if (masterAt === null) return 'no master has served since the heal';
    if (this.#now < masterAt + 300) return 'a master has only just begun serving';
    const master = this.#servingMaster();
    if (master?.servingSince == null) return 'no replica serves as master under its lease now';
    const since = Math.max(this.#liveness.healAt, master.servingSince);
    if (this.#now < since + this.#sessionGraceMs + this.#sessionLeaseMs / 2)
      return `replica ${master.id} has served under its lease only since ${(since / 1000).toFixed(3)}s`;
    for (const client of this.#clients) {
      if (this.#isVanished(client)) continue;
      if (client.request !== null && client.request.issuedAtMs < masterAt)
        return `client ${client.index}'s request from before the master served is unanswered`;
      if (client.session !== null && client.keepAliveAckAtMs < masterAt)
        return `client ${client.index}'s session has had no KeepAlive acknowledged since the master served`;
      if (
        this.#o.strictLockDelays === true &&
        client.phase === 'waiting' &&
        this.#frozenDelayAheadMs(client.path) !== null
      )
        return `client ${client.index} waits for ${client.path} behind a lock-delay frozen ahead of the master's clock`;
      if (
        client.phase === 'waiting' &&
        client.waitSinceMs < masterAt &&
        !this.#isFrozenDelay(client.path)
      )
        return `client ${client.index} has waited for ${client.path} since ${(client.waitSinceMs / 1000).toFixed(3)}s, before the master served, and holds no grant it knows of`;
      const oldest = client.pendingEvents[0];
      if (oldest !== undefined && oldest.atMs < masterAt)
        return `client ${client.index} has neither got the event of slot ${oldest.slot}, from before the master served, nor been told it may have missed it`;
    }
    for (const reader of this.#readers)
      if (reader.answeredAtMs < masterAt)
        return `reader ${reader.id} has had no read answered since the master served`;
    if (!isCaughtUp(this.#progress(), ackedSlot))
      return `some replica has not applied slot ${ackedSlot} or is a learner`;
    return null;
  }

  /**
   * The run's last moment: whatever liveness asked for and did not happen is a violation. Writes
   * acknowledged within an operation bound of the end are not judged (a follower learns a slot
   * is chosen up to a heartbeat after the client's answer).
   */
  #onEnd(): void {
    this.#isDone = true;
    for (const client of this.#clients) this.#checkClientLiveness(client);
    for (const reader of this.#readers) this.#checkReaderLiveness(reader);
    const ackedSlot = this.#acked.highestBy(this.#now - this.#liveness.bounds.operationWithinMs);
    for (const detail of catchUpFailures(this.#progress(), ackedSlot))
      this.#checkers.fail('liveness', this.#now, detail);
    // Anything else left undone: the mastership changed or lapsed after the bound.
    const unmet = this.#livenessUnmet(ackedSlot);
    if (this.#checkers.violations.length === 0 && unmet !== null)
      this.#checkers.fail(
        'liveness',
        this.#now,
        `the liveness phase did not complete by its end: ${unmet}`,
      );
  }

  // --- replicas ----------------------------------------------------------------------------------

  #start(node: Node): void {
    node.incarnation++;
    node.checkpointsSinceCompaction = 0;
    node.pendingSnapshotTaken = null;
    const now = this.#local(node);
    let replica: Replica;
    try {
      replica = new Replica({
        config: { ...this.#config, id: node.id },
        random: node.random.fork(node.incarnation),
        logger: silentLogger,
        durable: node.store.load(),
        now,
        applied: node.machine.appliedIndex,
        diskId: node.diskId,
      });
    } catch (err: unknown) {
      this.#threw(node, err);
      return;
    }
    node.replica = replica;
    const checkers = this.#checkers;
    // The service proposes ExpireSession itself (not through takeProposals); this view of the
    // replica lets the session-lease check see each proposal at the instant it is made.
    const replicaView = {
      propose: (command: Command, at: number) => {
        const decoded = decodeFrame(command.payload);
        const value = decoded.ok ? (decoded.value as { type?: unknown; session?: unknown }) : null;
        if (value !== null && value.type === 'ExpireSession' && typeof value.session === 'number') {
          checkers.onExpireProposed({ session: value.session, replica: node.id, atMs: this.#now });
          this.#onExpireProposed(node, value.session);
        }
        return replica.propose(command, at);
      },
      canServeReads: (at: number) => replica.canServeReads(at),
      status: (at: number) => replica.status(at),
      noteMachineTime: (ms: number) => {
        replica.noteMachineTime(ms);
      },
      stampNow: (at: number) => replica.stampNow(at),
    };
    // The machine as the service sees it (whichever state.db is live: a snapshot install
    // replaces it); apply() is watched for grants, expiries, events, digests and session ends.
    const machineView = {
      apply: (entry: Entry) => this.#applyEntry(node, entry),
      query: (query: unknown) => node.machine.query(query),
      wouldQueue: (command: Acquire) => node.machine.wouldQueue(command),
      pendingLockDelays: () => node.machine.pendingLockDelays(),
      digest: () => node.machine.digest(),
      snapshot: () => node.machine.snapshot(),
      get appliedIndex() {
        return node.machine.appliedIndex;
      },
      get timeMs() {
        return node.machine.timeMs;
      },
    };
    const service = new CellService(
      {
        id: node.id,
        maxDriftRate: this.#config.maxDriftRate,
        clientAddresses: new Map(REPLICAS.map((id) => [id, addressOf(id)])),
        replica: replicaView,
        machine: () => machineView,
        logger: silentLogger,
        bootNonce: `r${node.id}i${node.incarnation}`,
        requestTimeoutMs: 1000,
        digestEveryMs: 500,
        onDiverged: (detail) => {
          checkers.fail(
            'diverged',
            this.#now,
            `replica ${node.id} diverged at slot ${detail.slot}`,
          );
        },
      },
      now,
    );
    node.service = service;
    const watched = checkers.paxos.watchStore(node.id, node.store, () => ({
      diskId: node.diskId,
      isVoter: replica.status(this.#local(node)).isVoter,
    }));
    node.wiring = {
      replica,
      store: {
        persist: (batch) => {
          watched.persist(batch);
          for (const entry of batch.chosen) checkers.onSlotLearned(entry.slot, this.#now);
        },
      },
      logger: silentLogger,
      send: (envelope: Envelope) => {
        this.#sendPeer(node, envelope);
      },
      apply: (entry: ChosenEntry) => {
        checkers.onSlotLearned(entry.slot, this.#now);
        if (checkers.paxos.onApplying(node.id, entry, node.machine.appliedIndex)) {
          service.apply(entry, this.#local(node));
          checkers.onReadState(
            node.machine.appliedIndex,
            JSON.stringify(node.machine.query(READ_QUERY)),
          );
        }
      },
      snapshotFor: (to, slot) => {
        this.#shipSnapshot(node, to, slot);
      },
      needSnapshot: (from, slotAtLeast) => {
        const delay = this.#peerDelay();
        if (delay === null) return;
        this.#queue.push(this.#now + delay, {
          type: 'snapshot-pull',
          server: from,
          asker: node.id,
          slotAtLeast,
        });
      },
      faults: (stage, ready) => {
        if (this.#now >= this.#safetyMs || this.#turnCrashRate === 0) return 'continue';
        if (this.#downCount() >= 2 || !isFaultPointInteresting(stage, ready)) return 'continue';
        return this.#r.chance(this.#turnCrashRate) ? 'crash' : 'continue';
      },
    };
    this.#queue.push(this.#now + this.#r.range(0, 10), {
      type: 'tick',
      id: node.id,
      incarnation: node.incarnation,
    });
    this.#queue.push(this.#now + this.#r.range(0, FRESHNESS_PROBE_MS), {
      type: 'probe',
      id: node.id,
      incarnation: node.incarnation,
    });
  }

  /** runtime/node.ts's #probeFreshness: a non-serving replica asks the master it knows. */
  #probeFreshness(node: Node): void {
    const { service } = node;
    if (node.replica === null || service === null) return;
    const now = this.#local(node);
    const masterId = service.freshnessProbeTarget(now);
    if (masterId === null) return;
    this.#sendProbeFrame(node.id, masterId, 'commit-probe', now, 0);
  }

  #sendProbeFrame(
    from: ReplicaId,
    to: ReplicaId,
    kind: 'commit-probe' | 'commit-answer',
    sentAt: number,
    commit: number,
  ): void {
    const delay = this.#peerDelay();
    if (delay === null) return;
    this.#queue.push(this.#now + delay, { type: 'probe-frame', from, to, kind, sentAt, commit });
  }

  /** runtime/node.ts's #onFreshnessProbe. */
  #onProbeFrame(event: Extract<SimEvent, { type: 'probe-frame' }>): void {
    const node = this.#node(event.to);
    const { replica, service } = node;
    if (replica === null || service === null || this.#isCut(event.from, event.to)) return;
    const now = this.#local(node);
    if (event.kind === 'commit-answer') {
      const late = this.#cellBug === 'lateProbeSentAt' ? LATE_PROBE_MS : 0;
      service.onMasterCommit(event.sentAt + late, event.commit);
      return;
    }
    const commit = service.answerFreshnessProbe(now);
    if (commit === null) return;
    this.#probeAnswers++;
    this.#sendProbeFrame(node.id, event.from, 'commit-answer', event.sentAt, commit);
  }

  /** Replicas that cannot vote: down, or learners (a learner stays so until a master admits it). */
  #downCount(): number {
    let n = 0;
    for (const node of this.#nodes.values()) if (!this.#isVoter(node)) n++;
    return n;
  }

  /**
   * The process dies: memory (core, service, inbox, unsent frames) goes; the stores stay. It
   * restarts `downMs` later (a draw from `r` unless given).
   */
  #crash(node: Node, downMs?: number): void {
    this.#crashes++;
    node.replica = null;
    node.service = null;
    node.wiring = null;
    node.inbox = [];
    this.#queue.push(this.#now + (downMs ?? this.#r.range(100, 1500)), {
      type: 'restart',
      id: node.id,
      incarnation: node.incarnation,
    });
  }

  /**
   * Before a restart: state.db is whatever was durable. Kept whole, it is the live machine;
   * checkpointed, it is the last checkpoint (or an empty machine), and the log replays the rest.
   */
  #restoreStateDb(node: Node): void {
    if (this.#checkpointEvery === 1) return;
    const checkpoint = node.checkpoint;
    node.machine.database.close(); // the lost state (native memory is not the GC's to free)
    node.machine =
      checkpoint === null
        ? StateMachine.createInMemory({ cell: CELL })
        : StateMachine.restore(checkpoint.bytes, { cell: CELL });
    node.lastCheckpointSlot = node.machine.appliedIndex;
    this.#checkers.onMachineRestored(node.id, node.machine.appliedIndex);
    this.#checkers.onDigest({
      replica: node.id,
      slot: node.machine.appliedIndex,
      atMs: this.#now,
      digest: node.machine.digest(),
      how: 'restored',
    });
  }

  #threw(node: Node, err: unknown): void {
    // The sim reports a broken assertion in production code as a failure of the seed.
    this.#checkers.fail(
      'replica-assertion',
      this.#now,
      `replica ${node.id}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
  }

  #scheduleTurn(node: Node): void {
    if (node.isTurnScheduled) return;
    node.isTurnScheduled = true;
    this.#queue.push(this.#now + this.#r.range(0, 0.2), { type: 'turn', id: node.id });
  }

  #turn(node: Node): void {
    node.isTurnScheduled = false;
    const { replica, service, wiring } = node;
    if (replica === null || service === null || wiring === null) return;
    const now = this.#local(node);
    const proposals = service.takeProposals(now);
    const inputs: TurnInput[] = [
      ...node.inbox.splice(0),
      ...proposals.map((command): TurnInput => ({ type: 'propose', command })),
    ];
    try {
      const result = runTurn(wiring, inputs, now);
      proposals.forEach((command, i) => {
        const outcome = result.proposals[i];
        if (outcome !== undefined) service.onProposed(command, outcome);
      });
      let crashed = result.crashedBefore !== null;
      if (!crashed) {
        service.afterTurn(now);
        // afterTurn may have proposed (ExpireSession, LockDelayEnd, digest marks): run them now,
        // as the process does on its next event-loop turn.
        for (let i = 0; i < 4 && !crashed && replica.hasReady(); i++)
          crashed = runTurn(wiring, [], now).crashedBefore !== null;
      }
      if (crashed) {
        this.#turnCrashes++;
        this.#crash(node);
        return;
      }
      const slot = node.pendingSnapshotTaken;
      if (slot !== null) {
        node.pendingSnapshotTaken = null;
        this.#compactions++;
        replica.snapshotTaken(slot);
        this.#scheduleTurn(node);
      }
    } catch (err: unknown) {
      this.#threw(node, err);
      return;
    }
    this.#drainOutbox(node);
    // A master cut off past the heal serves out the lease it had at the heal: not the master
    // the liveness phase asks the others to elect.
    if (
      this.#phase === 'liveness' &&
      service.isServing &&
      replica.canServeReads(now) &&
      !this.#keptDown.has(node.id)
    )
      this.#liveness.onMasterServes(this.#now);
    const locks = node.machine.query({ type: 'ListLocks' });
    if (locks.type === 'locks') this.#checkers.onReplicaLocks(node.id, this.#now, locks.locks);
    this.#checkOrphans(node);
  }

  #checkOrphans(node: Node): void {
    if (node.orphans?.machine !== node.machine) {
      node.orphans = {
        machine: node.machine,
        statement: node.machine.database.prepare(ORPHAN_EPHEMERALS).pluck(),
      };
    }
    const paths = node.orphans.statement.all() as string[];
    this.#checkers.onOrphanEphemerals(node.id, paths);
  }

  /** A peer link's delay for one copy, or null if the copy is lost. */
  #peerDelay(): number | null {
    if (this.#r.chance(this.#dropRate)) return null;
    return this.#r.chance(this.#spikeRate) ? this.#r.range(20, 150) : this.#r.range(0.5, 5);
  }

  #sendPeer(node: Node, envelope: Envelope): void {
    this.#checkers.paxos.onSent(node.id, envelope.message, node.store);
    if (this.#r.chance(this.#dropRate)) return;
    const copies = this.#r.chance(this.#duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      // A deep copy: the receiver gets bytes' worth of data, never the sender's objects.
      const delay = this.#r.chance(this.#spikeRate)
        ? this.#r.range(20, 150)
        : this.#r.range(0.5, 5);
      this.#queue.push(this.#now + delay, {
        type: 'peer',
        from: node.id,
        to: envelope.to,
        message: structuredClone(envelope.message),
        sent: envelope.message,
      });
    }
  }

  /** Ships this replica's whole machine (at or above `slot`) to `to`, over a lossy link. */
  #shipSnapshot(node: Node, to: ReplicaId, slot: number): void {
    const applied = node.machine.appliedIndex;
    if (applied < slot || this.#cellBug === 'loseSnapshots') return;
    const delay = this.#peerDelay();
    if (delay === null) return;
    this.#queue.push(this.#now + delay + 5, {
      type: 'snapshot',
      from: node.id,
      to,
      bytes: node.machine.snapshot(),
      slot: applied,
      admitted: node.replica?.admitted() ?? [],
    });
  }

  #onSnapshot(event: Extract<SimEvent, { type: 'snapshot' }>): void {
    const node = this.#node(event.to);
    const replica = node.replica;
    if (replica === null || this.#isCut(event.from, event.to)) return;
    if (event.slot <= node.machine.appliedIndex) return;
    try {
      const machine = StateMachine.restore(event.bytes, { cell: CELL });
      if (machine.appliedIndex !== event.slot)
        this.#checkers.fail(
          'digest',
          this.#now,
          `replica ${node.id}: a snapshot shipped at slot ${event.slot} restores at ${machine.appliedIndex}`,
        );
      this.#checkers.onDigest({
        replica: node.id,
        slot: machine.appliedIndex,
        atMs: this.#now,
        digest: machine.digest(),
        how: 'installed',
      });
      node.machine.database.close();
      node.machine = machine;
      node.lastCheckpointSlot = machine.appliedIndex;
      this.#checkers.onMachineRestored(node.id, machine.appliedIndex);
      // The installed state.db is durable: a crash from here on restarts from it.
      if (this.#checkpointEvery !== 1)
        node.checkpoint = { bytes: event.bytes, slot: machine.appliedIndex };
      this.#snapshotsInstalled++;
      replica.installSnapshot(machine.appliedIndex, this.#local(node), event.admitted);
    } catch (err: unknown) {
      this.#threw(node, err);
      return;
    }
    this.#scheduleTurn(node);
  }

  #drainOutbox(node: Node): void {
    const service = node.service;
    const replica = node.replica;
    if (service === null || replica === null) return;
    const hasLease = replica.canServeReads(this.#local(node));
    const appliedAt = node.machine.appliedIndex;
    for (const out of service.takeOutbox()) {
      let frame = out.frame;
      if (out.to >= READER_BASE) this.#onReadAnswer(node, frame, this.#readerAt(out.to), hasLease);
      if (frame.type === 'keep-alive-ack') {
        const session = this.#keepAliveSession.get(frame.id);
        if (session !== undefined)
          this.#checkers.onKeepAliveAck({ session, atMs: this.#now, hasLease });
        if (this.#cellBug === 'hideEventGaps') frame = { ...frame, isEventGap: false };
      }
      if (
        this.#cellBug === 'loseGrantsAfterHeal' &&
        this.#phase === 'liveness' &&
        out.to < READER_BASE &&
        (frame.type === 'query-result' ||
          (frame.type === 'event' && frame.event.type === 'lock-granted'))
      )
        continue; // a waiter's grant, or the answer to its recheck, lost
      if (this.#r.chance(this.#clientLossRate)) continue; // a lost client frame
      // One connection per (replica, client): frames arrive in the order they were sent.
      const connection = `${node.id}>${out.to}`;
      const at = Math.max(
        this.#now + this.#r.range(0.5, 4),
        this.#connectionAt.get(connection) ?? 0,
      );
      this.#connectionAt.set(connection, at);
      this.#queue.push(at, {
        type: 'to-client',
        client: out.to,
        frame: structuredClone(frame),
        appliedAt,
      });
    }
  }

  /** Applies one entry to the node's live machine, watching what it did. */
  #applyEntry(node: Node, entry: Entry): ReturnType<StateMachine['apply']> {
    const machine = node.machine;
    const ends: { session: number; kind: 'CloseSession' | 'ExpireSession' }[] = [];
    let endsLockDelay = false;
    for (const command of entry.commands) {
      const c = command as { type?: unknown; session?: unknown } | null;
      if (
        (c?.type === 'CloseSession' || c?.type === 'ExpireSession') &&
        typeof c.session === 'number'
      )
        ends.push({ session: c.session, kind: c.type });
      if (c?.type === 'LockDelayEnd') endsLockDelay = true;
    }
    const before = ends.length > 0 ? this.#locksOf(machine) : [];
    const outcome = machine.apply(entry);
    this.#onApplied(node, entry.slot, entry.commands, outcome.results, outcome.events);
    ends.forEach((end) => {
      const index = entry.commands.findIndex(
        (c) =>
          (c as { session?: unknown } | null)?.session === end.session &&
          (c as { type?: unknown }).type === end.kind,
      );
      const result = outcome.results[index];
      if (result?.type !== 'session-closed' && result?.type !== 'session-expired') return;
      this.#checkSessionEnd(node, end.session);
      // A Release or Close of the session's handle earlier in the same entry frees the lock
      // without lock-delay before the session ends (a false positive of this check, met while
      // adding the readers).
      const freedEarlier = new Set(
        entry.commands.slice(0, index).flatMap((c) => {
          const cmd = c as { type?: unknown; session?: unknown; handle?: unknown } | null;
          return (cmd?.type === 'Release' || cmd?.type === 'Close') &&
            cmd.session === end.session &&
            typeof cmd.handle === 'number'
            ? [cmd.handle]
            : [];
        }),
      );
      const held = before.flatMap((lock) =>
        lock.holders
          .filter((h) => h.session === end.session && !freedEarlier.has(h.handle))
          .map((h) => ({
            path: lock.path,
            delayMs: this.#handleDelay.get(h.handle) ?? 0,
            ...(lock.lockDelayEndsMs === undefined ? {} : { before: lock.lockDelayEndsMs }),
          })),
      );
      this.#checkers.onLocksAfterEnd({
        replica: node.id,
        session: end.session,
        kind: end.kind,
        // Another session's end or a LockDelayEnd in the same entry also moves delays.
        held: ends.length > 1 || endsLockDelay ? [] : held,
        after: this.#locksOf(machine),
        timeMs: machine.timeMs,
      });
    });
    return outcome;
  }

  #locksOf(machine: StateMachine): readonly LockInfo[] {
    const locks = machine.query({ type: 'ListLocks' });
    return locks.type === 'locks' ? locks.locks : [];
  }

  /** A session's end was applied here: its ephemeral files must be gone (unless held by others). */
  #checkSessionEnd(node: Node, session: number): void {
    const created = this.#ephemeralsOf.get(session);
    const leftOver: string[] = [];
    if (created !== undefined) {
      const db = node.machine.database;
      const exists = db
        .prepare('SELECT count(*) FROM nodes WHERE path = ? AND instance = ?')
        .pluck();
      const heldByOthers = db
        .prepare('SELECT count(*) FROM handles WHERE path = ? AND instance = ? AND session != ?')
        .pluck();
      for (const key of created) {
        const [path = '', instance = ''] = key.split('#');
        if (
          (exists.get(path, Number(instance)) as number) > 0 &&
          (heldByOthers.get(path, Number(instance), session) as number) === 0
        )
          leftOver.push(key);
      }
    }
    this.#checkers.onSessionEnded(node.id, session, leftOver);
  }

  #onApplied(
    node: Node,
    slot: number,
    commands: readonly unknown[],
    results: readonly CommandResult[],
    events: readonly MachineEvent[],
  ): void {
    this.#slotsApplied++;
    if (slot > this.#firstAppliedThrough) {
      this.#firstAppliedThrough = slot;
      this.#onFirstApplied(slot, events);
    }
    commands.forEach((command, i) => {
      const result = results[i];
      const c = command as {
        type?: unknown;
        session?: unknown;
        seq?: unknown;
        path?: unknown;
        lockDelayMs?: unknown;
      } | null;
      if (result?.type === 'acquired') {
        const request = `${String(c?.session)}#${String(c?.seq)}`;
        this.#checkers.onGrant({
          replica: node.id,
          slot,
          atMs: this.#now,
          sequencer: result.sequencer,
          request,
        });
      }
      if (result?.type === 'opened' && c !== null && typeof c.session === 'number') {
        if (typeof c.lockDelayMs === 'number') this.#handleDelay.set(result.handle, c.lockDelayMs);
        if (result.created && typeof c.path === 'string' && this.#wantEphemeral.has(c.path)) {
          let set = this.#ephemeralsOf.get(c.session);
          if (set === undefined) {
            set = new Set();
            this.#ephemeralsOf.set(c.session, set);
          }
          set.add(`${c.path}#${result.stat.instance}`);
        }
      }
      if (result?.type === 'session-closed' && typeof c?.session === 'number')
        this.#closed.add(c.session);
      if (
        c !== null &&
        c.type === 'ExpireSession' &&
        typeof c.session === 'number' &&
        result?.type === 'session-expired'
      ) {
        if (!this.#expired.has(c.session))
          this.#checkers.onExpireApplied({
            session: c.session,
            atMs: this.#now,
            leaseMs: this.#sessionLeaseMs,
          });
        this.#expired.add(c.session);
      }
    });
    for (const event of events) {
      if (event.type === 'lock-granted') {
        this.#checkers.onGrant({
          replica: node.id,
          slot,
          atMs: this.#now,
          sequencer: event.sequencer,
        });
      }
    }
    this.#checkers.onEntryEvents(node.id, slot, events);
    if (slot % DIGEST_EVERY === 0)
      this.#checkers.onDigest({
        replica: node.id,
        slot,
        atMs: this.#now,
        digest: node.machine.digest(),
      });
    this.#checkpoint(node, slot);
  }

  /**
   * A slot's events, the first time any replica applies it: what each live client is now owed
   * (the event, or word that it may have missed it), and when a waiter's grant became owed.
   */
  #onFirstApplied(slot: number, events: readonly MachineEvent[]): void {
    for (const event of events) {
      if (event.type === 'lock-granted') {
        const key = `${event.session}:${event.handle}`;
        if (!this.#grantAppliedAt.has(key)) this.#grantAppliedAt.set(key, this.#now);
      }
      for (const client of this.#clients) {
        if (client.session !== event.session || this.#isVanished(client)) continue;
        if (client.pendingEvents.at(-1)?.slot !== slot)
          client.pendingEvents.push({ slot, atMs: this.#now });
      }
    }
  }

  /** The client has its session's events through `slot`, or was told it may have missed some. */
  #onEventsCovered(client: Client, slot: number): void {
    let n = 0;
    for (const pending of client.pendingEvents) {
      if (pending.slot > slot) break;
      n++;
      if (this.#phase !== 'liveness') continue;
      this.#eventsJudgedLive++;
      const toldMs = this.#now - Math.max(pending.atMs, this.#liveness.healAt);
      this.#maxEventToldMs = Math.max(this.#maxEventToldMs, toldMs);
    }
    client.pendingEvents.splice(0, n);
  }

  /** A waiter learns it holds the lock: from the lock-granted push, or a recheck's answer. */
  #onGrantTold(client: Client, how: 'push' | 'recheck'): void {
    const grantedAt = this.#grantAppliedAt.get(`${client.session}:${client.handle}`);
    if (this.#phase === 'liveness' && grantedAt !== undefined) {
      this.#grantsJudgedLive++;
      if (how === 'recheck') this.#grantsByRecheck++;
      const toldMs = this.#now - Math.max(grantedAt, this.#liveness.healAt);
      this.#maxGrantToldMs = Math.max(this.#maxGrantToldMs, toldMs);
    }
    client.phase = 'holding';
    client.phaseUntilMs = this.#now + client.random.range(20, 400);
    client.needsRecheck = false;
    client.recheck = null;
  }

  /**
   * A waiter told of a gap asks the master whether it now holds the lock (ListLocks), as the
   * client's LockState does on a reread; a recheck with no answer is resent elsewhere.
   */
  #sendRecheck(client: Client): void {
    if (!client.needsRecheck) client.target = client.random.pick(REPLICAS);
    client.needsRecheck = false;
    const frameId = ++this.#frameId;
    client.recheck = { frameId, resendAtMs: this.#now + CLIENT_RESEND_MS };
    this.#send(client, {
      type: 'query',
      id: frameId,
      query: { type: 'ListLocks', path: client.path },
    });
  }

  #onRecheckAnswer(client: Client, result: QueryResult): void {
    client.recheck = null;
    if (client.phase !== 'waiting' || result.type !== 'locks') return;
    const holders = result.locks[0]?.holders ?? [];
    if (holders.some((h) => h.session === client.session && h.handle === client.handle))
      this.#onGrantTold(client, 'recheck');
  }

  /** state.db's durability: a checkpoint every N slots, and now and then a compaction. */
  #checkpoint(node: Node, slot: number): void {
    const every = this.#checkpointEvery === 1 ? 8 : this.#checkpointEvery;
    if (slot - node.lastCheckpointSlot < every) return;
    node.lastCheckpointSlot = slot;
    if (this.#checkpointEvery !== 1) node.checkpoint = { bytes: node.machine.snapshot(), slot };
    node.checkpointsSinceCompaction++;
    if (node.checkpointsSinceCompaction >= this.#compactEveryCheckpoints) {
      node.checkpointsSinceCompaction = 0;
      node.pendingSnapshotTaken = slot;
    }
  }

  // --- clients -----------------------------------------------------------------------------------

  #send(client: Client, frame: ClientFrame): void {
    if (this.#r.chance(this.#clientLossRate)) return;
    if (
      this.#cellBug === 'loseKeepAlivesAfterHeal' &&
      this.#phase === 'liveness' &&
      frame.type === 'keep-alive'
    )
      return;
    this.#queue.push(this.#now + this.#r.range(0.5, 4), {
      type: 'to-replica',
      to: client.target,
      client: client.index,
      frame: structuredClone(frame),
    });
  }

  #isVanished(client: Client): boolean {
    return client.vanishAtMs !== null && this.#now >= client.vanishAtMs;
  }

  #wake(client: Client): void {
    if (this.#isVanished(client)) return;
    this.#checkClientLiveness(client);
    if (client.session !== null && this.#now >= client.nextKeepAliveAtMs) {
      // No answer to the last KeepAlive: that replica may be down or cut off; try another.
      if (client.keepAliveId !== null) client.target = client.random.pick(REPLICAS);
      const id = ++this.#frameId;
      client.keepAliveId = id;
      this.#keepAliveSession.set(id, client.session);
      client.nextKeepAliveAtMs = this.#now + this.#sessionLeaseMs / 4;
      this.#send(client, {
        type: 'keep-alive',
        id,
        session: client.session,
        eventSeqSeen: client.events.seen,
      });
    }
    if (
      this.#phase === 'liveness' &&
      client.phase === 'waiting' &&
      (client.needsRecheck || (client.recheck !== null && this.#now >= client.recheck.resendAtMs))
    )
      this.#sendRecheck(client);
    const request = client.request;
    if (request !== null) {
      if (this.#now >= request.resendAtMs) this.#transmit(client, request, true);
      return;
    }
    if (client.session === null) {
      client.nonceCount++;
      this.#issue(client, {
        type: 'CreateSession',
        clientName: `client-${client.index}`,
        leaseMs: this.#sessionLeaseMs,
        nonce: `c${client.index}n${client.nonceCount}`,
      });
      return;
    }
    if (this.#now < client.phaseUntilMs) return;
    const session = client.session;
    switch (client.phase) {
      case 'none':
        this.#startOp(client, session);
        return;
      case 'waiting':
        // Waited long enough for lock-granted: give up the handle (Close cancels the wait).
        this.#onHandle(client, 'closing', { type: 'Close' });
        return;
      case 'holding':
        // Sometimes the client ends its whole session instead: locks go without lock-delay,
        // ephemeral files go.
        if (client.random.chance(client.op === 'ephemeral' ? 0.3 : 0.15)) {
          this.#closeSession(client, session);
        } else if (client.op === 'lock') {
          this.#onHandle(client, 'releasing', { type: 'Release' });
        } else {
          this.#onHandle(client, 'closing', { type: 'Close' });
        }
        return;
      case 'watching':
      case 'opening':
      case 'acquiring':
      case 'releasing':
      case 'writing':
      case 'closing':
      case 'ending':
        return;
    }
  }

  /** The next operation of a session: watch the directory first, then lock, ephemeral or write. */
  #startOp(client: Client, session: number): void {
    const open = (
      path: string,
      extra: {
        ephemeral?: boolean;
        directory?: boolean;
        eventMask?: number;
        create?: 'may' | 'must';
      },
    ) => {
      this.#issue(client, {
        type: 'Open',
        session,
        seq: ++client.seq,
        path,
        create: extra.create ?? 'may',
        ephemeral: extra.ephemeral ?? false,
        directory: extra.directory ?? false,
        eventMask: extra.eventMask ?? 0,
        lockDelayMs: client.lockDelayMs,
      });
    };
    if (client.watches && client.watchHandle === null) {
      client.phase = 'watching';
      open(DIR, { directory: true, eventMask: WATCH_MASK });
      return;
    }
    if (client.script !== null && !client.isScriptDone) {
      client.isScriptDone = true;
      client.phase = 'opening';
      client.op = 'lock';
      client.path = HEAL_LOCK;
      open(client.path, {});
      return;
    }
    const draw = client.random.next();
    if (draw < 0.05) {
      this.#closeSession(client, session);
      return;
    }
    client.phase = 'opening';
    if (draw < 0.6) {
      client.op = 'lock';
      client.path = `/ls/${CELL}/lock-${client.random.int(3)}`;
      open(client.path, { eventMask: client.watches ? LOCK_WATCH_MASK : 0 });
    } else if (draw < 0.85) {
      client.op = 'ephemeral';
      client.path = `${DIR}/e${client.index}-${++client.ephemeralCount}`;
      this.#wantEphemeral.add(client.path);
      open(client.path, { create: 'must', ephemeral: this.#cellBug !== 'forgetEphemeral' });
    } else {
      client.op = 'write';
      client.path = `${DIR}/config`;
      open(client.path, {});
    }
  }

  /** Issues the session's next command on the client's current handle, moving to `phase`. */
  #onHandle(client: Client, phase: Phase, command: HandleCommand): void {
    if (client.session === null) return;
    client.phase = phase;
    const session = client.session;
    this.#issue(client, { ...command, session, seq: ++client.seq, handle: client.handle });
  }

  /** Ends the whole session cleanly: locks go without lock-delay, ephemeral files go. */
  #closeSession(client: Client, session: number): void {
    client.phase = 'ending';
    this.#issue(client, { type: 'CloseSession', session, seq: ++client.seq });
  }

  #issue(client: Client, command: MachineCommand): void {
    const request: Request = {
      command,
      issuedAtMs: this.#now,
      frameId: 0,
      resendAtMs: 0,
      hasNewTarget: false,
    };
    client.request = request;
    this.#transmit(client, request, false);
  }

  /** Sends (or resends, with the same session and seq) the client's one request. */
  #transmit(client: Client, request: Request, isRetry: boolean): void {
    if (isRetry && !request.hasNewTarget) client.target = client.random.pick(REPLICAS);
    request.hasNewTarget = false;
    request.frameId = ++this.#frameId;
    request.resendAtMs = this.#now + 300;
    this.#send(client, { type: 'command', id: request.frameId, command: request.command });
  }

  #targetOf(address: string | null): ReplicaId | null {
    if (address === null) return null;
    return REPLICAS.find((id) => addressOf(id) === address) ?? null;
  }

  #onClientFrame(client: Client, frame: ServerFrame, appliedAt: number): void {
    if (this.#isVanished(client)) return;
    switch (frame.type) {
      case 'keep-alive-ack':
        if (frame.id !== client.keepAliveId) return;
        client.keepAliveId = null;
        if (this.#keepAliveSession.get(frame.id) === client.session) {
          this.#checkClientLiveness(client); // a late ack, judged before it resets the clock
          client.keepAliveAckAtMs = this.#now;
          this.#onKeepAliveAck(client, frame, appliedAt);
        }
        return;
      case 'redirect': {
        const target = this.#targetOf(frame.master);
        client.target = target ?? client.random.pick(REPLICAS);
        if (client.request?.frameId === frame.id) {
          client.request.resendAtMs = this.#now + 10;
          client.request.hasNewTarget = true;
        }
        if (frame.id === client.keepAliveId) client.nextKeepAliveAtMs = this.#now + 10;
        if (client.recheck?.frameId === frame.id) client.needsRecheck = true;
        return;
      }
      case 'error':
        if (frame.code === ErrorCode.SESSION_EXPIRED) {
          if (frame.id === client.keepAliveId || client.request?.frameId === frame.id)
            this.#loseSession(client, 'expired');
          return;
        }
        if (client.request?.frameId === frame.id) {
          client.request.resendAtMs = this.#now + 10;
          client.request.hasNewTarget = true;
        }
        if (frame.id === client.keepAliveId) client.nextKeepAliveAtMs = this.#now + 10;
        if (client.recheck?.frameId === frame.id) client.needsRecheck = true;
        return;
      case 'event':
        if (frame.session !== client.session) return;
        this.#onEventPush(client, frame);
        if (frame.event.type !== 'lock-granted' || frame.event.handle !== client.handle) return;
        if (client.phase === 'waiting') this.#onGrantTold(client, 'push');
        // The push can overtake the `queued` answer (a retried Acquire answered from the
        // session's record): kept for when the answer comes, as LockState's early grant is.
        else if (client.phase === 'acquiring') client.hasEarlyGrant = true;
        return;
      case 'result':
        this.#ackedSlot = Math.max(this.#ackedSlot, frame.slot);
        this.#acked.onAcknowledged(frame.slot, this.#now);
        if (client.request?.frameId !== frame.id) return;
        this.#checkClientLiveness(client);
        client.request = null;
        this.#onResult(client, frame.result);
        return;
      case 'master-failover':
        // A new master: events may have been lost in between; re-sync at the next ack.
        this.#resync(client);
        return;
      case 'query-result':
        if (client.recheck?.frameId === frame.id) this.#onRecheckAnswer(client, frame.result);
        return;
      case 'status':
        return;
    }
  }

  // --- readers ------------------------------------------------------------------------------------

  #readerAt(id: number): Reader {
    const reader = this.#readers[id - READER_BASE];
    if (reader === undefined) throw new RangeError(`no reader ${id}`);
    return reader;
  }

  /** A new read when the last one is answered or given up: linearizable or stale, half each. */
  #wakeReader(reader: Reader): void {
    this.#checkReaderLiveness(reader);
    if (reader.read !== null && this.#now < reader.read.giveUpAtMs) return;
    if (reader.read !== null) reader.target = reader.random.pick(REPLICAS);
    const isStale = reader.random.chance(0.5);
    const maxStalenessMs = isStale ? reader.random.pick(STALENESS_BOUNDS) : undefined;
    // Stale reads go to a random replica; linearizable ones to the master the reader knows.
    if (isStale || reader.random.chance(0.5)) reader.target = reader.random.pick(REPLICAS);
    const frameId = ++this.#frameId;
    reader.read = {
      frameId,
      maxStalenessMs,
      ackedSlotAtSend: this.#ackedSlot,
      giveUpAtMs: this.#now + 300,
    };
    if (this.#r.chance(this.#clientLossRate)) return;
    this.#queue.push(this.#now + this.#r.range(0.5, 4), {
      type: 'to-replica',
      to: reader.target,
      client: reader.id,
      frame: {
        type: 'query',
        id: frameId,
        query: READ_QUERY,
        ...(maxStalenessMs === undefined ? {} : { maxStalenessMs }),
      },
    });
  }

  /** A replica's answer to a reader, judged at the instant it is sent (stale-read, linearizable-read). */
  #onReadAnswer(node: Node, frame: ServerFrame, reader: Reader, hasLease: boolean): void {
    const read = reader.read;
    if (read === null || !('id' in frame) || read.frameId !== frame.id) return;
    if (frame.type === 'redirect' && read.maxStalenessMs !== undefined)
      this.#staleReadsRedirected++;
    if (frame.type !== 'query-result') return;
    const isServingLeased = node.service?.isServing === true && hasLease;
    if (read.maxStalenessMs !== undefined && !isServingLeased) {
      this.#staleReadsByFollowers++;
      // The bound assumes the replica's clock runs at least 1 - maxDriftRate of real time.
      if (node.clock.rate < 1 - this.#config.maxDriftRate) this.#staleReadsOverDriftBound++;
    }
    this.#checkers.onReadAnswered({
      atMs: this.#now,
      replica: node.id,
      slot: frame.slot,
      answer: JSON.stringify(frame.result),
      stalenessMs: frame.stalenessMs,
      maxStalenessMs: read.maxStalenessMs,
      ackedSlotAtSend: read.ackedSlotAtSend,
      isServingLeased,
      clockRate: node.clock.rate,
    });
  }

  #onReaderFrame(reader: Reader, frame: ServerFrame): void {
    const read = reader.read;
    if (read === null || !('id' in frame) || read.frameId !== frame.id) return;
    if (frame.type === 'redirect') {
      reader.target = this.#targetOf(frame.master) ?? reader.random.pick(REPLICAS);
      reader.read = null;
    } else if (frame.type === 'query-result' || frame.type === 'error') {
      reader.read = null;
      if (frame.type === 'query-result') {
        this.#checkReaderLiveness(reader);
        reader.answeredAtMs = this.#now;
      }
    }
  }

  #resync(client: Client): void {
    if (client.events.sync !== null) this.#resyncs++;
    client.events.sync = null;
    // Told it may have missed events: every event applied so far is accounted for (the client
    // re-reads), and a waiter asks whether its grant was among them.
    this.#onEventsCovered(client, Infinity);
    if (client.phase === 'waiting' || client.phase === 'acquiring') client.needsRecheck = true;
  }

  /**
   * Follows a frame's epoch: 'old' for a late frame of an older master (ignored), 'new' when it
   * starts a newer master's stream (the client is told of a gap), 'same' otherwise.
   */
  #followEpoch(client: Client, epoch: Epoch, eventSeq: number): 'old' | 'new' | 'same' {
    const view = client.events;
    if (view.epoch !== null) {
      const order = compareBallots(epoch, view.epoch);
      if (order < 0) return 'old';
      if (order === 0) return 'same';
    }
    this.#resync(client);
    view.epoch = epoch;
    view.last = eventSeq;
    view.seen = eventSeq;
    return 'new';
  }

  #onEventPush(client: Client, frame: Extract<ServerFrame, { type: 'event' }>): void {
    const view = client.events;
    if (this.#followEpoch(client, frame.epoch, frame.eventSeq) !== 'same') return;
    if (frame.eventSeq <= view.last) {
      this.#checkers.onEventReordered(client.index, frame.session, frame.eventSeq, view.last);
      return;
    }
    view.last = frame.eventSeq;
    // A number skipped: the client knows it missed events (the real client emits event-gap).
    if (frame.eventSeq !== view.seen + 1) this.#resync(client);
    view.seen = frame.eventSeq;
    if (view.sync === null) return;
    const slot = this.#checkers.onEventReceived({
      client: client.index,
      session: frame.session,
      sync: view.sync,
      seq: frame.eventSeq,
      event: frame.event,
    });
    if (slot !== undefined) this.#onEventsCovered(client, slot);
  }

  #onKeepAliveAck(
    client: Client,
    frame: Extract<ServerFrame, { type: 'keep-alive-ack' }>,
    appliedAt: number,
  ): void {
    const view = client.events;
    const epoch = this.#followEpoch(client, frame.epoch, frame.eventSeq);
    if (epoch === 'old') return;
    if (epoch === 'same' && frame.isEventGap) this.#resync(client);
    else if (epoch === 'same' && view.sync !== null)
      this.#checkers.onNoGapAck({
        client: client.index,
        session: this.#keepAliveSession.get(frame.id) ?? -1,
        sync: view.sync,
        ackSeq: frame.eventSeq,
        appliedAt,
        seen: view.seen,
      });
    // In sync from here: events up to the ack's eventSeq cover the log through `appliedAt`.
    if (epoch === 'same' && !frame.isEventGap) this.#onEventsCovered(client, appliedAt);
    view.seen = frame.eventSeq;
    view.sync = { seq: frame.eventSeq, slot: appliedAt };
  }

  /** The client stops holding its session: told it expired, or after its CloseSession. */
  #loseSession(client: Client, why: 'expired' | 'closed'): void {
    if (client.session !== null)
      this.#sessionLost.set(client.session, { atMs: this.#now, isExpiry: why === 'expired' });
    client.session = null;
    client.request = null;
    client.keepAliveId = null;
    client.phase = 'none';
    client.seq = 0;
    client.watchHandle = null;
    client.events = freshEventView();
    client.pendingEvents = [];
    client.needsRecheck = false;
    client.recheck = null;
  }

  #onResult(client: Client, result: CommandResult): void {
    if (result.type === 'session-created') {
      this.#sessionsCreated++;
      client.session = result.session;
      this.#sessionOwner.set(result.session, client.index);
      client.sessionCreatedAtMs = this.#now;
      client.keepAliveAckAtMs = -Infinity;
      client.nextKeepAliveAtMs = this.#now;
      client.phase = 'none';
      client.watchHandle = null;
      client.events = freshEventView();
      client.pendingEvents = [];
      return;
    }
    if (result.type === 'error' && result.code === ErrorCode.SESSION_EXPIRED) {
      this.#loseSession(client, 'expired');
      return;
    }
    const session = client.session;
    if (session === null) return;
    switch (client.phase) {
      case 'watching':
        client.phase = 'none';
        if (result.type === 'opened') client.watchHandle = result.handle;
        return;
      case 'opening':
        if (result.type !== 'opened') {
          client.phase = 'none';
          return;
        }
        client.handle = result.handle;
        if (client.op === 'ephemeral') {
          client.phase = 'holding';
          client.phaseUntilMs = this.#now + client.random.range(50, 600);
          return;
        }
        if (client.op === 'write') {
          this.#onHandle(client, 'writing', {
            type: 'SetContents',
            contents: new TextEncoder().encode(`c${client.index}:${client.seq}`),
          });
          return;
        }
        client.mode = client.random.chance(0.7) ? 'exclusive' : 'shared';
        if (client.path === HEAL_LOCK) client.mode = 'exclusive';
        client.hasEarlyGrant = false;
        client.needsRecheck = false;
        this.#onHandle(client, 'acquiring', {
          type: 'Acquire',
          mode: client.mode,
          wait: client.random.chance(0.5) || client.path === HEAL_LOCK,
        });
        return;
      case 'acquiring':
        if (
          result.type === 'acquired' ||
          (result.type === 'queued' && this.#cellBug === 'queuedIsHeld')
        ) {
          client.phase = 'holding';
          client.phaseUntilMs = this.#now + client.random.range(20, 400);
          // The heal pair's holder keeps the lock until after the heal.
          if (client.path === HEAL_LOCK)
            client.phaseUntilMs = Math.max(
              client.phaseUntilMs,
              this.#safetyMs + client.random.range(100, 1000),
            );
        } else if (result.type === 'queued' && client.hasEarlyGrant) {
          client.phase = 'waiting';
          client.waitSinceMs = this.#now;
          this.#onGrantTold(client, 'push');
        } else if (result.type === 'queued') {
          client.phase = 'waiting';
          client.waitSinceMs = this.#now;
          client.recheck = null;
          client.phaseUntilMs = this.#now + client.random.range(200, 1500);
          // After the heal a waiter waits until it is granted: the bounds say by when. The heal
          // pair's waiter waits so from the start.
          if (this.#phase === 'liveness' || client.path === HEAL_LOCK)
            client.phaseUntilMs = Infinity;
        } else {
          this.#onHandle(client, 'closing', { type: 'Close' });
        }
        return;
      case 'releasing':
      case 'writing':
        this.#onHandle(client, 'closing', { type: 'Close' });
        return;
      case 'closing':
        client.phase = 'none';
        client.phaseUntilMs = this.#now + client.random.range(0, 200);
        return;
      case 'ending':
        // session-closed (or an error: the session is gone either way); a new one comes next.
        this.#loseSession(client, 'closed');
        client.phaseUntilMs = this.#now + client.random.range(0, 200);
        return;
      case 'none':
      case 'waiting':
      case 'holding':
        return;
    }
  }

  /** Client beliefs, ended by a Release/Close/CloseSession sent or by the session's expiry. */
  #checkBeliefs(): void {
    const beliefs: Belief[] = [];
    for (const client of this.#clients) {
      if (client.session === null || this.#expired.has(client.session)) continue;
      if (client.phase !== 'holding' || client.op !== 'lock') continue;
      beliefs.push({
        session: client.session,
        handle: client.handle,
        path: client.path,
        mode: client.mode,
      });
    }
    if (beliefs.length > 1) this.#checkers.onBeliefs(this.#now, beliefs);
  }
}
