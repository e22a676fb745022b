// The cell simulation (issue 4, "What done looks like" item 9): five replicas, each the real
// Multi-Paxos core with its in-memory acceptor store, driven through the real turn function
// (runtime/turn.ts), applying to the real SQLite state machine and serving clients through the
// real pure CellService (sessions/service.ts), in virtual time with per-replica clocks, a lossy
// peer network, master partitions and crash-restarts. Simulated clients create sessions, keep
// them alive at whoever they think is master, open lock files, acquire, wait, hold and release;
// some vanish so their sessions expire. checkers.ts is consulted after every step.
//
// What stands in for what: a replica's StateMachine object is its state.db, kept whole across a
// crash (the process replays the log above state.db's applied slot; keeping it whole is the case
// where that replay is empty), and the core restarts with `applied: machine.appliedIndex`. The
// CellService (session table, pending requests) is memory and dies with the crash.

import {
  decodeFrame,
  ErrorCode,
  type ClientFrame,
  type CommandResult,
  type LockMode,
  type MachineCommand,
  type ServerFrame,
} from '@paxlock/shared';
import { StateMachine } from '../../src/machine/index.ts';
import type { ChosenEntry, Command, Envelope } from '../../src/paxos/messages.ts';
import { silentLogger, type Config, type ReplicaId } from '../../src/paxos/ports.ts';
import { Replica } from '../../src/paxos/replica.ts';
import { runTurn, type TurnInput } from '../../src/runtime/turn.ts';
import { CellService } from '../../src/sessions/service.ts';
import { MemoryStore } from '../../src/storage/memory-store.ts';
import { rateSpread, SimClock } from '../clock.ts';
import { EventQueue } from '../event-queue.ts';
import { SimRandom } from '../random.ts';
import { CellCheckers, type Belief, type CellViolation } from './checkers.ts';

const REPLICAS: readonly ReplicaId[] = [1, 2, 3, 4, 5];
const CELL = 'sim';

function addressOf(id: ReplicaId): string {
  return `sim://replica-${id}`;
}

export interface CellSeedOptions {
  readonly seed: number;
  /** Planted client bug: a client treats a `queued` answer as a grant. The checkers must catch it. */
  readonly bugQueuedIsHeld?: boolean;
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
    readonly crashes: number;
    readonly partitions: number;
    readonly unleasedAcks: number;
  };
}

type SimEvent =
  | { readonly type: 'turn'; readonly id: ReplicaId }
  | { readonly type: 'tick'; readonly id: ReplicaId; readonly incarnation: number }
  | {
      readonly type: 'peer';
      readonly from: ReplicaId;
      readonly to: ReplicaId;
      readonly message: unknown;
    }
  | {
      readonly type: 'to-replica';
      readonly to: ReplicaId;
      readonly client: number;
      readonly frame: ClientFrame;
    }
  | { readonly type: 'to-client'; readonly client: number; readonly frame: ServerFrame }
  | { readonly type: 'client-wake'; readonly client: number }
  | { readonly type: 'crash'; readonly id: ReplicaId }
  | { readonly type: 'restart'; readonly id: ReplicaId }
  | { readonly type: 'partition'; readonly id: ReplicaId; readonly untilMs: number };

interface Node {
  readonly id: ReplicaId;
  readonly clock: SimClock;
  readonly store: MemoryStore;
  /** state.db: survives crashes. */
  readonly machine: StateMachine;
  readonly random: SimRandom;
  replica: Replica | null;
  service: CellService | null;
  incarnation: number;
  inbox: TurnInput[];
  isTurnScheduled: boolean;
}

type LockPhase = 'none' | 'opening' | 'acquiring' | 'waiting' | 'holding' | 'releasing' | 'closing';

interface Request {
  readonly command: MachineCommand;
  frameId: number;
  resendAtMs: number;
  /** A redirect or error named where to retry; a plain time-out tries another replica. */
  hasNewTarget: boolean;
}

interface Client {
  readonly index: number;
  readonly random: SimRandom;
  readonly lockDelayMs: number;
  readonly vanishAtMs: number | null;
  nonceCount: number;
  target: ReplicaId;
  session: number | null;
  seq: number;
  request: Request | null;
  keepAliveId: number | null;
  keepAliveSentAtMs: number;
  nextKeepAliveAtMs: number;
  phase: LockPhase;
  handle: number;
  path: string;
  mode: LockMode;
  phaseUntilMs: number;
}

export function runCellSeed(options: CellSeedOptions): CellSeedResult {
  return new CellCluster(options).run();
}

class CellCluster {
  readonly #o: CellSeedOptions;
  readonly #r: SimRandom;
  readonly #queue = new EventQueue<SimEvent>();
  readonly #nodes = new Map<ReplicaId, Node>();
  readonly #clients: Client[] = [];
  readonly #checkers: CellCheckers;
  readonly #config: Omit<Config, 'id'>;
  readonly #sessionLeaseMs: number;
  readonly #dropRate: number;
  /** Frame id -> session, for the KeepAlive acks the checkers attribute. */
  readonly #keepAliveSession = new Map<number, number>();
  readonly #expired = new Set<number>();
  readonly #safetyMs: number;
  readonly #endMs: number;
  #isolated: { id: ReplicaId; untilMs: number } | null = null;
  #now = 0;
  #frameId = 0;
  #slotsApplied = 0;
  #sessionsCreated = 0;
  #crashes = 0;
  #partitions = 0;

  constructor(options: CellSeedOptions) {
    this.#o = options;
    this.#r = new SimRandom(options.seed, 0x63656c6c);
    const r = this.#r;
    const leaseMs = r.pick([500, 1000]);
    const maxDriftRate = r.pick([0.001, 0.01, 0.05]);
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
    };
    const spread = rateSpread(maxDriftRate);
    this.#checkers = new CellCheckers({ clockSpread: spread });
    // Session leases at the low end of the allowed range, so expiries happen within a run.
    this.#sessionLeaseMs = r.pick([1000, 1500, 2000]);
    this.#dropRate = r.pick([0, 0.01, 0.05]);
    this.#safetyMs = r.pick([4000, 6000]);
    this.#endMs = this.#safetyMs + 3000;
    for (const id of REPLICAS) {
      const node: Node = {
        id,
        clock: new SimClock({
          globalNow: 0,
          localStart: r.range(0, 1e6),
          rate: 1 + r.range(-spread, spread),
        }),
        store: new MemoryStore(),
        machine: StateMachine.createInMemory({ cell: CELL }),
        random: r.fork(id),
        replica: null,
        service: null,
        incarnation: 0,
        inbox: [],
        isTurnScheduled: false,
      };
      this.#nodes.set(id, node);
      this.#start(node);
    }
    const clientCount = r.pick([3, 4, 6]);
    for (let index = 0; index < clientCount; index++) {
      const random = r.fork(100 + index);
      this.#clients.push({
        index,
        random,
        lockDelayMs: random.chance(0.4) ? random.pick([100, 300]) : 0,
        vanishAtMs: random.chance(0.3) ? random.range(500, this.#safetyMs) : null,
        nonceCount: 0,
        target: random.pick(REPLICAS),
        session: null,
        seq: 0,
        request: null,
        keepAliveId: null,
        keepAliveSentAtMs: 0,
        nextKeepAliveAtMs: 0,
        phase: 'none',
        handle: 0,
        path: '',
        mode: 'exclusive',
        phaseUntilMs: 0,
      });
      this.#queue.push(r.range(0, 50), { type: 'client-wake', client: index });
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
  }

  run(): CellSeedResult {
    for (;;) {
      const next = this.#queue.pop();
      if (next === undefined || next.at > this.#endMs) break;
      this.#now = next.at;
      this.#step(next.event);
      this.#checkBeliefs();
      if (this.#checkers.violations.length > 0) break;
    }
    return {
      seed: this.#o.seed,
      violations: this.#checkers.violations,
      stats: {
        simulatedMs: this.#now,
        slotsApplied: this.#slotsApplied,
        sessionsCreated: this.#sessionsCreated,
        sessionsExpired: this.#expired.size,
        grants: this.#checkers.grantsChecked,
        expiriesChecked: this.#checkers.expiriesChecked,
        digestsCompared: this.#checkers.digestsCompared,
        crashes: this.#crashes,
        partitions: this.#partitions,
        unleasedAcks: this.#checkers.unleasedAcks,
      },
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
        node.inbox.push({ type: 'message', from: event.from, message: event.message });
        this.#scheduleTurn(node);
        return;
      }
      case 'to-replica': {
        const node = this.#node(event.to);
        if (node.service === null) return;
        const now = this.#local(node);
        node.service.onClientFrame(event.client, event.frame, now);
        this.#drainOutbox(node);
        if (node.service.hasProposals) this.#scheduleTurn(node);
        return;
      }
      case 'to-client':
        this.#onClientFrame(this.#clientAt(event.client), event.frame);
        return;
      case 'client-wake':
        this.#wake(this.#clientAt(event.client));
        this.#queue.push(this.#now + 20, event);
        return;
      case 'crash': {
        const node = this.#node(event.id);
        if (node.replica === null) return;
        this.#crashes++;
        node.replica = null;
        node.service = null;
        node.inbox = [];
        this.#queue.push(this.#now + this.#r.range(100, 1500), { type: 'restart', id: node.id });
        return;
      }
      case 'restart':
        this.#start(this.#node(event.id));
        return;
      case 'partition':
        if (this.#isolated !== null && this.#isolated.untilMs > this.#now) return;
        this.#partitions++;
        this.#isolated = { id: event.id, untilMs: event.untilMs };
        return;
    }
  }

  #isCut(from: ReplicaId, to: ReplicaId): boolean {
    const cut = this.#isolated;
    if (cut === null || cut.untilMs <= this.#now) return false;
    return from === cut.id || to === cut.id;
  }

  #clientAt(index: number): Client {
    const client = this.#clients[index];
    if (client === undefined) throw new RangeError(`no client ${index}`);
    return client;
  }

  // --- replicas ----------------------------------------------------------------------------------

  #start(node: Node): void {
    node.incarnation++;
    const now = this.#local(node);
    const replica = new Replica({
      config: { ...this.#config, id: node.id },
      random: node.random.fork(node.incarnation),
      logger: silentLogger,
      durable: node.store.load(),
      now,
      applied: node.machine.appliedIndex,
    });
    node.replica = replica;
    const checkers = this.#checkers;
    const machine = node.machine;
    // The service proposes ExpireSession itself (not through takeProposals); this view of the
    // replica lets the session-lease check see each proposal at the instant it is made.
    const replicaView = {
      propose: (command: Command, at: number) => {
        const decoded = decodeFrame(command.payload);
        const value = decoded.ok ? (decoded.value as { type?: unknown; session?: unknown }) : null;
        if (value !== null && value.type === 'ExpireSession' && typeof value.session === 'number') {
          checkers.onExpireProposed({ session: value.session, replica: node.id, atMs: this.#now });
        }
        return replica.propose(command, at);
      },
      canServeReads: (at: number) => replica.canServeReads(at),
      status: (at: number) => replica.status(at),
    };
    // The machine as the service sees it; apply() is watched for grants, expiries and digests.
    const machineView = {
      apply: (entry: Parameters<StateMachine['apply']>[0]) => {
        const outcome = machine.apply(entry);
        this.#onApplied(node, entry.slot, entry.commands, outcome.results, outcome.events);
        return outcome;
      },
      query: (query: unknown) => machine.query(query),
      pendingLockDelays: () => machine.pendingLockDelays(),
      digest: () => machine.digest(),
      get appliedIndex() {
        return machine.appliedIndex;
      },
    };
    node.service = new CellService(
      {
        id: node.id,
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
    this.#queue.push(this.#now + this.#r.range(0, 10), {
      type: 'tick',
      id: node.id,
      incarnation: node.incarnation,
    });
  }

  #scheduleTurn(node: Node): void {
    if (node.isTurnScheduled) return;
    node.isTurnScheduled = true;
    this.#queue.push(this.#now + this.#r.range(0, 0.2), { type: 'turn', id: node.id });
  }

  #turn(node: Node): void {
    node.isTurnScheduled = false;
    const { replica, service } = node;
    if (replica === null || service === null) return;
    const now = this.#local(node);
    const proposals = service.takeProposals();
    const inputs: TurnInput[] = [
      ...node.inbox.splice(0),
      ...proposals.map((command): TurnInput => ({ type: 'propose', command })),
    ];
    try {
      const wiring = {
        replica,
        store: node.store,
        logger: silentLogger,
        send: (envelope: Envelope) => {
          this.#sendPeer(node.id, envelope);
        },
        apply: (entry: ChosenEntry) => {
          service.apply(entry, now);
        },
      };
      const result = runTurn(wiring, inputs, now);
      proposals.forEach((command, i) => {
        const outcome = result.proposals[i];
        if (outcome !== undefined) service.onProposed(command, outcome);
      });
      service.afterTurn(now);
      // afterTurn may have proposed (ExpireSession, LockDelayEnd, digest marks): run them now,
      // as the process does on its next event-loop turn.
      for (let i = 0; i < 4 && replica.hasReady(); i++) runTurn(wiring, [], now);
    } catch (err: unknown) {
      // The sim reports a broken assertion in production code as a failure of the seed.
      this.#checkers.fail(
        'replica-assertion',
        this.#now,
        `replica ${node.id}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
      return;
    }
    this.#drainOutbox(node);
    const locks = node.machine.query({ type: 'ListLocks' });
    if (locks.type === 'locks') this.#checkers.onReplicaLocks(node.id, this.#now, locks.locks);
  }

  #sendPeer(from: ReplicaId, envelope: Envelope): void {
    if (this.#r.chance(this.#dropRate)) return;
    const copies = this.#r.chance(0.02) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      // A deep copy: the receiver gets bytes' worth of data, never the sender's objects.
      const delay = this.#r.chance(0.03) ? this.#r.range(20, 150) : this.#r.range(0.5, 5);
      this.#queue.push(this.#now + delay, {
        type: 'peer',
        from,
        to: envelope.to,
        message: structuredClone(envelope.message),
      });
    }
  }

  #drainOutbox(node: Node): void {
    const service = node.service;
    const replica = node.replica;
    if (service === null || replica === null) return;
    const hasLease = replica.canServeReads(this.#local(node));
    for (const out of service.takeOutbox()) {
      if (out.frame.type === 'keep-alive-ack') {
        const session = this.#keepAliveSession.get(out.frame.id);
        if (session !== undefined)
          this.#checkers.onKeepAliveAck({ session, atMs: this.#now, hasLease });
      }
      if (this.#r.chance(0.01)) continue; // a lost client frame
      this.#queue.push(this.#now + this.#r.range(0.5, 4), {
        type: 'to-client',
        client: out.to,
        frame: structuredClone(out.frame),
      });
    }
  }

  #onApplied(
    node: Node,
    slot: number,
    commands: readonly unknown[],
    results: readonly CommandResult[],
    events: readonly { readonly type: string; readonly sequencer?: string }[],
  ): void {
    this.#slotsApplied++;
    commands.forEach((command, i) => {
      const result = results[i];
      const c = command as { type?: unknown; session?: unknown; seq?: unknown } | null;
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
      if (event.type === 'lock-granted' && event.sequencer !== undefined) {
        this.#checkers.onGrant({
          replica: node.id,
          slot,
          atMs: this.#now,
          sequencer: event.sequencer,
        });
      }
    }
    if (slot % 8 === 0)
      this.#checkers.onDigest({
        replica: node.id,
        slot,
        atMs: this.#now,
        digest: node.machine.digest(),
      });
  }

  // --- clients -----------------------------------------------------------------------------------

  #send(client: Client, frame: ClientFrame): void {
    if (this.#r.chance(0.01)) return;
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
    if (client.session !== null && this.#now >= client.nextKeepAliveAtMs) {
      // No answer to the last KeepAlive: that replica may be down or cut off; try another.
      if (client.keepAliveId !== null) client.target = client.random.pick(REPLICAS);
      const id = ++this.#frameId;
      client.keepAliveId = id;
      this.#keepAliveSession.set(id, client.session);
      client.nextKeepAliveAtMs = this.#now + this.#sessionLeaseMs / 4;
      this.#send(client, { type: 'keep-alive', id, session: client.session, eventSeqSeen: 0 });
    }
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
        client.path = `/ls/${CELL}/lock-${client.random.int(3)}`;
        client.phase = 'opening';
        this.#issue(client, {
          type: 'Open',
          session,
          seq: ++client.seq,
          path: client.path,
          create: 'may',
          ephemeral: false,
          directory: false,
          eventMask: 0,
          lockDelayMs: client.lockDelayMs,
        });
        return;
      case 'waiting':
        // Waited long enough for lock-granted: give up the handle (Close cancels the wait).
        client.phase = 'closing';
        this.#issue(client, { type: 'Close', session, seq: ++client.seq, handle: client.handle });
        return;
      case 'holding':
        client.phase = 'releasing';
        this.#issue(client, { type: 'Release', session, seq: ++client.seq, handle: client.handle });
        return;
      case 'opening':
      case 'acquiring':
      case 'releasing':
      case 'closing':
        return;
    }
  }

  #issue(client: Client, command: MachineCommand): void {
    const request: Request = { command, frameId: 0, resendAtMs: 0, hasNewTarget: false };
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

  #onClientFrame(client: Client, frame: ServerFrame): void {
    if (this.#isVanished(client)) return;
    switch (frame.type) {
      case 'keep-alive-ack':
        if (frame.id === client.keepAliveId) client.keepAliveId = null;
        return;
      case 'redirect': {
        const target = this.#targetOf(frame.master);
        client.target = target ?? client.random.pick(REPLICAS);
        if (client.request?.frameId === frame.id) {
          client.request.resendAtMs = this.#now + 10;
          client.request.hasNewTarget = true;
        }
        if (frame.id === client.keepAliveId) client.nextKeepAliveAtMs = this.#now + 10;
        return;
      }
      case 'error':
        if (frame.code === ErrorCode.SESSION_EXPIRED) {
          this.#loseSession(client);
          return;
        }
        if (client.request?.frameId === frame.id) {
          client.request.resendAtMs = this.#now + 10;
          client.request.hasNewTarget = true;
        }
        return;
      case 'event':
        if (
          frame.event.type === 'lock-granted' &&
          client.phase === 'waiting' &&
          frame.event.handle === client.handle &&
          frame.session === client.session
        ) {
          client.phase = 'holding';
          client.phaseUntilMs = this.#now + client.random.range(20, 400);
        }
        return;
      case 'result':
        if (client.request?.frameId !== frame.id) return;
        client.request = null;
        this.#onResult(client, frame.result);
        return;
      case 'query-result':
      case 'status':
      case 'master-failover':
        return;
    }
  }

  #loseSession(client: Client): void {
    client.session = null;
    client.request = null;
    client.keepAliveId = null;
    client.phase = 'none';
    client.seq = 0;
  }

  #onResult(client: Client, result: CommandResult): void {
    if (result.type === 'session-created') {
      this.#sessionsCreated++;
      client.session = result.session;
      client.nextKeepAliveAtMs = this.#now;
      client.phase = 'none';
      return;
    }
    if (result.type === 'error' && result.code === ErrorCode.SESSION_EXPIRED) {
      this.#loseSession(client);
      return;
    }
    const session = client.session;
    if (session === null) return;
    switch (client.phase) {
      case 'opening':
        if (result.type !== 'opened') {
          client.phase = 'none';
          return;
        }
        client.handle = result.handle;
        client.mode = client.random.chance(0.7) ? 'exclusive' : 'shared';
        client.phase = 'acquiring';
        this.#issue(client, {
          type: 'Acquire',
          session,
          seq: ++client.seq,
          handle: client.handle,
          mode: client.mode,
          wait: client.random.chance(0.5),
        });
        return;
      case 'acquiring':
        if (
          result.type === 'acquired' ||
          (result.type === 'queued' && this.#o.bugQueuedIsHeld === true)
        ) {
          client.phase = 'holding';
          client.phaseUntilMs = this.#now + client.random.range(20, 400);
        } else if (result.type === 'queued') {
          client.phase = 'waiting';
          client.phaseUntilMs = this.#now + client.random.range(200, 1500);
        } else {
          client.phase = 'closing';
          this.#issue(client, { type: 'Close', session, seq: ++client.seq, handle: client.handle });
        }
        return;
      case 'releasing':
        client.phase = 'closing';
        this.#issue(client, { type: 'Close', session, seq: ++client.seq, handle: client.handle });
        return;
      case 'closing':
        client.phase = 'none';
        client.phaseUntilMs = this.#now + client.random.range(0, 200);
        return;
      case 'none':
      case 'waiting':
      case 'holding':
        return;
    }
  }

  /** Client beliefs, ended by a Release/Close sent or by the session's expiry applied anywhere. */
  #checkBeliefs(): void {
    const beliefs: Belief[] = [];
    for (const client of this.#clients) {
      if (client.session === null || this.#expired.has(client.session)) continue;
      if (client.phase !== 'holding') continue;
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
