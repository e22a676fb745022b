// The cell's client service on one replica (DESIGN.md, sessions/; issue 4, the client front
// end): what a replica does with client frames, with chosen entries, and with time, as the
// master or as a follower. Pure: no sockets, files, timers or clock: time is the `now` argument,
// connections are ids, and what must be sent comes out of takeOutbox(). The replica process
// (runtime/node.ts) wires it to sockets; the simulator can drive the very same code.
//
// Invariants:
// - A write is answered only after its entry is chosen and applied here; a read only while
//   canServeReads(now) holds (master, valid lease, own ballot's no-op applied).
// - A non-master answers every request with a redirect (master's address, or null: no master).
// - Session leases live in the SessionTable; a new master gives every session a full lease
//   before it serves; ExpireSession and LockDelayEnd are proposed by the master only, and only
//   while its lease holds; KeepAlives are acknowledged only while its lease holds.
// - Events go out after their entry is applied, in log order, numbered per session.
// - Client commands are proposed in arrival order, all of them in the next turn, except that
//   while every waiting command is an Acquire that would only join a lock's queue they wait (up
//   to queueHoldMs, or until an applied entry means one would not queue) for the next command to
//   share its log entry: under contention a waiter's Acquire then rides with the holder's
//   Release instead of taking an entry of its own. When, never what or in which order.
// - Digest marks and checks (Paxos Made Live 5.6) ride in the log as runtime commands the
//   state machine never sees (it gets a null, an invalid command, so results stay aligned).

import {
  decodeFrame,
  encodeFrame,
  ErrorCode,
  type Acquire,
  type ClientFrame,
  type CommandResult,
  type Epoch,
  type MachineCommand,
  type MachineEvent,
  type QueryResult,
  type ReplicaStatus,
  type ServerFrame,
} from '@paxlock/shared';
import type { StateMachine } from '../machine/index.ts';
import { formatBallot } from '../paxos/ballot.ts';
import type { ChosenEntry, Command } from '../paxos/messages.ts';
import type { Logger, ReplicaId } from '../paxos/ports.ts';
import type { ProposeResult, Replica } from '../paxos/replica.ts';
import type { Status } from '../paxos/ready.ts';
import { Freshness } from './freshness.ts';
import { SessionTable } from './session-table.ts';

export type ConnectionId = number;

export interface ServiceOptions {
  readonly id: ReplicaId;
  /** The cell's name, for status replies (the simulator leaves it out). */
  readonly cell?: string;
  /** The clock-rate drift bound (as the core's leases use it); stale-read bounds are scaled by it. */
  readonly maxDriftRate?: number;
  /** Client address of every replica, for redirects. */
  readonly clientAddresses: ReadonlyMap<ReplicaId, string>;
  readonly replica: Pick<Replica, 'propose' | 'canServeReads' | 'status' | 'noteMachineTime' | 'stampNow'>;
  /** The state machine; a getter because a snapshot install replaces it. */
  readonly machine: () => Pick<StateMachine, 'apply' | 'query' | 'pendingLockDelays' | 'digest' | 'appliedIndex' | 'timeMs' | 'wouldQueue'>;
  readonly logger: Logger;
  /** Unique to this process's life: names CreateSession proposals and digest marks. */
  readonly bootNonce: string;
  /** A request not applied within this long is answered NO_QUORUM. */
  readonly requestTimeoutMs: number;
  /** The master proposes a digest mark this often (0: never). */
  readonly digestEveryMs: number;
  /** This replica's state differs from the master's. */
  readonly onDiverged: (detail: { slot: number; mine: string; master: string }) => void;
  /**
   * How long an Acquire that would only join a lock's queue may be held back so that it shares
   * a log entry with the next command (default DEFAULT_QUEUE_HOLD_MS; 0: never held).
   */
  readonly queueHoldMs?: number;
  /** Unanswered commands and reads held at once, all connections together (default 65,536). */
  readonly maxOutstandingRequests?: number;
}

/**
 * Bounds what a master holds for clients that send faster than the cell chooses (or that never
 * wait for answers): past it, a request is answered BUSY at once and nothing is queued.
 */
export const DEFAULT_MAX_OUTSTANDING_REQUESTS = 65_536;

export const DEFAULT_QUEUE_HOLD_MS = 5;

export interface Outgoing {
  readonly to: ConnectionId;
  readonly frame: ServerFrame;
}

interface PendingRequest {
  readonly connection: ConnectionId;
  readonly id: number;
  readonly deadline: number;
}

interface PendingRead {
  readonly connection: ConnectionId;
  readonly frame: Extract<ClientFrame, { type: 'query' }>;
  readonly deadline: number;
}

const DIGEST_MARK = 'digest-mark:';
const DIGEST_CHECK = 'digest-check:';

function commandKey(clientId: string, seq: number): string {
  return `${clientId}#${seq}`;
}

function isRuntimeCommand(command: Command): boolean {
  return command.clientId.startsWith(DIGEST_MARK) || command.clientId.startsWith(DIGEST_CHECK);
}

export class CellService {
  readonly #o: ServiceOptions;
  readonly #sessions = new SessionTable();
  readonly #freshness: Freshness;
  readonly #pending = new Map<string, PendingRequest>();
  readonly #reads: PendingRead[] = [];
  readonly #outbox: Outgoing[] = [];
  /** Client proposals for the next turn (the turn reports whether the core took them). */
  readonly #proposals: Command[] = [];
  /**
   * While every proposal waiting is an Acquire that would only join a queue: those Acquires and
   * when the first arrived. They are held (up to queueHoldMs) to share the next log entry.
   */
  readonly #held: Acquire[] = [];
  #heldSinceMs = 0;
  /** Whether some held Acquire would no longer queue, as of applied slot #heldVerdictAt. */
  #heldMayGo = false;
  #heldVerdictAt = -1;
  readonly #eventSeq = new Map<number, number>();
  readonly #eventStream = new Map<number, ConnectionId>();
  readonly #connections = new Set<ConnectionId>();
  readonly #delaysInFlight = new Set<string>();
  readonly #digestAt = new Map<number, string>();
  #digestSeq = 0;
  #lastDigestMarkAt = Number.NEGATIVE_INFINITY;
  #createSeq = 0;
  #statusDigest: { slot: number; digest: string } | null = null;
  #isServing = false;
  #status: Status;

  constructor(options: ServiceOptions, now: number) {
    this.#o = options;
    this.#freshness = new Freshness(options.maxDriftRate);
    this.#status = options.replica.status(now);
  }

  get isServing(): boolean {
    return this.#isServing;
  }

  /** Everything to send since the last call, in order. */
  takeOutbox(): Outgoing[] {
    return this.#outbox.splice(0);
  }

  /** Whether a turn should run now for proposals (held ones wait for proposalsDueMs). */
  get hasProposals(): boolean {
    return this.#proposals.length > this.#held.length || (this.#held.length > 0 && this.#heldMustGo());
  }

  /** When held proposals must go even if nothing else comes; null if none are held. */
  get proposalsDueMs(): number | null {
    return this.#held.length > 0 && this.#held.length === this.#proposals.length
      ? this.#heldSinceMs + this.#holdMs
      : null;
  }

  /**
   * Client commands to propose in this turn, in arrival order: all of them, unless every one is
   * an Acquire that would still only join a lock's queue and none has waited queueHoldMs.
   */
  takeProposals(now: number): Command[] {
    if (this.#proposals.length === 0) return [];
    if (this.#proposals.length === this.#held.length && now < this.#heldSinceMs + this.#holdMs && !this.#heldMustGo()) return [];
    this.#held.length = 0;
    this.#heldVerdictAt = -1;
    return this.#proposals.splice(0);
  }

  get #holdMs(): number {
    return this.#o.queueHoldMs ?? DEFAULT_QUEUE_HOLD_MS;
  }

  /** Whether some held Acquire would no longer queue (asked again once per applied entry). */
  #heldMustGo(): boolean {
    const machine = this.#o.machine();
    if (machine.appliedIndex !== this.#heldVerdictAt) {
      this.#heldVerdictAt = machine.appliedIndex;
      this.#heldMayGo = this.#held.some((command) => !machine.wouldQueue(command));
    }
    return this.#heldMayGo;
  }

  // --- clients ---------------------------------------------------------------------------------

  onClientFrame(connection: ConnectionId, frame: ClientFrame, now: number): void {
    this.#connections.add(connection);
    switch (frame.type) {
      case 'status':
        this.#send(connection, { type: 'status', id: frame.id, status: this.status(now, frame.digest === true) });
        return;
      case 'keep-alive':
        this.#onKeepAlive(connection, frame, now);
        return;
      case 'query':
        if (!this.#isServing) {
          if (frame.maxStalenessMs !== undefined) this.#onStaleRead(connection, frame, now);
          else this.#redirect(connection, frame.id);
          return;
        }
        if (this.#isFull(connection, frame.id)) return;
        this.#reads.push({ connection, frame, deadline: now + this.#o.requestTimeoutMs });
        this.#serveReads(now);
        return;
      case 'command':
        this.#onCommand(connection, frame, now);
        return;
    }
  }

  /**
   * The leased master answered a freshness probe this replica sent at `sentAt` (its clock) with
   * its commit index: the basis of this replica's promise for stale reads (freshness.ts).
   */
  onMasterCommit(sentAt: number, commit: number): void {
    this.#freshness.onMasterCommit(sentAt, commit);
  }

  /**
   * Where a follower sends its freshness probe: the master it knows; null if this replica is
   * the master or knows none. (The runtime sends the probe every 100 ms over the peer link.)
   */
  freshnessProbeTarget(now: number): ReplicaId | null {
    if (this.#isServing) return null;
    const masterId = this.#o.replica.status(now).masterId;
    return masterId === null || masterId === this.#o.id ? null : masterId;
  }

  /**
   * The master's answer to a freshness probe: its commit index; null unless it serves and holds
   * its lease (only then can nothing be committed without it).
   */
  answerFreshnessProbe(now: number): number | null {
    if (!this.#isServing || !this.#o.replica.canServeReads(now)) return null;
    return this.#o.replica.status(now).commit;
  }

  /**
   * GET /health: whether this replica is part of a cell that works. The master is healthy while
   * it serves under its lease; a follower while it knows a master (it forgets it when it stops
   * hearing from it, or stands for master itself); a candidate never.
   */
  health(now: number): { readonly isHealthy: boolean; readonly reason: string | null } {
    const status = this.#o.replica.status(now);
    if (status.role === 'master') {
      const isServing = this.#isServing && this.#o.replica.canServeReads(now);
      return { isHealthy: isServing, reason: isServing ? null : 'master without a valid lease (not serving)' };
    }
    if (status.masterId === null) return { isHealthy: false, reason: `${status.role} that knows no master (election under way, or no quorum)` };
    // A replacement disk not yet admitted follows the master but adds no vote: a probe that gates
    // taking the next replica down (a rolling restart) must wait for its admission.
    if (!status.isVoter) return { isHealthy: false, reason: 'learner: this disk is not admitted yet (it follows the master and catches up, but does not vote)' };
    return { isHealthy: true, reason: null };
  }

  /**
   * GET /backup: whether this replica may give the whole state database: the master under its
   * lease (every write acknowledged so far is applied here: writes are answered after they are
   * applied), and the caller copies state.db from now on (runtime/node.ts, state-copy.ts); any
   * other replica names the master it knows, or null.
   */
  backup(now: number): { readonly isServing: true } | { readonly master: string | null } {
    if (this.#isServing && this.#o.replica.canServeReads(now)) return { isServing: true };
    return { master: this.#otherMasterAddress(this.#o.replica.status(now).masterId) };
  }

  /** A stale read at a follower: answered from this replica's state if it can promise the bound. */
  #onStaleRead(connection: ConnectionId, frame: Extract<ClientFrame, { type: 'query' }>, now: number): void {
    const machine = this.#o.machine();
    const bound = this.#freshness.bound(now, machine.appliedIndex);
    if (bound === null || bound > (frame.maxStalenessMs ?? 0)) {
      this.#redirect(connection, frame.id);
      return;
    }
    const result = machine.query(frame.query);
    this.#send(connection, { type: 'query-result', id: frame.id, epoch: this.#epoch(), slot: machine.appliedIndex, result, stalenessMs: Math.ceil(bound), replica: this.#o.id });
  }

  onClientClosed(connection: ConnectionId): void {
    this.#connections.delete(connection);
    for (const [session, stream] of this.#eventStream) if (stream === connection) this.#eventStream.delete(session);
  }

  status(now: number, withDigest = true): ReplicaStatus {
    const status = this.#o.replica.status(now);
    const machine = this.#o.machine();
    return {
      id: this.#o.id,
      cell: this.#o.cell ?? '',
      role: status.role,
      epoch: status.ballot,
      masterId: status.masterId,
      master: status.masterId === null ? null : (this.#o.clientAddresses.get(status.masterId) ?? null),
      commit: status.commit,
      applied: machine.appliedIndex,
      leaseRemainingMs: status.leaseUntil === null ? 0 : Math.max(0, status.leaseUntil - now),
      isVoter: status.isVoter,
      diskId: status.diskId,
      digest: withDigest ? this.#digestOf(machine) : null,
      digestSlot: machine.appliedIndex,
    };
  }

  /** The digest at the current applied slot, computed once per slot (it costs ~0.7 s per 100k nodes). */
  #digestOf(machine: Pick<StateMachine, 'digest' | 'appliedIndex'>): string {
    if (this.#statusDigest?.slot !== machine.appliedIndex) {
      this.#statusDigest = { slot: machine.appliedIndex, digest: machine.digest() };
    }
    return this.#statusDigest.digest;
  }

  #onKeepAlive(connection: ConnectionId, frame: Extract<ClientFrame, { type: 'keep-alive' }>, now: number): void {
    if (!this.#isServing) {
      this.#redirect(connection, frame.id);
      return;
    }
    if (!this.#o.replica.canServeReads(now)) {
      // A master whose lease has lapsed (cut off from its peers, say) may already be deposed:
      // an ack from it would extend a lease no one else honours. The client retries elsewhere.
      this.#send(connection, { type: 'error', id: frame.id, code: ErrorCode.NO_QUORUM, message: 'no quorum: the master cannot confirm its lease' });
      return;
    }
    const remaining = this.#sessions.keepAlive(frame.session, now);
    if (remaining === null) {
      this.#send(connection, { type: 'error', id: frame.id, code: ErrorCode.SESSION_EXPIRED, message: `session ${frame.session} has expired` });
      return;
    }
    this.#eventStream.set(frame.session, connection);
    const eventSeq = this.#eventSeq.get(frame.session) ?? 0;
    this.#send(connection, {
      type: 'keep-alive-ack',
      id: frame.id,
      epoch: this.#epoch(),
      leaseRemainingMs: remaining,
      eventSeq,
      isEventGap: frame.eventSeqSeen !== eventSeq,
    });
  }

  #onCommand(connection: ConnectionId, frame: Extract<ClientFrame, { type: 'command' }>, now: number): void {
    if (!this.#isServing) {
      this.#redirect(connection, frame.id);
      return;
    }
    const command = frame.command;
    let clientId: string;
    let seq: number;
    if (command.type === 'CreateSession') {
      // With the client's nonce, a retried CreateSession is the same command to the core (and
      // the machine answers it with the same session); without one, each is new.
      clientId = command.nonce === undefined ? `create:${this.#o.bootNonce}` : `create-nonce:${command.nonce}`;
      seq = command.nonce === undefined ? ++this.#createSeq : 1;
    } else if ('seq' in command) {
      if (!this.#sessions.has(command.session)) {
        this.#send(connection, { type: 'error', id: frame.id, code: ErrorCode.SESSION_EXPIRED, message: `session ${command.session} has expired` });
        return;
      }
      clientId = `session:${command.session}`;
      seq = command.seq;
    } else {
      this.#send(connection, { type: 'error', id: frame.id, code: ErrorCode.BAD_REQUEST, message: 'not a client command' });
      return;
    }
    const key = commandKey(clientId, seq);
    if (!this.#pending.has(key) && this.#isFull(connection, frame.id)) return;
    this.#pending.set(key, { connection, id: frame.id, deadline: now + this.#o.requestTimeoutMs });
    // An Acquire that would only join a queue waits (briefly) to share the next entry, unless
    // others are already waiting to be proposed: then it goes with them.
    if (this.#proposals.length === this.#held.length && command.type === 'Acquire' && this.#holdMs > 0 && this.#o.machine().wouldQueue(command)) {
      if (this.#held.length === 0) {
        // Just asked: it would queue. (With others held, a verdict at an older slot stands until
        // #heldMustGo asks again for all of them.)
        this.#heldSinceMs = now;
        this.#heldMayGo = false;
        this.#heldVerdictAt = this.#o.machine().appliedIndex;
      }
      this.#held.push(command);
    }
    this.#proposals.push({ clientId, seq, payload: encodeFrame(command) });
  }

  /** Answers BUSY and returns true if the master holds its limit of unanswered requests. */
  #isFull(connection: ConnectionId, id: number): boolean {
    const limit = this.#o.maxOutstandingRequests ?? DEFAULT_MAX_OUTSTANDING_REQUESTS;
    if (this.#pending.size + this.#reads.length < limit) return false;
    this.#send(connection, { type: 'error', id, code: ErrorCode.BUSY, message: `busy: ${String(limit)} requests in flight at the master; retry shortly` });
    return true;
  }

  /** The turn's verdict on a client proposal taken from takeProposals(). */
  onProposed(command: Command, outcome: ProposeResult): void {
    if (outcome.ok || outcome.reason === 'duplicate') return; // a duplicate: the first copy's answer serves both
    const key = commandKey(command.clientId, command.seq);
    const pending = this.#pending.get(key);
    if (pending === undefined) return;
    this.#pending.delete(key);
    this.#redirect(pending.connection, pending.id);
  }

  // --- applying chosen entries -------------------------------------------------------------------

  /** Applies one chosen entry (the turn's apply step), answering and notifying as master. */
  apply(entry: ChosenEntry, now: number): void {
    const value = entry.value;
    const commands = value.type === 'batch' ? value.commands : [];
    const decoded = commands.map((c) => {
      if (isRuntimeCommand(c)) return null;
      const frame = decodeFrame(c.payload);
      return frame.ok ? frame.value : null;
    });
    const outcome = this.#o.machine().apply({ slot: entry.slot, stampMs: Math.floor(value.stampMs), commands: decoded });
    commands.forEach((command, i) => {
      const result = outcome.results[i];
      if (result === undefined || isRuntimeCommand(command)) return;
      this.#onResult(command, decoded[i], result, entry.slot, now);
    });
    if (outcome.events.length > 0) this.#pushEvents(outcome.events);
    for (const command of commands) {
      if (command.clientId.startsWith(DIGEST_MARK)) this.#onDigestMark(entry.slot, now);
      else if (command.clientId.startsWith(DIGEST_CHECK)) this.#onDigestCheck(command.payload);
    }
  }

  #onResult(command: Command, decoded: unknown, result: CommandResult, slot: number, now: number): void {
    const type = (decoded as { type?: unknown } | null)?.type;
    if (this.#isServing) {
      if (result.type === 'session-created') {
        this.#sessions.onCreated(result.session, (decoded as { leaseMs: number }).leaseMs, now);
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
    this.#send(pending.connection, { type: 'result', id: pending.id, epoch: this.#epoch(), slot, result });
  }

  #pushEvents(events: readonly MachineEvent[]): void {
    if (!this.#isServing) return;
    const epoch = this.#epoch();
    for (const event of events) {
      const eventSeq = (this.#eventSeq.get(event.session) ?? 0) + 1;
      this.#eventSeq.set(event.session, eventSeq);
      // A session with no attached connection misses the event; its next KeepAlive reply says
      // so (isEventGap), and the client re-reads.
      const stream = this.#eventStream.get(event.session);
      if (stream !== undefined) this.#send(stream, { type: 'event', session: event.session, eventSeq, epoch, event });
    }
  }

  #onDigestMark(slot: number, now: number): void {
    const digest = this.#o.machine().digest();
    this.#digestAt.set(slot, digest);
    // Keep only recent marks: a check for an older one is for a replica that restarted.
    for (const s of this.#digestAt.keys()) if (s < slot - 100_000) this.#digestAt.delete(s);
    if (this.#isServing) {
      this.#o.replica.propose({ clientId: `${DIGEST_CHECK}${this.#o.bootNonce}`, seq: ++this.#digestSeq, payload: encodeFrame({ slot, digest }) }, now);
    }
  }

  #onDigestCheck(payload: Uint8Array): void {
    const decoded = decodeFrame(payload);
    const check = decoded.ok ? (decoded.value as { slot?: unknown; digest?: unknown }) : null;
    if (check === null || typeof check.slot !== 'number' || typeof check.digest !== 'string') {
      this.#o.logger.warn({}, 'malformed digest check ignored');
      return;
    }
    const mine = this.#digestAt.get(check.slot);
    this.#digestAt.delete(check.slot);
    if (mine === undefined) return; // applied that slot before a restart, or from a snapshot
    if (mine === check.digest) {
      this.#o.logger.debug({ slot: check.slot, digest: mine }, 'state digest agrees with the master');
      return;
    }
    this.#o.logger.error(
      { slot: check.slot, mine, master: check.digest },
      'STATE DIGEST DIFFERS FROM THE MASTER: this replica has diverged and stops serving; rebuild its state.db from a snapshot',
    );
    this.#o.onDiverged({ slot: check.slot, mine, master: check.digest });
  }

  // --- after every turn: role changes, master duties, reads, time-outs ---------------------------

  afterTurn(now: number): void {
    // The machine's time (applies, a snapshot installed): a master stamps on from it.
    this.#o.replica.noteMachineTime(this.#o.machine().timeMs);
    const status = this.#o.replica.status(now);
    const wasMaster = this.#status.role === 'master';
    this.#status = status;
    if (status.role !== 'master' && wasMaster) this.#onStepDown();
    if (status.role === 'master' && !this.#isServing && this.#o.replica.canServeReads(now)) this.#onMastership(now);
    // Duties only under a valid lease: a master cut off from its peers must not act on a session
    // table that a new master may already have replaced (found by the cell simulator).
    if (this.#isServing && this.#o.replica.canServeReads(now)) this.#masterDuties(now);
    this.#serveReads(now);
    this.#expireRequests(now);
  }

  #onMastership(now: number): void {
    this.#isServing = true;
    const listed = this.#o.machine().query({ type: 'ListSessions' });
    const sessions = listed.type === 'sessions' ? listed.sessions : [];
    this.#sessions.onMastership(sessions.map((s) => ({ session: s.session, leaseMs: s.leaseMs })), now);
    this.#o.logger.info({ epoch: formatBallot(this.#status.ballot), sessions: sessions.length }, 'serving as master');
    const epoch = this.#epoch();
    for (const connection of this.#connections) this.#send(connection, { type: 'master-failover', epoch });
  }

  #onStepDown(): void {
    if (this.#isServing) this.#o.logger.warn({ epoch: formatBallot(this.#status.ballot) }, 'no longer master');
    this.#isServing = false;
    this.#sessions.onStepDown();
    this.#delaysInFlight.clear();
    // Proposals not yet taken (held ones among them) go with their requests, redirected below.
    this.#proposals.length = 0;
    this.#held.length = 0;
    this.#heldVerdictAt = -1;
    // Unanswered requests may or may not be chosen; the client retries them with the same
    // (session, seq) at the new master, which answers from its record instead of re-applying.
    for (const [key, pending] of this.#pending) {
      this.#pending.delete(key);
      this.#redirect(pending.connection, pending.id);
    }
    for (const read of this.#reads.splice(0)) this.#redirect(read.connection, read.frame.id);
  }

  #masterDuties(now: number): void {
    if (this.#o.digestEveryMs > 0 && now - this.#lastDigestMarkAt >= this.#o.digestEveryMs) {
      this.#lastDigestMarkAt = now;
      this.#o.replica.propose({ clientId: `${DIGEST_MARK}${this.#o.bootNonce}`, seq: ++this.#digestSeq, payload: new Uint8Array(0) }, now);
    }
    for (const session of this.#sessions.takeExpired(now)) {
      this.#o.logger.info({ session }, 'session lease expired');
      this.#proposeInternal({ type: 'ExpireSession', session }, `expire:${session}`, 1, now);
    }
    // Lock-delays end in the machine's time: compare with the stamp the LockDelayEnd would get.
    const stampNow = this.#o.replica.stampNow(now);
    for (const delay of this.#o.machine().pendingLockDelays()) {
      if (delay.endsMs > stampNow) break;
      if (this.#delaysInFlight.has(delay.path)) continue;
      this.#delaysInFlight.add(delay.path);
      this.#proposeInternal({ type: 'LockDelayEnd', path: delay.path }, `delay:${delay.path}`, delay.endsMs, now);
    }
  }

  #proposeInternal(command: MachineCommand, clientId: string, seq: number, now: number): void {
    const outcome = this.#o.replica.propose({ clientId, seq, payload: encodeFrame(command) }, now);
    if (!outcome.ok && outcome.reason === 'not-master') this.#delaysInFlight.clear();
  }

  #serveReads(now: number): void {
    if (this.#reads.length === 0 || !this.#o.replica.canServeReads(now)) return;
    const epoch = this.#epoch();
    const machine = this.#o.machine();
    for (const read of this.#reads.splice(0)) {
      const result: QueryResult = machine.query(read.frame.query);
      // A stale read that reached the master is answered as a fresh one: staleness 0.
      const stale = read.frame.maxStalenessMs === undefined ? {} : { stalenessMs: 0, replica: this.#o.id };
      this.#send(read.connection, { type: 'query-result', id: read.frame.id, epoch, slot: machine.appliedIndex, result, ...stale });
    }
  }

  #expireRequests(now: number): void {
    for (const [key, pending] of this.#pending) {
      if (pending.deadline > now) continue;
      this.#pending.delete(key);
      this.#send(pending.connection, {
        type: 'error',
        id: pending.id,
        code: ErrorCode.NO_QUORUM,
        message: 'no quorum: the write was not chosen in time; retry with the same seq',
      });
    }
    for (let i = this.#reads.length - 1; i >= 0; i--) {
      const read = this.#reads[i];
      if (read === undefined || read.deadline > now) continue;
      this.#reads.splice(i, 1);
      this.#send(read.connection, {
        type: 'error',
        id: read.frame.id,
        code: ErrorCode.NO_QUORUM,
        message: 'no quorum: the master could not confirm its lease in time',
      });
    }
  }

  #redirect(connection: ConnectionId, id: number): void {
    this.#send(connection, { type: 'redirect', id, master: this.#otherMasterAddress(this.#status.masterId), epoch: this.#epoch() });
  }

  /** Where to send a client: the client address of the master, unless none is known or it is us. */
  #otherMasterAddress(masterId: ReplicaId | null): string | null {
    return masterId === null || masterId === this.#o.id ? null : (this.#o.clientAddresses.get(masterId) ?? null);
  }

  #send(to: ConnectionId, frame: ServerFrame): void {
    this.#outbox.push({ to, frame });
  }

  #epoch(): Epoch {
    return this.#status.ballot;
  }
}
