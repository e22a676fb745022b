// The Multi-Paxos replica: acceptor, proposer (master) and learner in one synchronous object, in
// the shape of etcd's raft package. Messages and time go in through step/tick/propose; one Ready
// batch at a time comes out (ready.ts says the order the wiring must execute it in), and
// advance() says it was executed. Nothing here reads a clock, draws a random number except from
// the injected Random, or does I/O (DESIGN.md, Multi-Paxos; STYLE.md, Boundaries).
//
// Papers: Lamport, "Paxos Made Simple" (phases 1 and 2, section 3 for Multi-Paxos); Chandra,
// Griesemer and Redstone, "Paxos Made Live" (master leases 5.2, the master writing its own log in
// parallel 5.x, catch-up and snapshots 5.4); Burrows, "The Chubby lock service" (lease on both
// sides, restart wait). docs/consensus.md describes the protocol as built and where it diverges.
//
// Invariants this file keeps (and asserts where cheap):
// - the promise never decreases, and every promise is in Ready.persist before any answer that
//   depends on it goes out in Ready.send;
// - an acceptance is answered only from Ready.send, after Ready.persist made it durable; the
//   master's own acceptance counts as a vote only in advance();
// - the master proposes at most one value per slot in its ballot, and in Phase 1 only the
//   highest-ballot value reported for a slot (a value reported chosen wins outright);
// - a follower marks a slot chosen only if the master's commit covers it AND it accepted it in
//   the master's current ballot, or a peer sent it as chosen (catch-up, promise);
// - Ready.commit hands out chosen values in slot order, contiguous, each exactly once.

import { assert, assertNever } from '@paxlock/shared';
import type { Ballot } from './ballot.ts';
import { compareBallots, formatBallot, isBallotEqual, nextBallot, ZERO_BALLOT } from './ballot.ts';
import type { DurableState } from './durable.ts';
import { LeaseGrant, LeaseRounds, masterLeaseUntil } from './lease.ts';
import type {
  AcceptedEntry,
  Admission,
  ChosenEntry,
  Command,
  Envelope,
  Message,
  SlotValue,
} from './messages.ts';
import type { Config, Logger, Random, ReplicaId } from './ports.ts';
import { Membership } from './quorum.ts';
import type { PersistBatch, Ready, Status } from './ready.ts';
import { commandKey, SlotLog } from './slots.ts';

export interface ReplicaOptions {
  readonly config: Config;
  readonly random: Random;
  readonly logger: Logger;
  readonly durable: DurableState;
  /** Local monotonic time at start. */
  readonly now: number;
  /**
   * The slot the state machine has applied through at start (from state.db). Chosen entries
   * above it are handed out again in Ready.commit so the machine replays them.
   */
  readonly applied: number;
  /**
   * This replica's disk (paxos.db's disk id): 0, the default, for a founding disk; a random id
   * for a replacement disk, which is a learner until the log admits it (docs/consensus.md,
   * Replacing a disk).
   */
  readonly diskId?: number;
}

export type ProposeResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly reason: 'not-master' | 'duplicate';
      readonly masterId: ReplicaId | null;
    };

type Role = Status['role'];

/** One value the master has proposed and not yet seen chosen. */
interface Proposal {
  readonly value: SlotValue;
  /** Vote set (quorum.ts bitmask) of acceptors that accepted it in the master's ballot. */
  votes: number;
  /** When the Accepts last went out, for retransmission on the heartbeat. */
  sentAtMs: number;
}

/** What Phase 1 has gathered so far for one slot. */
interface Reported {
  ballot: Ballot;
  value: SlotValue;
  isChosen: boolean;
}

interface Candidacy {
  readonly ballot: Ballot;
  readonly slotFirst: number;
  /** When the Prepares last went out, for retransmission to peers that have not promised. */
  sentAtMs: number;
  votes: number;
  readonly reported: Map<number, Reported>;
  /** The highest chosen prefix any promiser reported (catch-up fetches up to it). */
  maxCommit: number;
}

interface CatchUpInFlight {
  readonly to: ReplicaId;
  readonly sentAtMs: number;
}

/**
 * Most chosen entries handed out in one Ready.commit: a replay of a long log after a restart is
 * split over several Readies (hasReady stays true), so no single turn applies without bound.
 */
export const MAX_COMMIT_PER_READY = 4096;

const EMPTY_PERSIST: PersistBatch = {
  promised: null,
  accepted: [],
  chosen: [],
  commit: null,
  compactBelow: null,
  admitted: [],
};

export class Replica {
  readonly #config: Config;
  readonly #random: Random;
  readonly #logger: Logger;
  readonly #membership: Membership;
  readonly #id: ReplicaId;
  readonly #peers: readonly ReplicaId[];
  readonly #log: SlotLog;
  /** This replica's disk; its votes count only where the seat is this disk's. */
  readonly #diskId: number;
  /** Every admission known chosen, in slot order: who holds each seat from which slot on. */
  readonly #admitted: Admission[] = [];
  /** The slot of the admission this master proposed and has not yet seen chosen, if any. */
  #admittingSlot: number | null = null;

  #nowMs: number;
  #promised: Ballot;
  /** The highest ballot heard of anywhere (rejections included); the next candidacy beats it. */
  #highestSeen: Ballot;
  #role: Role = 'follower';
  #masterId: ReplicaId | null = null;

  // Acceptor side of the lease, and the restart wait.
  readonly #grant = new LeaseGrant();
  readonly #restartWaitUntilMs: number;

  // Election timer: a follower or candidate runs for master at this local time.
  #electionDeadlineMs: number;
  #jitterMs: number;
  #candidacy: Candidacy | null = null;

  // Master state (meaningful only while #role === 'master').
  #nextSlot = 1;
  readonly #inFlight = new Map<number, Proposal>();
  #queue: Command[] = [];
  #queueHead = 0;
  readonly #pendingIds = new Set<string>();
  /** The slot of the no-op this master proposed in its own ballot; reads wait until it is applied. */
  #barrierSlot = Number.POSITIVE_INFINITY;
  #rounds: LeaseRounds;
  #leaseUntilMs: number | null = null;
  /** When the lease last ran out (or mastership began, before the first lease). */
  #leaseLapsedAtMs = 0;
  #nextHeartbeatMs = 0;

  // Learning and catch-up.
  #wantCommit = 0;
  /**
   * The state machine's time as the wiring last reported it (noteMachineTime), and what this
   * master adds to its clock to stamp entries: enough that stamps go on from the machine's time
   * when this clock is behind it (docs/state-machine.md, rule 2), 0 when it is not.
   */
  #machineTimeMs = Number.NEGATIVE_INFINITY;
  #stampOffsetMs = 0;
  /** The master's chosen prefix at its last advance, and when that was (#tickMaster). */
  #progressCommit = 0;
  #progressAtMs = 0;
  readonly #peerCommit = new Map<ReplicaId, number>();
  /** When each peer last acked this master (Accepted, heartbeat ack): a resign's successor is live. */
  readonly #peerAckedAtMs = new Map<ReplicaId, number>();
  /**
   * Since when each peer has acked without a gap of an election timeout: one that has for a whole
   * lease is past any restart wait, so as a resign's successor it can run at once.
   */
  readonly #peerAckedSinceMs = new Map<ReplicaId, number>();
  /** When each peer's restart wait ends, as its last heartbeat ack said (it may run from then). */
  readonly #peerMayRunAtMs = new Map<ReplicaId, number>();
  #catchUp: CatchUpInFlight | null = null;
  #catchUpRotation = 0;
  /** When each peer's last message arrived (local time): catch-up asks live peers first. */
  readonly #peerHeardAtMs = new Map<ReplicaId, number>();
  /** The peer whose last catch-up reply helped: asked first for the next batch. */
  #catchUpServedBy: ReplicaId | null = null;
  #snapshotWaitUntilMs = Number.NEGATIVE_INFINITY;
  #snapshotSlot = 0;

  // Application.
  #applied: number;
  /** Highest slot handed out in a Ready.commit. */
  #handedOut: number;

  // What the next Ready carries.
  #sendEarly: Envelope[] = [];
  #send: Envelope[] = [];
  #persistPromised: Ballot | null = null;
  #persistAccepted: AcceptedEntry[] = [];
  #persistChosen: ChosenEntry[] = [];
  #persistedCommit: number;
  #persistCompactBelow: number | null = null;
  #persistAdmitted: Admission[] = [];
  #snapshotFor: { readonly to: ReplicaId; readonly slot: number }[] = [];
  #needSnapshot: { readonly from: ReplicaId; readonly slotAtLeast: number } | null = null;

  constructor(options: ReplicaOptions) {
    const { config, durable, now } = options;
    assert(config.replicas.includes(config.id), 'config.id is not one of config.replicas');
    assert(
      config.windowSlots >= 1 && config.maxBatchCommands >= 1,
      'window and batch must be >= 1',
    );
    assert(config.catchUpBatchSlots >= 1, 'catchUpBatchSlots must be >= 1');
    assert(
      config.leaseMs > 0 && config.heartbeatMs > 0 && config.electionTimeoutMs > 0,
      'timeouts must be > 0',
    );
    this.#config = config;
    this.#random = options.random;
    this.#logger = options.logger;
    this.#membership = new Membership(config.replicas);
    this.#id = config.id;
    this.#peers = config.replicas.filter((r) => r !== config.id);
    this.#log = new SlotLog(durable);
    this.#diskId = options.diskId ?? 0;
    for (const admission of durable.admitted) this.#noteAdmission(admission, false);
    for (const entry of durable.entries) {
      if (entry.isChosen) this.#noteChosen(entry.slot, entry.value);
    }
    this.#nowMs = now;
    this.#promised = durable.promised;
    this.#highestSeen = durable.promised;
    this.#rounds = new LeaseRounds(this.#membership);
    this.#persistedCommit = durable.commit;
    // A restarted acceptor may have granted a lease it no longer remembers: it promises nobody
    // (itself included) until one lease has passed (Chubby 2.9, Paxos Made Live 5.2). So may the
    // disk a replacement disk replaces, however fresh the replacement is.
    const mayOweLease = !durable.isFresh || this.#diskId !== 0;
    this.#restartWaitUntilMs = mayOweLease ? now + config.leaseMs : Number.NEGATIVE_INFINITY;
    if (options.applied > this.#log.commit) {
      // The state machine installed a snapshot and crashed before the core persisted it: finish
      // the job, compaction point included (every slot <= commit must be chosen or compacted).
      this.#log.installSnapshot(options.applied);
      this.#persistCompactBelow = this.#log.compactedBelow;
    }
    this.#applied = options.applied;
    this.#handedOut = options.applied;
    this.#wantCommit = this.#log.commit;
    // Startup stagger: the lowest id runs first, the others one step later each, so one master
    // emerges without a duel; a restarted replica first waits out its restart wait.
    const staggerMs = Math.max(
      config.heartbeatMs,
      Math.floor(config.electionTimeoutMs / config.replicas.length),
    );
    const waitMs = mayOweLease ? config.leaseMs : 0;
    this.#jitterMs = this.#drawJitter();
    this.#electionDeadlineMs = now + waitMs + this.#membership.rankOf(config.id) * staggerMs;
    this.#logger.info(
      {
        replica: this.#id,
        promised: formatBallot(this.#promised),
        commit: this.#log.commit,
        isFresh: durable.isFresh,
        diskId: this.#diskId,
        isVoter: this.#isVoter(),
      },
      'replica started',
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Public API

  /** Handle one validated message from a peer at local time `now`. */
  step(from: ReplicaId, message: Message, now: number): void {
    this.#observeTime(now);
    if (from === this.#id || !this.#membership.isMember(from)) {
      this.#logger.warn(
        { replica: this.#id, from, type: message.type },
        'message from a non-peer dropped',
      );
      return;
    }
    this.#peerHeardAtMs.set(from, now);
    switch (message.type) {
      case 'prepare':
        this.#onPrepare(from, message);
        break;
      case 'promise':
        this.#onPromise(from, message);
        break;
      case 'reject':
        this.#onReject(from, message);
        break;
      case 'accept':
        this.#onAccept(from, message);
        break;
      case 'accepted':
        this.#onAccepted(from, message);
        break;
      case 'heartbeat':
        this.#onHeartbeat(from, message);
        break;
      case 'heartbeat-ack':
        this.#onHeartbeatAck(from, message);
        break;
      case 'resign':
        this.#onResign(from, message);
        break;
      case 'withdraw':
        this.#onWithdraw(from, message);
        break;
      case 'catch-up-request':
        this.#onCatchUpRequest(from, message);
        break;
      case 'catch-up':
        this.#onCatchUp(from, message);
        break;
      default:
        assertNever(message, 'unknown message type');
    }
  }

  /** Advance local time: heartbeats, election timeouts, lease expiry, catch-up retries. */
  tick(now: number): void {
    this.#observeTime(now);
    if (this.#role === 'master') {
      this.#tickMaster(now);
    } else if (now >= this.#candidacyDeadlineMs()) {
      this.#startCandidacy(now);
    } else if (this.#candidacy !== null) {
      this.#resendPrepares(now);
    }
    this.#maybeCatchUp(now);
  }

  /** Master only: queue a command for the next slot (batched with others in flight). */
  propose(command: Command, now: number): ProposeResult {
    this.#observeTime(now);
    if (this.#role !== 'master')
      return { ok: false, reason: 'not-master', masterId: this.#masterId };
    const key = commandKey(command);
    if (this.#pendingIds.has(key)) return { ok: false, reason: 'duplicate', masterId: this.#id };
    this.#pendingIds.add(key);
    this.#queue.push(command);
    return { ok: true };
  }

  /**
   * A graceful stop of the master (Chubby's master may step down; etcd transfers leadership on
   * shutdown): stop serving at once, tell every acceptor to drop the lease granted to us, and
   * name the most up-to-date peer as successor so it runs for master without waiting out that
   * lease and an election timeout. Returns the successor, or null if this replica is not master.
   * Anything in flight is left to the successor's Phase 1, like a crash would.
   */
  resign(now: number): ReplicaId | null {
    this.#observeTime(now);
    if (this.#role !== 'master') return null;
    const ballot = this.#promised;
    // Prefer peers that acked us within an election timeout (a dead successor costs the cell an
    // election timeout), then those whose restart wait is over or ends soonest (a peer that
    // restarted lately may not run yet, and meanwhile the others give it only an election
    // timeout), then the highest commit heard of, then the first. The wait is what the peer's
    // last heartbeat ack said; failing that, a peer that has acked without a gap for a whole
    // lease is past any restart wait.
    const rank = (peer: ReplicaId): number[] => {
      const ackedAt = this.#peerAckedAtMs.get(peer) ?? Number.NEGATIVE_INFINITY;
      const since = this.#peerAckedSinceMs.get(peer) ?? Number.POSITIVE_INFINITY;
      const mayRunAt = this.#peerMayRunAtMs.get(peer) ?? since + this.#config.leaseMs;
      return [
        now - ackedAt <= this.#config.electionTimeoutMs ? 1 : 0,
        -Math.max(0, mayRunAt - now),
        this.#peerCommit.get(peer) ?? 0,
      ];
    };
    const isBetter = (a: number[], b: number[]): boolean => {
      for (let k = 0; k < a.length; k++) {
        const x = a[k] ?? 0;
        const y = b[k] ?? 0;
        if (x !== y) return x > y;
      }
      return false;
    };
    let successor = this.#peers[0];
    assert(successor !== undefined, 'a master with no peers cannot resign');
    for (const peer of this.#peers) if (isBetter(rank(peer), rank(successor))) successor = peer;
    for (const peer of this.#peers) this.#queueSend(peer, { type: 'resign', ballot, successor });
    this.#logger.info(
      { replica: this.#id, ballot: formatBallot(ballot), successor },
      'master resigning',
    );
    if (this.#config.bugs?.serveAfterResign === true) {
      // The planted bug: stop renewing the lease, but keep it and keep serving on it.
      this.#nextHeartbeatMs = Number.POSITIVE_INFINITY;
      return successor;
    }
    this.#stepDown('resigned');
    // Our own acceptor granted us the lease too (#startRound): it would refuse the successor.
    this.#grant.release(this.#id);
    return successor;
  }

  /** True if ready() has anything to do. */
  hasReady(): boolean {
    this.#flushProposals();
    return (
      this.#sendEarly.length > 0 ||
      this.#send.length > 0 ||
      this.#persistPromised !== null ||
      this.#persistAccepted.length > 0 ||
      this.#persistChosen.length > 0 ||
      this.#log.commit !== this.#persistedCommit ||
      this.#persistCompactBelow !== null ||
      this.#persistAdmitted.length > 0 ||
      this.#canHandOut() ||
      this.#snapshotFor.length > 0 ||
      this.#needSnapshot !== null
    );
  }

  ready(): Ready {
    this.#flushProposals();
    const commit: ChosenEntry[] = [];
    if (this.#handedOut + 1 < this.#log.compactedBelow && this.#log.commit > this.#handedOut) {
      // The state machine is behind our own compaction point: only a snapshot can help.
      this.#requestSnapshot(
        this.#masterId ?? this.#peers[0] ?? this.#id,
        this.#log.compactedBelow - 1,
      );
    }
    if (this.#canHandOut()) {
      const last = Math.min(this.#log.commit, this.#handedOut + MAX_COMMIT_PER_READY);
      for (let slot = this.#handedOut + 1; slot <= last; slot++) {
        const value = this.#log.chosenValue(slot);
        assert(value !== undefined, `slot ${slot} <= commit has no chosen value`);
        commit.push({ slot, value });
      }
      this.#handedOut = last;
    }
    const commitChanged = this.#log.commit !== this.#persistedCommit;
    const persist: PersistBatch =
      this.#persistPromised === null &&
      this.#persistAccepted.length === 0 &&
      this.#persistChosen.length === 0 &&
      !commitChanged &&
      this.#persistCompactBelow === null &&
      this.#persistAdmitted.length === 0
        ? EMPTY_PERSIST
        : {
            promised: this.#persistPromised,
            accepted: this.#persistAccepted,
            chosen: this.#persistChosen,
            commit: commitChanged ? this.#log.commit : null,
            compactBelow: this.#persistCompactBelow,
            admitted: this.#persistAdmitted,
          };
    const ready: Ready = {
      sendEarly: this.#sendEarly,
      persist,
      send: this.#send,
      commit,
      snapshotFor: this.#snapshotFor,
      needSnapshot: this.#needSnapshot,
      status: this.status(this.#nowMs),
    };
    this.#persistedCommit = this.#log.commit;
    this.#sendEarly = [];
    this.#send = [];
    this.#persistPromised = null;
    this.#persistAccepted = [];
    this.#persistChosen = [];
    this.#persistCompactBelow = null;
    this.#persistAdmitted = [];
    this.#snapshotFor = [];
    this.#needSnapshot = null;
    return ready;
  }

  /** The wiring did everything `ready` asked (persisted, sent, applied). */
  advance(ready: Ready, now: number): void {
    this.#observeTime(now);
    const last = ready.commit[ready.commit.length - 1];
    if (last !== undefined && last.slot > this.#applied) this.#applied = last.slot;
    // The master's own acceptances are durable now: only now do they count as votes.
    if (this.#role === 'master') {
      for (const entry of ready.persist.accepted) {
        if (!isBallotEqual(entry.ballot, this.#promised)) continue;
        if (this.#seatAt(this.#id, entry.slot) !== this.#claimedDisk(entry.slot)) continue;
        this.#vote(entry.slot, this.#id);
      }
    }
    // Likewise a candidate's promise to itself.
    const candidacy = this.#candidacy;
    const promised = ready.persist.promised;
    if (candidacy !== null && promised !== null && isBallotEqual(promised, candidacy.ballot)) {
      if (this.#claimedDisk(candidacy.slotFirst) === this.#seatAt(this.#id, candidacy.slotFirst))
        candidacy.votes = this.#membership.addVote(candidacy.votes, this.#id);
      this.#checkElected(now);
    }
  }

  /**
   * The wiring's report of the state machine's time (the largest stamp applied, or a snapshot's).
   * A master whose clock is behind it stamps on from there: otherwise time, and every lock-delay
   * with it, would stand still until this clock caught up with the previous master's.
   */
  noteMachineTime(ms: number): void {
    if (ms <= this.#machineTimeMs) return;
    this.#machineTimeMs = ms;
    if (this.#role === 'master') this.#raiseStampOffset(this.#nowMs);
  }

  /** The stamp an entry proposed at `now` gets (the state machine's time for it, at least). */
  stampNow(now: number): number {
    return now + this.#stampOffsetMs;
  }

  #raiseStampOffset(now: number): void {
    const behind = this.#machineTimeMs - now;
    if (behind > this.#stampOffsetMs) this.#stampOffsetMs = behind;
  }

  /** True if this replica is master, holds a valid lease at `now`, and has applied its own ballot's no-op. */
  canServeReads(now: number): boolean {
    if (this.#role !== 'master' || this.#applied < this.#barrierSlot) return false;
    if (this.#config.bugs?.ignoreLeaseForReads === true) return true;
    return this.#leaseUntilMs !== null && now < this.#leaseUntilMs;
  }

  status(_now: number): Status {
    return {
      id: this.#id,
      role: this.#role,
      ballot: this.#promised,
      masterId: this.#masterId,
      leaseUntil: this.#role === 'master' ? this.#leaseUntilMs : null,
      commit: this.#log.commit,
      applied: this.#applied,
      isVoter: this.#isVoter(),
      diskId: this.#diskId,
    };
  }

  /** Every admission known chosen, in slot order (a snapshot sent to a peer carries these). */
  admitted(): readonly Admission[] {
    return this.#admitted.map((a) => ({ ...a }));
  }

  /** The state machine took a snapshot covering every slot <= slot; the core may compact below it. */
  snapshotTaken(slot: number): void {
    assert(slot <= this.#applied, 'snapshot above the applied slot');
    if (slot > this.#snapshotSlot) this.#snapshotSlot = slot;
    // Keep a tail of chosen entries behind the snapshot so a slightly lagging peer catches up
    // from the log instead of needing the whole snapshot.
    const below = slot + 1 - this.#config.catchUpBatchSlots;
    if (below > this.#log.compactedBelow && this.#log.compactBelow(below)) {
      this.#persistCompactBelow = below;
    }
  }

  /**
   * A snapshot through `slot` was installed into the state machine from a peer; `admitted` is
   * the sender's admissions (those at or below `slot` are taken: the log tail brings the rest).
   */
  installSnapshot(slot: number, now: number, admitted: readonly Admission[] = []): void {
    this.#observeTime(now);
    if (slot <= this.#applied) return;
    for (const admission of admitted) {
      if (admission.slot <= slot) this.#noteAdmission(admission, true);
    }
    this.#log.installSnapshot(slot);
    this.#applied = slot;
    if (slot > this.#handedOut) this.#handedOut = slot;
    if (slot > this.#snapshotSlot) this.#snapshotSlot = slot;
    this.#persistCompactBelow = this.#log.compactedBelow;
    this.#snapshotWaitUntilMs = Number.NEGATIVE_INFINITY;
    this.#catchUp = null;
    this.#logger.info({ replica: this.#id, slot }, 'snapshot installed');
    this.#maybeCatchUp(now);
  }

  // ---------------------------------------------------------------------------------------------
  // Acceptor

  #onPrepare(from: ReplicaId, message: Extract<Message, { type: 'prepare' }>): void {
    // A learner promises nothing: its promise would not count, and it may not yet hold the
    // promises of the disk it replaces.
    if (!this.#isVoter()) return;
    const now = this.#nowMs;
    const order = compareBallots(message.ballot, this.#promised);
    if (order < 0) {
      this.#reject(from, message.ballot, 'stale-ballot');
      return;
    }
    if (now < this.#restartWaitUntilMs) {
      this.#reject(from, message.ballot, 'restart-wait');
      return;
    }
    if (
      this.#config.bugs?.skipLeaseCheckInPrepare !== true &&
      this.#grant.isHeldAgainst(from, now)
    ) {
      this.#reject(from, message.ballot, 'lease-held');
      return;
    }
    if (order > 0) {
      this.#raisePromise(message.ballot);
      this.#masterId = null;
      // Give the candidate a full election timeout to finish before running ourselves.
      this.#resetElectionTimer(now, true);
    }
    this.#grant.grant(from, now, this.#config.leaseMs);
    const { accepted, chosen } = this.#reportFrom(message.slotFirst);
    this.#answer(from, {
      type: 'promise',
      ballot: message.ballot,
      slotFirst: message.slotFirst,
      accepted,
      chosen,
      commit: this.#log.commit,
      diskId: this.#claimedDisk(message.slotFirst),
    });
  }

  /** What a promise reports from `slotFirst` on: bounded chosen prefix, then the whole tail. */
  #reportFrom(slotFirst: number): { accepted: AcceptedEntry[]; chosen: ChosenEntry[] } {
    const accepted: AcceptedEntry[] = [];
    const chosen: ChosenEntry[] = [];
    const start = Math.max(slotFirst, this.#log.compactedBelow);
    // Chosen slots the candidate lacks: a bounded courtesy (it learns the rest by catch-up, as
    // our `commit` in the promise tells it they are chosen).
    for (
      let slot = start;
      slot <= this.#log.commit && chosen.length < this.#config.catchUpBatchSlots;
      slot++
    ) {
      const value = this.#log.chosenValue(slot);
      if (value !== undefined) chosen.push({ slot, value });
    }
    // Every entry above our chosen prefix: these are what Phase 1 must not lose.
    const tailFirst = Math.max(start, this.#log.commit + 1);
    const tailLast = this.#log.highestSlot;
    const report = (slot: number): void => {
      const entry = this.#log.get(slot);
      if (entry === undefined) return;
      if (entry.isChosen) chosen.push({ slot, value: entry.value });
      else accepted.push({ slot, ballot: entry.ballot, value: entry.value });
    };
    if (tailLast - tailFirst < this.#log.entryCount * 2) {
      for (let slot = tailFirst; slot <= tailLast; slot++) report(slot);
    } else {
      // A sparse tail (a far-ahead acceptance after a long absence): walk entries, not slots.
      this.#log
        .slotsAtOrAbove(tailFirst)
        .sort((a, b) => a - b)
        .forEach(report);
    }
    return { accepted, chosen };
  }

  #onAccept(from: ReplicaId, message: Extract<Message, { type: 'accept' }>): void {
    if (!this.#isVoterAt(message.slot)) {
      this.#learnFromAccept(from, message);
      return;
    }
    const order = compareBallots(message.ballot, this.#promised);
    if (order < 0) {
      this.#rejectStaleMaster(from, message.ballot);
      return;
    }
    if (order > 0) this.#raisePromise(message.ballot);
    this.#recognizeMaster(message.ballot.replica);
    if (this.#log.isChosen(message.slot)) {
      // Already chosen here (possibly compacted away): we did not accept in this ballot, so an
      // Accepted would be a false vote, and the chosen value may even differ from a stale
      // master's proposal. Tell the master what is chosen instead.
      this.#answerChosen(from, message.slot);
      this.#learnCommit(from, message.commit, message.ballot);
      return;
    }
    const existing = this.#log.get(message.slot);
    const isSame = existing !== undefined && isBallotEqual(existing.ballot, message.ballot);
    if (!isSame) {
      const isAccepted = this.#log.accept(message.slot, message.ballot, message.value);
      assert(isAccepted, 'accept refused at a slot not chosen');
      this.#persistAccepted.push({
        slot: message.slot,
        ballot: message.ballot,
        value: message.value,
      });
    }
    this.#answer(from, {
      type: 'accepted',
      ballot: message.ballot,
      slot: message.slot,
      round: message.round,
      diskId: this.#claimedDisk(message.slot),
    });
    this.#learnCommit(from, message.commit, message.ballot);
  }

  /**
   * A learner (no seat at this slot) keeps the master's value without voting for it: when the
   * master's commit covers the slot it is the chosen value (#learnCommit's rule), and it spares a
   * catch-up round trip. No answer: an Accepted from this disk would not count.
   */
  #learnFromAccept(from: ReplicaId, message: Extract<Message, { type: 'accept' }>): void {
    const order = compareBallots(message.ballot, this.#promised);
    if (order < 0) return;
    if (order > 0) this.#raisePromise(message.ballot);
    this.#recognizeMaster(message.ballot.replica);
    if (!this.#log.isChosen(message.slot)) {
      const existing = this.#log.get(message.slot);
      if (existing === undefined || !isBallotEqual(existing.ballot, message.ballot)) {
        this.#log.accept(message.slot, message.ballot, message.value);
        this.#persistAccepted.push({
          slot: message.slot,
          ballot: message.ballot,
          value: message.value,
        });
      }
    }
    this.#learnCommit(from, message.commit, message.ballot);
  }

  /** A catch-up carrying the chosen value at `slot` (none if compacted: the asker learns that). */
  #answerChosen(to: ReplicaId, slot: number): void {
    const value = this.#log.chosenValue(slot);
    this.#queueSend(to, {
      type: 'catch-up',
      entries: value === undefined ? [] : [{ slot, value }],
      commit: this.#log.commit,
      compactedBelow: this.#log.compactedBelow,
    });
  }

  #onHeartbeat(from: ReplicaId, message: Extract<Message, { type: 'heartbeat' }>): void {
    const order = compareBallots(message.ballot, this.#promised);
    if (order < 0) {
      this.#rejectStaleMaster(from, message.ballot);
      return;
    }
    if (order > 0) this.#raisePromise(message.ballot);
    this.#recognizeMaster(message.ballot.replica);
    this.#learnCommit(from, message.commit, message.ballot);
    this.#queueSend(from, {
      type: 'heartbeat-ack',
      ballot: message.ballot,
      round: message.round,
      commit: this.#log.commit,
      diskId: this.#claimedDisk(this.#log.commit + 1),
      restartWaitMs: Math.max(0, Math.ceil(this.#restartWaitUntilMs - this.#nowMs)),
    });
  }

  /**
   * The master of our promised ballot resigned: it serves no more, so the lease we granted it
   * protects nothing. Drop it; the successor runs at once, everyone else gives it a full election
   * timeout. A resign from any other ballot is stale (or from a master we never followed).
   */
  #onResign(from: ReplicaId, message: Extract<Message, { type: 'resign' }>): void {
    if (!isBallotEqual(message.ballot, this.#promised) || message.ballot.replica !== from) return;
    this.#grant.release(from);
    if (this.#masterId === from) this.#masterId = null;
    if (this.#role !== 'follower') return;
    if (message.successor !== this.#id || !this.#isVoter()) {
      this.#resetElectionTimer(this.#nowMs, true);
      return;
    }
    this.#logger.info({ replica: this.#id, from }, 'master resigned: taking over');
    if (this.#nowMs >= this.#restartWaitUntilMs) {
      this.#startCandidacy(this.#nowMs);
      return;
    }
    // Still in our restart wait: run the moment it ends (#candidacyDeadlineMs), not a timeout later.
    this.#electionDeadlineMs = this.#nowMs;
  }

  /**
   * The candidate of our promised ballot gave it up: the lease granted with our promise protects
   * nothing (leases for reads come from the rounds a master starts, never from promises), and
   * would refuse every other candidate until it ran out, so failed candidacies chain. Drop it. A
   * withdrawal of any other ballot is stale: a later promise's grant is not its to drop.
   */
  #onWithdraw(from: ReplicaId, message: Extract<Message, { type: 'withdraw' }>): void {
    if (!isBallotEqual(message.ballot, this.#promised) || message.ballot.replica !== from) return;
    this.#grant.release(from);
  }

  #onCatchUpRequest(
    from: ReplicaId,
    message: Extract<Message, { type: 'catch-up-request' }>,
  ): void {
    if (message.slotFirst < this.#log.compactedBelow) {
      const slot = Math.max(this.#snapshotSlot, this.#log.compactedBelow - 1);
      if (!this.#snapshotFor.some((s) => s.to === from)) this.#snapshotFor.push({ to: from, slot });
    }
    const entries: ChosenEntry[] = [];
    const last = Math.min(message.slotLast, this.#log.commit);
    for (let slot = Math.max(message.slotFirst, this.#log.compactedBelow); slot <= last; slot++) {
      if (entries.length >= this.#config.catchUpBatchSlots) break;
      const value = this.#log.chosenValue(slot);
      assert(value !== undefined, `slot ${slot} <= commit has no chosen value`);
      entries.push({ slot, value });
    }
    this.#queueSend(from, {
      type: 'catch-up',
      entries,
      commit: this.#log.commit,
      compactedBelow: this.#log.compactedBelow,
    });
  }

  #raisePromise(ballot: Ballot): void {
    assert(compareBallots(ballot, this.#promised) > 0, 'promise would not rise');
    this.#promised = ballot;
    this.#persistPromised = ballot;
    if (compareBallots(ballot, this.#highestSeen) > 0) this.#highestSeen = ballot;
    if (this.#role !== 'follower' && ballot.replica !== this.#id) this.#stepDown('higher ballot');
  }

  /** A message from the master of our promised ballot: it is alive, and we ack it (lease grant). */
  #recognizeMaster(masterId: ReplicaId): void {
    if (this.#role !== 'follower') this.#stepDown('another master');
    if (this.#masterId !== masterId) {
      this.#logger.info(
        { replica: this.#id, masterId, ballot: formatBallot(this.#promised) },
        'following master',
      );
    }
    this.#masterId = masterId;
    this.#resetElectionTimer(this.#nowMs, false);
    this.#grant.grant(masterId, this.#nowMs, this.#config.leaseMs);
  }

  /**
   * A master of a ballot below our promise is alive. We must refuse it (our promise stands), but
   * we hold off running ourselves: if it holds a lease it re-asserts above our promise when it
   * sees this refusal; if it cannot get a majority it steps down within an election timeout, and
   * its heartbeats stop.
   */
  #rejectStaleMaster(from: ReplicaId, ballot: Ballot): void {
    this.#reject(from, ballot, 'stale-ballot');
    if (this.#role !== 'master') this.#resetElectionTimer(this.#nowMs, false);
  }

  #reject(
    to: ReplicaId,
    ballot: Ballot,
    reason: 'stale-ballot' | 'lease-held' | 'restart-wait',
  ): void {
    this.#queueSend(to, { type: 'reject', ballot, promised: this.#promised, reason });
  }

  // ---------------------------------------------------------------------------------------------
  // Learner

  /**
   * The master of `ballot` says every slot <= commit is chosen. We trust our own acceptance at
   * such a slot only if it was made in that same ballot (the master proposes one value per slot
   * per ballot, so it is the chosen one); anything else we fetch.
   */
  #learnCommit(from: ReplicaId, commit: number, ballot: Ballot): void {
    this.#notePeerCommit(from, commit);
    const trustAny = this.#config.bugs?.trustOldBallotAsChosen === true;
    for (let slot = this.#log.commit + 1; slot <= commit; slot++) {
      const entry = this.#log.get(slot);
      if (entry === undefined) break;
      if (entry.isChosen) continue;
      if (!trustAny && !isBallotEqual(entry.ballot, ballot)) break;
      this.#learnChosen(slot, entry.value);
    }
    this.#log.advanceCommit();
    this.#maybeCatchUp(this.#nowMs);
  }

  #learnChosen(slot: number, value: SlotValue): void {
    if (this.#log.markChosen(slot, value)) this.#persistChosen.push({ slot, value });
    this.#noteChosen(slot, value);
    const proposal = this.#inFlight.get(slot);
    if (proposal !== undefined) this.#retire(slot, proposal);
  }

  #notePeerCommit(from: ReplicaId, commit: number): void {
    if (commit > (this.#peerCommit.get(from) ?? 0)) this.#peerCommit.set(from, commit);
    if (commit > this.#wantCommit) this.#wantCommit = commit;
  }

  #onCatchUp(from: ReplicaId, message: Extract<Message, { type: 'catch-up' }>): void {
    // The reply states the peer's chosen prefix as it is now: it may be lower than what we heard
    // before (a master's commit that was not yet durable when it crashed).
    this.#peerCommit.set(from, message.commit);
    if (message.commit > this.#wantCommit) this.#wantCommit = message.commit;
    const before = this.#log.commit;
    for (const entry of message.entries) this.#learnChosen(entry.slot, entry.value);
    this.#log.advanceCommit();
    // Only a reply that helped clears the request; otherwise the retry waits its turn and goes
    // to another peer, so two replicas never ping-pong requests and empty replies.
    if (this.#catchUp?.to === from && this.#log.commit > before) {
      this.#catchUp = null;
      this.#catchUpServedBy = from;
    }
    if (message.compactedBelow > this.#log.commit + 1) {
      this.#requestSnapshot(from, message.compactedBelow - 1);
      return;
    }
    this.#maybeCatchUp(this.#nowMs);
  }

  #requestSnapshot(from: ReplicaId, slotAtLeast: number): void {
    if (this.#nowMs < this.#snapshotWaitUntilMs) return;
    this.#needSnapshot = { from, slotAtLeast };
    // Stop asking for log entries that are gone until the snapshot arrives (or this wait ends).
    this.#snapshotWaitUntilMs = this.#nowMs + this.#config.electionTimeoutMs;
    this.#logger.info(
      { replica: this.#id, from, slotAtLeast },
      'behind the compaction point: need snapshot',
    );
  }

  /** Ask a peer for missing chosen values, one request in flight, retried on tick. */
  #maybeCatchUp(now: number): void {
    if (this.#log.commit >= this.#wantCommit) {
      this.#catchUp = null;
      return;
    }
    if (now < this.#snapshotWaitUntilMs) return;
    const retryMs = this.#config.heartbeatMs * 2;
    const previous = this.#catchUp;
    if (previous !== null && now - previous.sentAtMs < retryMs) return;
    const to = this.#catchUpTarget(previous?.to ?? null);
    if (to === null) return;
    const slotFirst = this.#log.commit + 1;
    const slotLast = Math.min(this.#wantCommit, this.#log.commit + this.#config.catchUpBatchSlots);
    this.#queueSend(to, { type: 'catch-up-request', slotFirst, slotLast });
    this.#catchUp = { to, sentAtMs: now };
  }

  /**
   * The peer that answered the last request, while it is ahead of us; else the master if it is
   * ahead; else (or after a failed try) the peers that are, in turn, those heard from within an
   * election timeout first. "Ahead" goes by the commit each peer last reported, which a peer that
   * has gone down keeps, and asking it costs a retry wait: found by the cell simulator with two
   * replicas down past the heal, where a new master 113 slots behind caught up at two slots a
   * retry wait and served only after 9 s.
   */
  #catchUpTarget(failed: ReplicaId | null): ReplicaId | null {
    const commit = this.#log.commit;
    const served = this.#catchUpServedBy;
    if (served !== null && served === failed) this.#catchUpServedBy = null;
    else if (failed === null && served !== null && (this.#peerCommit.get(served) ?? 0) > commit)
      return served;
    const master = this.#masterId;
    if (
      failed === null &&
      master !== null &&
      master !== this.#id &&
      (this.#peerCommit.get(master) ?? 0) > commit
    ) {
      return master;
    }
    const ahead = this.#peers.filter(
      (p) => (this.#peerCommit.get(p) ?? 0) > commit && p !== failed,
    );
    if (ahead.length === 0) return failed;
    const lately = ahead.filter(
      (p) =>
        this.#nowMs - (this.#peerHeardAtMs.get(p) ?? Number.NEGATIVE_INFINITY) <=
        this.#config.electionTimeoutMs,
    );
    const pool = lately.length > 0 ? lately : ahead;
    this.#catchUpRotation = (this.#catchUpRotation + 1) % pool.length;
    return pool[this.#catchUpRotation] ?? null;
  }

  #canHandOut(): boolean {
    return this.#log.commit > this.#handedOut && this.#handedOut + 1 >= this.#log.compactedBelow;
  }

  // ---------------------------------------------------------------------------------------------
  // Elections (Phase 1)

  #candidacyDeadlineMs(): number {
    if (!this.#isVoter()) return Number.POSITIVE_INFINITY;
    // Never run while we still owe another replica a lease, nor during the restart wait: our
    // promise to ourselves would break either. (The planted bug skips the lease half, as it
    // skips the lease check for every other promise.)
    const owedUntil =
      this.#config.bugs?.skipLeaseCheckInPrepare === true
        ? Number.NEGATIVE_INFINITY
        : this.#grant.heldByOtherUntil(this.#id);
    // The jitter applies after a lease we owe runs out too: every follower's grant to a dead
    // master ends at about the same instant, and without it they would all run at once.
    return Math.max(this.#electionDeadlineMs, this.#restartWaitUntilMs, owedUntil + this.#jitterMs);
  }

  #startCandidacy(now: number): void {
    const above =
      compareBallots(this.#highestSeen, this.#promised) > 0 ? this.#highestSeen : this.#promised;
    const ballot = nextBallot(above, this.#id);
    this.#promised = ballot;
    this.#persistPromised = ballot;
    this.#highestSeen = ballot;
    this.#role = 'candidate';
    this.#masterId = null;
    // No lease grant to ourselves here: a failed candidacy must not block other candidates. The
    // master grants itself the lease with each round it starts (#startRound).
    const slotFirst = this.#log.commit + 1;
    const candidacy: Candidacy = {
      ballot,
      slotFirst,
      sentAtMs: now,
      votes: 0,
      reported: new Map(),
      maxCommit: this.#log.commit,
    };
    // Our own acceptor's report; our vote counts once the promise is durable (advance()).
    const own = this.#reportFrom(slotFirst);
    this.#mergeReport(candidacy, own.accepted, own.chosen);
    this.#candidacy = candidacy;
    this.#resetElectionTimer(now, true);
    this.#logger.info(
      { replica: this.#id, ballot: formatBallot(ballot), slotFirst },
      'running for master',
    );
    for (const peer of this.#peers) this.#queueSend(peer, { type: 'prepare', ballot, slotFirst });
  }

  /** Lost Prepares (or refusals that may have expired) are retried within the same ballot. */
  #resendPrepares(now: number): void {
    const candidacy = this.#candidacy;
    if (candidacy === null || now - candidacy.sentAtMs < this.#config.heartbeatMs * 2) return;
    candidacy.sentAtMs = now;
    const { ballot, slotFirst } = candidacy;
    for (const peer of this.#peers) {
      if (!this.#membership.hasVoted(candidacy.votes, peer))
        this.#queueSend(peer, { type: 'prepare', ballot, slotFirst });
    }
  }

  #onPromise(from: ReplicaId, message: Extract<Message, { type: 'promise' }>): void {
    this.#notePeerCommit(from, message.commit);
    const candidacy = this.#candidacy;
    if (candidacy === null || !isBallotEqual(message.ballot, candidacy.ballot)) return;
    if (this.#membership.hasVoted(candidacy.votes, from)) return;
    // A promise counts only from the disk that holds the sender's seat where Phase 1 starts.
    if (message.diskId !== this.#seatAt(from, candidacy.slotFirst)) return;
    this.#mergeReport(candidacy, message.accepted, message.chosen);
    if (message.commit > candidacy.maxCommit) candidacy.maxCommit = message.commit;
    candidacy.votes = this.#membership.addVote(candidacy.votes, from);
    this.#checkElected(this.#nowMs);
  }

  /**
   * A majority of promises makes us master, not counting any replica whose seat changes hands at
   * or above slotFirst (an admission known chosen there, or reported by anyone): its promise came
   * from one disk, and the slots above the admission belong to the other.
   */
  #checkElected(now: number): void {
    const candidacy = this.#candidacy;
    if (candidacy === null) return;
    let votes = candidacy.votes;
    for (const admission of this.#admitted) {
      if (admission.slot >= candidacy.slotFirst)
        votes = this.#membership.removeVote(votes, admission.replica);
    }
    for (const report of candidacy.reported.values()) {
      if (report.value.type === 'admit')
        votes = this.#membership.removeVote(votes, report.value.replica);
    }
    if (this.#membership.isMajority(votes)) this.#becomeMaster(now);
  }

  /** Fold one acceptor's report in: a chosen value wins outright, else the highest ballot. */
  #mergeReport(
    candidacy: Candidacy,
    accepted: readonly AcceptedEntry[],
    chosen: readonly ChosenEntry[],
  ): void {
    const { reported } = candidacy;
    for (const entry of chosen) {
      reported.set(entry.slot, { ballot: ZERO_BALLOT, value: entry.value, isChosen: true });
    }
    const lowest = this.#config.bugs?.reproposeLowestBallot === true;
    for (const entry of accepted) {
      const known = reported.get(entry.slot);
      if (known?.isChosen === true) continue;
      const order = known === undefined ? 0 : compareBallots(entry.ballot, known.ballot);
      if (known === undefined || (lowest ? order < 0 : order > 0)) {
        reported.set(entry.slot, { ballot: entry.ballot, value: entry.value, isChosen: false });
      }
    }
  }

  #onReject(from: ReplicaId, message: Extract<Message, { type: 'reject' }>): void {
    if (compareBallots(message.promised, this.#highestSeen) > 0)
      this.#highestSeen = message.promised;
    const now = this.#nowMs;
    const isHigher = compareBallots(message.promised, this.#promised) > 0;
    if (this.#role === 'master' && isBallotEqual(message.ballot, this.#promised) && isHigher) {
      // An acceptor promised a higher ballot. That alone does not unseat us: a majority may
      // still accept our ballot, and stepping down here would leave every lease granted to us
      // blocking all candidates for a lease (a duel that can last several leases). Instead:
      // while our lease holds, no other replica can win an election, so re-assert at once with
      // a ballot above it; without a lease, carry on, and step down only if a master of a
      // higher ballot contacts us or we cannot renew the lease for an election timeout.
      const hasLease = this.#leaseUntilMs !== null && now < this.#leaseUntilMs;
      if (hasLease) {
        this.#logger.info(
          { replica: this.#id, from, promised: formatBallot(message.promised) },
          'master re-asserts above a higher ballot',
        );
        this.#stepDown('re-asserting above a higher ballot');
        this.#startCandidacy(now);
      }
      return;
    }
    const candidacy = this.#candidacy;
    if (candidacy !== null && isBallotEqual(message.ballot, candidacy.ballot) && isHigher) {
      // A higher ballot is about: back off (randomized) and try above it later.
      this.#stepDown('candidacy outbid');
    }
  }

  #becomeMaster(now: number): void {
    const candidacy = this.#candidacy;
    assert(candidacy !== null, 'becoming master without a candidacy');
    assert(
      isBallotEqual(candidacy.ballot, this.#promised),
      'becoming master of a ballot not promised',
    );
    this.#candidacy = null;
    this.#role = 'master';
    this.#masterId = this.#id;
    this.#inFlight.clear();
    this.#queue = [];
    this.#queueHead = 0;
    this.#pendingIds.clear();
    this.#rounds = new LeaseRounds(this.#membership);
    // The lease starts with the first round a majority acks (the Accepts of the no-ops below
    // carry round 1). Reads need the ballot's no-op applied anyway, which takes the same acks.
    this.#leaseUntilMs = null;
    this.#leaseLapsedAtMs = now;
    this.#progressCommit = this.#log.commit;
    this.#progressAtMs = now;
    this.#stampOffsetMs = 0;
    this.#raiseStampOffset(now);
    this.#startRound(now);
    this.#nextHeartbeatMs = now + this.#config.heartbeatMs;
    // Slots a promiser already knows chosen are not ours to propose: learn the reported values,
    // fetch the rest by catch-up.
    for (const [slot, report] of candidacy.reported) {
      if (report.isChosen) this.#learnChosen(slot, report.value);
    }
    this.#log.advanceCommit();
    const fetchedThrough = Math.max(candidacy.maxCommit, this.#log.commit);
    let maxSlot = Math.max(fetchedThrough, this.#log.highestSlot);
    for (const slot of candidacy.reported.keys()) if (slot > maxSlot) maxSlot = slot;
    let reproposed = 0;
    let filled = 0;
    for (let slot = fetchedThrough + 1; slot <= maxSlot; slot++) {
      if (this.#log.isChosen(slot)) continue;
      const report = candidacy.reported.get(slot);
      if (report === undefined) {
        filled += 1;
        this.#proposeAt(slot, { type: 'noop', stampMs: this.stampNow(now) });
      } else {
        reproposed += 1;
        this.#proposeAt(slot, report.value);
      }
    }
    this.#barrierSlot = maxSlot + 1;
    this.#proposeAt(this.#barrierSlot, { type: 'noop', stampMs: this.stampNow(now) });
    this.#nextSlot = this.#barrierSlot + 1;
    this.#logger.info(
      {
        replica: this.#id,
        ballot: formatBallot(this.#promised),
        reproposed,
        filled,
        barrierSlot: this.#barrierSlot,
      },
      'became master',
    );
    this.#maybeCatchUp(now);
  }

  #stepDown(reason: string): void {
    const was = this.#role;
    // A candidacy given up: its ballot will never be used again (#becomeMaster needs it), so
    // tell the acceptors to drop the leases they granted with their promises (#onWithdraw).
    const withdrawn = this.#candidacy?.ballot;
    if (withdrawn !== undefined)
      for (const peer of this.#peers)
        this.#queueSend(peer, { type: 'withdraw', ballot: withdrawn });
    this.#role = 'follower';
    this.#candidacy = null;
    this.#masterId = null;
    this.#inFlight.clear();
    this.#queue = [];
    this.#queueHead = 0;
    this.#pendingIds.clear();
    this.#leaseUntilMs = null;
    this.#barrierSlot = Number.POSITIVE_INFINITY;
    this.#resetElectionTimer(this.#nowMs, true);
    this.#logger.info(
      { replica: this.#id, was, reason, ballot: formatBallot(this.#promised) },
      'stepped down',
    );
  }

  #resetElectionTimer(now: number, redraw: boolean): void {
    if (redraw) this.#jitterMs = this.#drawJitter();
    this.#electionDeadlineMs = now + this.#config.electionTimeoutMs + this.#jitterMs;
  }

  #drawJitter(): number {
    return this.#random.next() * this.#config.electionJitterMs;
  }

  // ---------------------------------------------------------------------------------------------
  // Master (Phase 2, lease)

  #tickMaster(now: number): void {
    // Without a lease we serve no reads but keep heartbeating to renew it; after an election
    // timeout without renewal we are cut off from a majority: step down and let others run.
    const lapsedAtMs = this.#leaseUntilMs ?? this.#leaseLapsedAtMs;
    if (now - lapsedAtMs > this.#config.electionTimeoutMs) {
      this.#stepDown('lease not renewed');
      return;
    }
    if (this.#log.commit > this.#progressCommit) {
      this.#progressCommit = this.#log.commit;
      this.#progressAtMs = now;
    }
    if (
      this.#log.commit < this.#wantCommit &&
      now >= this.#snapshotWaitUntilMs &&
      now - this.#progressAtMs > 2 * this.#config.electionTimeoutMs
    ) {
      // Slots a peer said were chosen (a promiser's commit, above the chosen values it reported)
      // that no live peer hands us: the one that knew may have lost its disk since. Phase 1
      // skipped them (they were not ours to propose), so nothing else will fill the gap. Run
      // Phase 1 again: a quorum that does not claim them reports every value accepted there,
      // and the highest-ballot one is re-proposed as for any open slot. (Found by the
      // simulator, seed 4597: a master that never served.)
      this.#logger.warn(
        { replica: this.#id, commit: this.#log.commit, wantCommit: this.#wantCommit },
        'chosen slots out of reach: running Phase 1 again',
      );
      this.#stepDown('chosen slots out of reach');
      this.#startCandidacy(now);
      return;
    }
    if (now < this.#nextHeartbeatMs) return;
    this.#nextHeartbeatMs = now + this.#config.heartbeatMs;
    const round = this.#startRound(now);
    const ballot = this.#promised;
    const commit = this.#log.commit;
    for (const peer of this.#peers)
      this.#queueSend(peer, { type: 'heartbeat', ballot, commit, round });
    // Retransmit Accepts that have not reached everyone (lost messages).
    for (const [slot, proposal] of this.#inFlight) {
      if (now - proposal.sentAtMs < this.#config.heartbeatMs) continue;
      proposal.sentAtMs = now;
      const accept: Message = {
        type: 'accept',
        ballot,
        slot,
        value: proposal.value,
        commit,
        round,
      };
      for (const peer of this.#peers) {
        if (!this.#membership.hasVoted(proposal.votes, peer))
          this.#sendEarly.push({ to: peer, message: accept });
      }
    }
    this.#rounds.prune(now - this.#config.leaseMs);
  }

  #startRound(now: number): number {
    // The master acks its own round: its acceptor grants itself the lease too.
    this.#grant.grant(this.#id, now, this.#config.leaseMs);
    return this.#rounds.start(now, this.#id);
  }

  #onAccepted(from: ReplicaId, message: Extract<Message, { type: 'accepted' }>): void {
    if (this.#role !== 'master' || !isBallotEqual(message.ballot, this.#promised)) return;
    // Votes and lease grants count only from the disk that holds the seat (at the slot; now).
    if (message.diskId === this.#seatAt(from, this.#log.commit + 1))
      this.#ackRound(from, message.round);
    if (message.diskId === this.#seatAt(from, message.slot)) this.#vote(message.slot, from);
  }

  #onHeartbeatAck(from: ReplicaId, message: Extract<Message, { type: 'heartbeat-ack' }>): void {
    this.#notePeerCommit(from, message.commit);
    if (this.#role !== 'master' || !isBallotEqual(message.ballot, this.#promised)) return;
    if (message.restartWaitMs !== undefined)
      this.#peerMayRunAtMs.set(from, this.#nowMs + message.restartWaitMs);
    if (message.diskId === this.#seatAt(from, this.#log.commit + 1)) {
      this.#ackRound(from, message.round);
      return;
    }
    this.#maybeAdmit(from, message.diskId, message.commit);
  }

  /**
   * A replica answers from a disk that does not hold its seat: a replacement disk, learning.
   * Once it has caught up (within a window of our commit), and our own ballot is established,
   * propose its admission at the top of the log, one admission at a time. Disk 0 is never
   * admitted: only founding disks have it, and a second disk 0 would be indistinguishable from
   * the one it replaced.
   */
  #maybeAdmit(from: ReplicaId, diskId: number, commit: number): void {
    if (diskId === 0 || this.#applied < this.#barrierSlot) return;
    // Chosen already, its slot not yet under our commit: the seat is its from there on.
    if (this.#admitted.some((a) => a.replica === from && a.diskId === diskId)) return;
    if (this.#admittingSlot !== null && this.#inFlight.has(this.#admittingSlot)) return;
    if (commit + this.#config.windowSlots < this.#log.commit) return;
    while (this.#log.isChosen(this.#nextSlot)) this.#nextSlot += 1;
    const slot = this.#nextSlot;
    this.#nextSlot += 1;
    this.#admittingSlot = slot;
    this.#logger.info(
      { replica: this.#id, admit: from, diskId, slot },
      'admitting a replacement disk',
    );
    this.#proposeAt(slot, {
      type: 'admit',
      stampMs: this.stampNow(this.#nowMs),
      replica: from,
      diskId,
    });
  }

  #ackRound(from: ReplicaId, round: number): void {
    const lastAckMs = this.#peerAckedAtMs.get(from);
    if (lastAckMs === undefined || this.#nowMs - lastAckMs > this.#config.electionTimeoutMs)
      this.#peerAckedSinceMs.set(from, this.#nowMs);
    this.#peerAckedAtMs.set(from, this.#nowMs);
    const sentAtMs = this.#rounds.ack(round, from);
    if (sentAtMs === null) return;
    const until = masterLeaseUntil({
      sentAtMs,
      leaseMs: this.#config.leaseMs,
      maxDriftRate: this.#config.maxDriftRate,
    });
    if (this.#leaseUntilMs === null || until > this.#leaseUntilMs) this.#leaseUntilMs = until;
  }

  #vote(slot: number, from: ReplicaId): void {
    const proposal = this.#inFlight.get(slot);
    if (proposal === undefined) return;
    proposal.votes = this.#membership.addVote(proposal.votes, from);
    if (!this.#membership.isMajority(proposal.votes)) return;
    if (this.#log.markChosen(slot, proposal.value))
      this.#persistChosen.push({ slot, value: proposal.value });
    this.#noteChosen(slot, proposal.value);
    this.#retire(slot, proposal);
    this.#log.advanceCommit();
  }

  /** The proposal's slot is chosen: it leaves the window and its commands stop being pending. */
  #retire(slot: number, proposal: Proposal): void {
    this.#inFlight.delete(slot);
    if (proposal.value.type === 'batch') {
      for (const command of proposal.value.commands) this.#pendingIds.delete(commandKey(command));
    }
  }

  /** Propose `value` at `slot` in our ballot: our own acceptance, then Accepts to every peer. */
  #proposeAt(slot: number, value: SlotValue): void {
    const ballot = this.#promised;
    const isNew = this.#log.accept(slot, ballot, value);
    assert(isNew, `master proposing at chosen slot ${slot}`);
    this.#persistAccepted.push({ slot, ballot, value });
    this.#inFlight.set(slot, { value, votes: 0, sentAtMs: this.#nowMs });
    const accept: Message = {
      type: 'accept',
      ballot,
      slot,
      value,
      commit: this.#log.commit,
      round: this.#rounds.current,
    };
    for (const peer of this.#peers) this.#sendEarly.push({ to: peer, message: accept });
  }

  /** Turn queued commands into slot values while the window has room. */
  #flushProposals(): void {
    if (this.#role !== 'master') return;
    const maxBatch = this.#config.maxBatchCommands;
    while (this.#queueHead < this.#queue.length && this.#inFlight.size < this.#config.windowSlots) {
      const end = Math.min(this.#queue.length, this.#queueHead + maxBatch);
      const commands = this.#queue.slice(this.#queueHead, end);
      this.#queueHead = end;
      // A slot learned chosen from a peer (a newer master we have not heard from) is not ours.
      while (this.#log.isChosen(this.#nextSlot)) this.#nextSlot += 1;
      this.#proposeAt(this.#nextSlot, {
        type: 'batch',
        stampMs: this.stampNow(this.#nowMs),
        commands,
      });
      this.#nextSlot += 1;
    }
    if (this.#queueHead === this.#queue.length && this.#queueHead > 0) {
      this.#queue = [];
      this.#queueHead = 0;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Output

  /**
   * An answer that acknowledges durable state (promise, accepted): it waits for the persist
   * unless the planted bug sends it early.
   */
  #answer(to: ReplicaId, message: Message): void {
    if (this.#config.bugs?.answerBeforePersist === true) this.#sendEarly.push({ to, message });
    else this.#send.push({ to, message });
  }

  #queueSend(to: ReplicaId, message: Message): void {
    this.#send.push({ to, message });
  }

  // ---------------------------------------------------------------------------------------------
  // Seats: which disk's votes count for each replica (docs/consensus.md, Replacing a disk)

  /** The disk whose votes count for `replica` at `slot`: the last admission below it, else 0. */
  #seatAt(replica: ReplicaId, slot: number): number {
    let diskId = 0;
    for (const admission of this.#admitted) {
      if (admission.slot >= slot) break;
      if (admission.replica === replica) diskId = admission.diskId;
    }
    return diskId;
  }

  #isVoterAt(slot: number): boolean {
    if (this.#config.bugs?.voteWithoutAdmission === true) return true;
    return this.#seatAt(this.#id, slot) === this.#diskId;
  }

  /** A voter from the first slot not known chosen on: may promise, run, and grant leases. */
  #isVoter(): boolean {
    return this.#isVoterAt(this.#log.commit + 1);
  }

  /** The disk a vote says it comes from: ours (the planted bug claims the seat's instead). */
  #claimedDisk(slot: number): number {
    if (this.#config.bugs?.voteWithoutAdmission === true) return this.#seatAt(this.#id, slot);
    return this.#diskId;
  }

  /** A value known chosen: if it is an admission, the seat changes hands after its slot. */
  #noteChosen(slot: number, value: SlotValue): void {
    if (value.type !== 'admit') return;
    this.#noteAdmission({ slot, replica: value.replica, diskId: value.diskId }, true);
  }

  #noteAdmission(admission: Admission, persist: boolean): void {
    const known = this.#admitted.find((a) => a.slot === admission.slot);
    if (known !== undefined) {
      assert(
        known.replica === admission.replica && known.diskId === admission.diskId,
        `slot ${admission.slot}: two different admissions`,
      );
      return;
    }
    let at = this.#admitted.length;
    while (at > 0 && (this.#admitted[at - 1]?.slot ?? 0) > admission.slot) at -= 1;
    this.#admitted.splice(at, 0, { ...admission });
    if (this.#admittingSlot === admission.slot) this.#admittingSlot = null;
    if (!persist) return; // loaded from disk at start: nothing new to store or say
    this.#persistAdmitted.push({ ...admission });
    const fields = {
      replica: this.#id,
      admitted: admission.replica,
      diskId: admission.diskId,
      fromSlot: admission.slot + 1,
    };
    if (admission.replica === this.#id && admission.diskId !== this.#diskId) {
      // Another disk of this replica id took the seat: this one (an old disk started again, or a
      // second process with our id) no longer votes, and is never admitted back as it is.
      this.#logger.warn(
        { ...fields, thisDiskId: this.#diskId },
        "this replica's seat went to another disk: this disk no longer votes; wipe its data directory and start it without --bootstrap to rejoin as a replacement disk",
      );
      return;
    }
    this.#logger.info(
      fields,
      admission.replica === this.#id
        ? 'this disk admitted: voting from the next slot on'
        : 'replacement disk admitted',
    );
  }

  #observeTime(now: number): void {
    assert(Number.isFinite(now), 'time is not a finite number');
    if (now > this.#nowMs) this.#nowMs = now;
  }
}
