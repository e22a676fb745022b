// One seed of the deterministic simulation: a five-replica cell in virtual time, driving the
// real Replica through the production turn (runtime/turn.ts) with in-memory acceptor stores,
// simulated clocks, a faulty network, crash-restarts, graceful resignations of the master and a
// client workload, checking every invariant after every step (checkers.ts).
//
// A run has two phases (TigerBeetle): the safety phase, with the seed's fault mix switched on;
// then the liveness phase, at `healAt`: every partition heals, the links stop losing,
// duplicating and holding back messages, every crashed replica restarts, and no more faults
// come. From then on a master must emerge and client operations must complete within the stated
// bounds (liveness.ts, shared with the cell mode), and every replica must catch up.
//
// Single-threaded and seeded: no real time, no Math.random; every random draw comes from a
// stream forked from the seed, so a seed replays exactly.

import { AssertionError, assert, assertNever } from '@paxlock/shared';
import type {
  Admission,
  ChosenEntry,
  Command,
  Envelope,
  Message,
  MessageType,
} from '../src/paxos/messages.ts';
import type { Logger, PlantedBugs, ReplicaId } from '../src/paxos/ports.ts';
import type { Ready } from '../src/paxos/ready.ts';
import { Replica } from '../src/paxos/replica.ts';
import { runTurn, type TurnInput, type TurnStage, type TurnWiring } from '../src/runtime/turn.ts';
import { MemoryStore } from '../src/storage/memory-store.ts';
import { Checkers, identity, type Violation } from './checkers.ts';
import { isFaultPointInteresting } from './paxos-checks.ts';
import { rateSpread, SimClock } from './clock.ts';
import { EventQueue } from './event-queue.ts';
import { describeValue, encodePut, KvMachine, valueDigest, type KvSnapshot } from './kv.ts';
import { SimNetwork, type LinkFaults } from './network.ts';
import {
  describePlan,
  diskEventRandom,
  drawDiskId,
  planSeed,
  REPLICAS,
  resignEventRandom,
  type SeedPlan,
} from './plan.ts';
import { SimRandom } from './random.ts';
import {
  AckedSlots,
  catchUpFailures,
  isCaughtUp,
  livenessBounds,
  LivenessPhase,
  type ReplicaProgress,
} from './liveness.ts';
import { formatObject, Trace } from './trace.ts';
import { SimClient, type ClientOp, type ClientReply, type ClientRequest } from './workload.ts';

export interface FaultCounts {
  drop: number;
  duplicate: number;
  delay: number;
  partition: number;
  oneWayPartition: number;
  crash: number;
  restart: number;
  clockDrift: number;
  /** Graceful resignations of a master (Replica.resign), the seeds' resign fault family. */
  resign: number;
  /** Disk losses: a replica killed and brought back on a fresh disk with a new disk id. */
  diskLoss: number;
}

/** Every fault kind at zero: the start of a seed's count and of a run's summary. */
export function zeroFaultCounts(): FaultCounts {
  return {
    drop: 0,
    duplicate: 0,
    delay: 0,
    partition: 0,
    oneWayPartition: 0,
    crash: 0,
    restart: 0,
    clockDrift: 0,
    resign: 0,
    diskLoss: 0,
  };
}

export interface SeedResult {
  readonly seed: number;
  readonly plan: string;
  readonly simulatedMs: number;
  readonly delivered: number;
  readonly faults: FaultCounts;
  readonly violation: Violation | null;
  readonly traceHash: number;
  readonly traceTail: readonly string[];
  readonly stats: {
    readonly events: number;
    readonly chosenSlots: number;
    readonly writesAcked: number;
    readonly readsServed: number;
    readonly masterAfterHealMs: number | null;
    /** Replacement disks admitted through the log ('admit' values chosen). */
    readonly admissions: number;
    /** Replicas still learners (a disk not yet admitted) when the run ended. */
    readonly learnersAtEnd: number;
  };
}

export interface RunSeedOptions {
  readonly seed: number;
  readonly bugs?: PlantedBugs;
  /** Prints every simulator event and core info/warn line as it happens (replay mode). */
  readonly echo?: (line: string) => void;
  /** With echo: also print the core's debug lines (one per message). */
  readonly echoDebug?: boolean;
  /**
   * Check every promise and acceptance on the wire against what its sender has made durable
   * (default on). Off, only the end-to-end checkers remain: the planted-bug test uses that to show
   * they catch an unpersisted answer by its consequences too.
   */
  readonly wireChecks?: boolean;
}

type SimEvent =
  | {
      readonly kind: 'deliver';
      readonly from: ReplicaId;
      readonly to: ReplicaId;
      readonly messageType: MessageType;
      /** A fresh copy, unknown until the turn validates it, as bytes off a socket would be. */
      readonly message: unknown;
      /** The sender's typed message, for the checkers only (the receiver gets the copy). */
      readonly sent: Message;
    }
  | { readonly kind: 'turn'; readonly replica: ReplicaId; readonly incarnation: number }
  | { readonly kind: 'tick'; readonly replica: ReplicaId; readonly incarnation: number }
  | { readonly kind: 'request'; readonly to: ReplicaId; readonly request: ClientRequest }
  | { readonly kind: 'reply'; readonly client: number; readonly reply: ClientReply }
  | { readonly kind: 'client-timer'; readonly client: number; readonly token: number }
  | {
      readonly kind: 'snapshot';
      readonly from: ReplicaId;
      readonly to: ReplicaId;
      readonly snapshot: KvSnapshot;
      /** The sender's admissions, shipped with the snapshot (installSnapshot takes them). */
      readonly admitted: readonly Admission[];
    }
  | {
      readonly kind: 'snapshot-pull';
      readonly server: ReplicaId;
      readonly asker: ReplicaId;
      readonly slotAtLeast: number;
    }
  | { readonly kind: 'partition' }
  | { readonly kind: 'heal-partition'; readonly generation: number }
  | { readonly kind: 'crash' }
  | { readonly kind: 'restart'; readonly replica: ReplicaId; readonly incarnation: number }
  | { readonly kind: 'drift' }
  | { readonly kind: 'resign' }
  | { readonly kind: 'disk-loss' }
  | {
      readonly kind: 'stop-after-resign';
      readonly replica: ReplicaId;
      readonly incarnation: number;
    }
  | { readonly kind: 'heal-all' }
  | { readonly kind: 'liveness-deadline' }
  | { readonly kind: 'end' };

interface ProposalOrigin {
  readonly identity: string;
  readonly client: number;
  readonly opId: number;
}

interface SimNode {
  readonly id: ReplicaId;
  readonly clock: SimClock;
  /** The acceptor store (paxos.db): replaced by an empty one when the disk is lost. */
  store: MemoryStore;
  /** The disk's id (kept in paxos.db): 0 for the founding disk, random for a replacement. */
  diskId: number;
  /** The core's Status.isVoter: false while a replacement disk is not yet admitted. */
  isVoter: boolean;
  readonly random: SimRandom;
  readonly logger: Logger;
  replica: Replica | null;
  wiring: TurnWiring | null;
  incarnation: number;
  machine: KvMachine;
  /** The machine's durable state (state.db): what survives a crash. */
  checkpoint: KvSnapshot | null;
  checkpointsSinceCompaction: number;
  pendingSnapshotTaken: number | null;
  inbox: TurnInput[];
  /** One origin per 'propose' input in the inbox, in order. */
  origins: ProposalOrigin[];
  isTurnScheduled: boolean;
  /** Client writes this replica answers once they apply here: identity -> who asked. */
  readonly waiters: Map<string, { readonly client: number; readonly opId: number }>;
  role: 'follower' | 'candidate' | 'master' | 'down';
  leaseUntil: number | null;
  masterId: ReplicaId | null;
  commit: number;
}

const MESSAGE_CODES: Record<MessageType, number> = {
  prepare: 1,
  promise: 2,
  reject: 3,
  accept: 4,
  accepted: 5,
  heartbeat: 6,
  'heartbeat-ack': 7,
  'catch-up-request': 8,
  'catch-up': 9,
  resign: 10,
  withdraw: 11,
};

const ROLE_CODES = { follower: 1, candidate: 2, master: 3, down: 4 } as const;

export function runSeed(options: RunSeedOptions): SeedResult {
  const sim = new Simulation(options);
  return sim.run();
}

class Simulation {
  readonly #plan: SeedPlan;
  readonly #queue = new EventQueue<SimEvent>();
  readonly #trace: Trace;
  readonly #checkers = new Checkers(REPLICAS.length);
  readonly #network: SimNetwork;
  readonly #faultRandom: SimRandom;
  readonly #simRandom: SimRandom;
  /** Resignations' times and targets: a stream of their own, so #faultRandom's draws stay put. */
  readonly #resignRandom: SimRandom;
  /** Disk losses' times, victims and disk ids: a stream of their own (plan.ts, DISK_STREAM). */
  readonly #diskRandom: SimRandom;
  readonly #nodes = new Map<ReplicaId, SimNode>();
  readonly #clients: SimClient[] = [];
  readonly #faults: FaultCounts = zeroFaultCounts();
  readonly #echoDebug: boolean;
  readonly #wireChecks: boolean;
  readonly #healAt: number;
  readonly #liveness: LivenessPhase;
  #now = 0;
  #events = 0;
  #phase: 'safety' | 'liveness' = 'safety';
  #partitionGeneration = 0;
  #writesAcked = 0;
  #readsServed = 0;
  /** The highest slot acknowledged to a client, over time (liveness.ts). */
  readonly #acked = new AckedSlots();
  #isDone = false;

  constructor(options: RunSeedOptions) {
    this.#plan = planSeed(options.seed, options.bugs);
    const root = new SimRandom(options.seed, 1);
    this.#network = new SimNetwork(root.fork(2), this.#plan.faults.links);
    this.#faultRandom = root.fork(3);
    this.#simRandom = root.fork(4);
    this.#resignRandom = resignEventRandom(options.seed);
    this.#diskRandom = diskEventRandom(options.seed);
    this.#echoDebug = options.echoDebug ?? false;
    this.#wireChecks = options.wireChecks ?? true;
    this.#trace = new Trace({ capacity: 400, echo: options.echo ?? null });
    this.#healAt = this.#plan.safetyMs;
    this.#liveness = new LivenessPhase({
      healAt: this.#healAt,
      bounds: livenessBounds({
        config: this.#plan.config,
        clientTimeoutMs: this.#plan.clientTimeoutMs,
      }),
    });
    for (const id of REPLICAS) {
      const rate = this.#plan.clockRates[id - 1] ?? 1;
      const clockStart = root.range(0, 1e6);
      const node: SimNode = {
        id,
        clock: new SimClock({ globalNow: 0, localStart: clockStart, rate }),
        store: new MemoryStore(),
        diskId: 0,
        isVoter: true,
        random: root.fork(100 + id),
        logger: this.#coreLogger(id),
        replica: null,
        wiring: null,
        incarnation: 0,
        machine: new KvMachine(),
        checkpoint: null,
        checkpointsSinceCompaction: 0,
        pendingSnapshotTaken: null,
        inbox: [],
        origins: [],
        isTurnScheduled: false,
        waiters: new Map(),
        role: 'down',
        leaseUntil: null,
        masterId: null,
        commit: 0,
      };
      this.#nodes.set(id, node);
    }
    if (this.#plan.clockRates.some((r) => r !== 1))
      this.#faults.clockDrift += this.#plan.clockRates.filter((r) => r !== 1).length;
    for (let i = 0; i < this.#plan.clients; i++) {
      this.#clients.push(
        new SimClient({
          index: i,
          random: root.fork(200 + i),
          replicas: REPLICAS,
          keys: this.#plan.keys,
          writeShare: i < this.#plan.readerClients ? 0 : this.#plan.writeShare,
          timeoutMs: this.#plan.clientTimeoutMs,
          hooks: {
            send: (to, request) => this.#sendToReplica(to, request),
            setTimer: (delayMs, token) =>
              this.#queue.push(this.#now + delayMs, { kind: 'client-timer', client: i, token }),
            completed: (op, reply, now) => this.#onClientCompleted(i, op, reply, now),
          },
        }),
      );
    }
  }

  run(): SeedResult {
    const plan = this.#plan;
    this.#trace.line(0, 0, `seed ${plan.seed}: ${describePlan(plan)}`);
    for (const node of this.#nodes.values()) this.#start(node);
    // Token -1 starts a client's first operation (its own timers use positive tokens).
    this.#clients.forEach((_, i) =>
      this.#queue.push(this.#faultRandom.range(0, 50), {
        kind: 'client-timer',
        client: i,
        token: -1,
      }),
    );
    const f = plan.faults;
    this.#scheduleExp(f.partitionMeanMs, { kind: 'partition' });
    this.#scheduleExp(f.crashMeanMs, { kind: 'crash' });
    this.#scheduleExp(f.driftMeanMs, { kind: 'drift' });
    this.#scheduleResign();
    this.#scheduleDiskLoss();
    this.#queue.push(this.#healAt, { kind: 'heal-all' });
    const { bounds } = this.#liveness;
    this.#queue.push(this.#liveness.masterDeadlineAt, { kind: 'liveness-deadline' });
    this.#queue.push(this.#liveness.masterDeadlineAt + bounds.operationWithinMs + 2000, {
      kind: 'end',
    });

    while (!this.#isDone && !this.#checkers.hasViolation()) {
      const next = this.#queue.pop();
      if (next === undefined) break;
      assert(next.at >= this.#now, 'sim: time went backwards');
      this.#now = next.at;
      this.#checkers.setNow(next.at);
      this.#events++;
      this.#handle(next.event);
      this.#checkLeases();
      if (this.#phase === 'liveness' && !this.#checkers.hasViolation()) this.#checkLivenessDone();
    }
    const violation = this.#checkers.violation;
    if (violation !== null)
      this.#trace.line(this.#now, 0, `VIOLATION ${violation.invariant}: ${violation.detail}`);
    this.#trace.mix(violation === null ? 0 : 1, Math.round(this.#now));
    return {
      seed: plan.seed,
      plan: describePlan(plan),
      simulatedMs: this.#now,
      delivered: this.#network.counters.delivered,
      faults: this.#faults,
      violation,
      traceHash: this.#trace.hash,
      traceTail: violation === null ? [] : this.#trace.tail(80),
      stats: {
        events: this.#events,
        chosenSlots: this.#checkers.chosenSlots,
        writesAcked: this.#writesAcked,
        readsServed: this.#readsServed,
        masterAfterHealMs:
          this.#liveness.masterAt === null ? null : this.#liveness.masterAt - this.#healAt,
        admissions: this.#checkers.paxos.admissionsChosen,
        learnersAtEnd: [...this.#nodes.values()].filter((n) => n.replica !== null && !n.isVoter)
          .length,
      },
    };
  }

  // --- events ---------------------------------------------------------------------------------

  #handle(event: SimEvent): void {
    switch (event.kind) {
      case 'deliver':
        this.#onDeliver(event);
        return;
      case 'turn': {
        const node = this.#node(event.replica);
        if (node.incarnation === event.incarnation) this.#turn(node);
        return;
      }
      case 'tick': {
        const node = this.#node(event.replica);
        if (node.incarnation !== event.incarnation || node.replica === null) return;
        node.inbox.push({ type: 'tick' });
        this.#turn(node);
        this.#queue.push(this.#now + this.#plan.tickMs / node.clock.rate, {
          kind: 'tick',
          replica: node.id,
          incarnation: node.incarnation,
        });
        return;
      }
      case 'request':
        this.#onRequest(event.to, event.request);
        return;
      case 'reply': {
        this.#network.counters.delivered++;
        const client = this.#clients[event.client];
        assert(client !== undefined, 'sim: reply to an unknown client');
        client.onReply(event.reply, this.#now);
        return;
      }
      case 'client-timer': {
        const client = this.#clients[event.client];
        assert(client !== undefined, 'sim: timer for an unknown client');
        if (event.token === -1 && client.op === null && client.completedOps === 0)
          client.startNext(this.#now);
        else client.onTimer(event.token, this.#now);
        this.#checkClientLiveness(client);
        return;
      }
      case 'snapshot':
        this.#onSnapshot(event);
        return;
      case 'snapshot-pull': {
        if (this.#network.isBlocked(event.asker, event.server)) return;
        const server = this.#node(event.server);
        if (server.replica !== null) this.#shipSnapshot(server, event.asker, event.slotAtLeast);
        return;
      }
      case 'partition':
        this.#onPartition();
        return;
      case 'heal-partition':
        if (event.generation === this.#partitionGeneration && this.#network.isPartitioned) {
          this.#network.heal();
          this.#trace.line(this.#now, 0, 'partition healed');
        }
        return;
      case 'crash':
        this.#onCrashFault();
        return;
      case 'restart': {
        const node = this.#node(event.replica);
        if (node.replica === null && node.incarnation === event.incarnation) this.#start(node);
        return;
      }
      case 'drift':
        this.#onDrift();
        return;
      case 'resign':
        this.#onResignFault();
        return;
      case 'disk-loss':
        this.#onDiskLoss();
        return;
      case 'stop-after-resign': {
        // The process's graceful stop: it waited (up to a second) for the successor, then exits.
        const node = this.#node(event.replica);
        if (
          node.replica !== null &&
          node.incarnation === event.incarnation &&
          this.#phase === 'safety'
        )
          this.#crash(node, 'stopped after resigning');
        return;
      }
      case 'heal-all':
        this.#onHealAll();
        return;
      case 'liveness-deadline': {
        const missed = this.#liveness.masterMissed('serve lease reads');
        if (missed !== null) this.#checkers.fail('liveness', missed);
        return;
      }
      case 'end':
        this.#onEnd();
        return;
      default:
        assertNever(event);
    }
  }

  #scheduleExp(meanMs: number, event: SimEvent): void {
    if (meanMs === Infinity) return;
    const delay = -Math.log(1 - this.#faultRandom.next()) * meanMs;
    if (this.#now + delay < this.#healAt) this.#queue.push(this.#now + delay, event);
  }

  // --- replicas -------------------------------------------------------------------------------

  #node(id: ReplicaId): SimNode {
    const node = this.#nodes.get(id);
    assert(node !== undefined, `sim: no replica ${id}`);
    return node;
  }

  #start(node: SimNode): void {
    const isRestart = node.incarnation > 0;
    node.incarnation++;
    const local = node.clock.localAt(this.#now);
    node.machine = KvMachine.restore(node.checkpoint);
    this.#checkers.onMachineRestored(node.id, node.checkpoint);
    node.checkpointsSinceCompaction = 0;
    node.pendingSnapshotTaken = null;
    try {
      node.replica = new Replica({
        config: { ...this.#plan.config, id: node.id },
        random: node.random.fork(node.incarnation),
        logger: node.logger,
        durable: node.store.load(),
        now: local,
        applied: node.machine.applied,
        diskId: node.diskId,
      });
    } catch (err: unknown) {
      this.#replicaThrew(node, err, 'restart');
      return;
    }
    node.wiring = this.#wiring(node);
    node.role = 'follower';
    node.leaseUntil = null;
    node.isVoter = node.replica.status(local).isVoter;
    if (isRestart) this.#faults.restart++;
    this.#trace.mix(10, node.id, node.incarnation);
    this.#trace.line(
      this.#now,
      node.id,
      () =>
        `${isRestart ? 'restarted' : 'started'} (applied ${node.machine.applied}, clock rate ${node.clock.rate.toFixed(4)}${node.diskId === 0 ? '' : `, disk ${node.diskId}${node.isVoter ? '' : ', a learner'}`})`,
    );
    this.#queue.push(this.#now + this.#simRandom.range(0, this.#plan.tickMs), {
      kind: 'tick',
      replica: node.id,
      incarnation: node.incarnation,
    });
    this.#scheduleTurn(node);
  }

  /** Kills a replica; it restarts after `downMs` (default: a draw up to the plan's downMaxMs). */
  #crash(node: SimNode, why: string, downMs?: number): void {
    if (node.replica === null) return;
    node.replica = null;
    node.wiring = null;
    node.incarnation++;
    node.inbox = [];
    node.origins = [];
    node.isTurnScheduled = false;
    node.waiters.clear();
    node.role = 'down';
    node.leaseUntil = null;
    this.#faults.crash++;
    this.#trace.mix(11, node.id, node.incarnation);
    this.#trace.line(this.#now, node.id, `CRASH (${why})`);
    if (this.#phase === 'safety') {
      const at = Math.min(
        this.#now + (downMs ?? this.#faultRandom.range(0, this.#plan.faults.downMaxMs)),
        this.#healAt,
      );
      this.#queue.push(at, { kind: 'restart', replica: node.id, incarnation: node.incarnation });
    } else {
      this.#queue.push(this.#now, {
        kind: 'restart',
        replica: node.id,
        incarnation: node.incarnation,
      });
    }
  }

  /**
   * Replicas that cannot vote: down, or up as a learner (a replacement disk not yet admitted). A
   * learner is unavailable as surely as a crashed replica, and for longer: only a master can
   * admit it, so the fault budget (maxDown) counts it.
   */
  #downCount(): number {
    let n = 0;
    for (const node of this.#nodes.values()) if (node.replica === null || !node.isVoter) n++;
    return n;
  }

  #wiring(node: SimNode): TurnWiring {
    const replica = node.replica!;
    return {
      replica,
      store: this.#checkers.paxos.watchStore(node.id, node.store, () => ({
        diskId: node.diskId,
        isVoter: replica.status(node.clock.localAt(this.#now)).isVoter,
      })),
      logger: node.logger,
      send: (envelope) => this.#sendPeer(node.id, envelope),
      apply: (entry) => this.#apply(node, entry),
      snapshotFor: (to, slot) => this.#shipSnapshot(node, to, slot),
      needSnapshot: (from, slotAtLeast) => this.#pullSnapshot(node, from, slotAtLeast),
      faults: (stage, ready) => this.#turnFault(node, stage, ready),
    };
  }

  #scheduleTurn(node: SimNode): void {
    if (node.isTurnScheduled || node.replica === null) return;
    node.isTurnScheduled = true;
    // A short processing delay lets messages that arrive together share one turn (group commit).
    this.#queue.push(this.#now + this.#simRandom.range(0, 0.2), {
      kind: 'turn',
      replica: node.id,
      incarnation: node.incarnation,
    });
  }

  #turn(node: SimNode): void {
    node.isTurnScheduled = false;
    const replica = node.replica;
    const wiring = node.wiring;
    if (replica === null || wiring === null) return;
    const inputs = node.inbox;
    const origins = node.origins;
    node.inbox = [];
    node.origins = [];
    const local = node.clock.localAt(this.#now);
    let result;
    try {
      result = runTurn(wiring, inputs, local);
    } catch (err: unknown) {
      this.#replicaThrew(node, err, 'turn');
      return;
    }
    this.#trace.mix(20 + node.id, inputs.length, result.readyCount);
    result.proposals.forEach((proposal, i) => {
      const origin = origins[i];
      if (origin === undefined || proposal.ok || proposal.reason === 'duplicate') return;
      const waiter = node.waiters.get(origin.identity);
      if (waiter?.opId === origin.opId) node.waiters.delete(origin.identity);
      this.#reply(node.id, origin.client, {
        type: 'redirect',
        opId: origin.opId,
        masterId: proposal.masterId,
        from: node.id,
      });
    });
    if (result.crashedBefore !== null) {
      this.#crash(node, `fault point before ${result.crashedBefore}`);
      return;
    }
    this.#refreshStatus(node, local);
    if (node.pendingSnapshotTaken !== null && node.replica !== null) {
      const slot = node.pendingSnapshotTaken;
      node.pendingSnapshotTaken = null;
      this.#trace.line(this.#now, node.id, `snapshot taken through slot ${slot}: core may compact`);
      node.replica.snapshotTaken(slot);
      this.#scheduleTurn(node);
    }
  }

  #refreshStatus(node: SimNode, local: number): void {
    const replica = node.replica;
    if (replica === null) return;
    const status = replica.status(local);
    if (status.role !== node.role || status.masterId !== node.masterId) {
      this.#trace.line(
        this.#now,
        node.id,
        `role ${status.role} ballot ${status.ballot.round}.${status.ballot.replica} master ${status.masterId ?? '-'} commit ${status.commit}`,
      );
    }
    if (status.isVoter !== node.isVoter) {
      this.#trace.line(this.#now, node.id, `disk ${node.diskId} admitted: a voter again`);
      node.isVoter = status.isVoter;
    }
    node.role = status.role;
    node.masterId = status.masterId;
    node.leaseUntil = status.leaseUntil;
    node.commit = status.commit;
    this.#trace.mix(ROLE_CODES[status.role], status.ballot.round, status.commit);
    if (
      this.#phase === 'liveness' &&
      this.#liveness.masterAt === null &&
      status.role === 'master' &&
      replica.canServeReads(local)
    ) {
      this.#liveness.onMasterServes(this.#now);
      this.#trace.line(
        this.#now,
        node.id,
        `serves lease reads, ${(this.#now - this.#healAt).toFixed(0)} ms after the heal`,
      );
    }
  }

  #replicaThrew(node: SimNode, err: unknown, where: string): void {
    const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    const kind = err instanceof AssertionError ? 'assertion' : 'exception';
    const stack =
      err instanceof Error && err.stack !== undefined
        ? err.stack.split('\n').slice(1, 5).join(' | ')
        : '';
    this.#checkers.fail(
      'replica-assertion',
      `r${node.id} threw in ${where} (${kind}): ${text} ${stack}`,
    );
  }

  #turnFault(node: SimNode, stage: TurnStage, ready: Ready): 'crash' | 'continue' {
    const f = this.#plan.faults;
    if (this.#phase !== 'safety' || f.turnCrashRate === 0 || this.#downCount() >= f.maxDown)
      return 'continue';
    if (!isFaultPointInteresting(stage, ready) || !this.#faultRandom.chance(f.turnCrashRate))
      return 'continue';
    this.#trace.line(this.#now, node.id, `fault point: crash before ${stage}`);
    return 'crash';
  }

  // --- peer network ---------------------------------------------------------------------------

  #sendPeer(from: ReplicaId, envelope: Envelope): void {
    if (this.#wireChecks)
      this.#checkers.paxos.onSent(from, envelope.message, this.#node(from).store);
    const delays = this.#network.plan();
    if (delays.length === 0) this.#faults.drop++;
    if (delays.length > 1) this.#faults.duplicate++;
    for (const delay of delays) {
      if (delay > this.#plan.faults.links.delayMaxMs) this.#faults.delay++;
      // Each copy is its own object, as bytes off a socket would be: nothing is shared.
      this.#queue.push(this.#now + delay, {
        kind: 'deliver',
        from,
        to: envelope.to,
        messageType: envelope.message.type,
        message: cloneMessage(envelope.message),
        sent: envelope.message,
      });
    }
  }

  #onDeliver(event: Extract<SimEvent, { kind: 'deliver' }>): void {
    const { from, to, message } = event;
    const node = this.#node(to);
    if (this.#network.isBlocked(from, to) || node.replica === null) {
      this.#network.counters.cut++;
      return;
    }
    this.#network.counters.delivered++;
    if (event.sent.type === 'promise')
      this.#checkers.paxos.onPromiseDelivered(to, from, event.sent);
    this.#trace.mix(MESSAGE_CODES[event.messageType], from, to);
    this.#trace.line(
      this.#now,
      to,
      () => `<- r${from} ${formatObject(message as Record<string, unknown>)}`,
      !this.#echoDebug,
    );
    node.inbox.push({ type: 'message', from, message });
    this.#scheduleTurn(node);
  }

  // --- state machine and snapshots ------------------------------------------------------------

  #apply(node: SimNode, entry: ChosenEntry): void {
    if (!this.#checkers.paxos.onApplying(node.id, entry, node.machine.applied)) return;
    const results = node.machine.applyEntry(entry);
    this.#trace.mix(30, entry.slot, valueDigest(entry.value));
    this.#checkers.onApplied(node.id, entry, node.machine.hash, results);
    if (node.machine.applied % this.#plan.checkpointEvery === 0) {
      node.checkpoint = node.machine.snapshot();
      node.checkpointsSinceCompaction++;
      if (node.checkpointsSinceCompaction >= this.#plan.compactEveryCheckpoints) {
        node.checkpointsSinceCompaction = 0;
        node.pendingSnapshotTaken = node.checkpoint.applied;
      }
    }
    for (const result of results) {
      const id = identity(result.clientId, result.seq);
      const waiter = node.waiters.get(id);
      if (waiter === undefined || result.status === 'stale') continue;
      node.waiters.delete(id);
      this.#reply(node.id, waiter.client, {
        type: 'write-ok',
        opId: waiter.opId,
        effectSlot: result.effectSlot,
        from: node.id,
      });
    }
    this.#trace.line(
      this.#now,
      node.id,
      () => `applied slot ${entry.slot} ${describeValue(entry.value)}`,
      !this.#echoDebug,
    );
  }

  #shipSnapshot(node: SimNode, to: ReplicaId, slot: number): void {
    const snapshot = node.machine.snapshot();
    if (snapshot.applied < slot) {
      this.#trace.line(
        this.#now,
        node.id,
        `cannot ship a snapshot at or above ${slot} to r${to}: applied only ${snapshot.applied}`,
      );
      return;
    }
    const delays = this.#network.plan();
    const delay = delays[0];
    if (delay === undefined) return;
    this.#trace.line(
      this.#now,
      node.id,
      `ships snapshot through slot ${snapshot.applied} to r${to}`,
    );
    const admitted = node.replica?.admitted() ?? [];
    this.#queue.push(this.#now + delay + 5, {
      kind: 'snapshot',
      from: node.id,
      to,
      snapshot,
      admitted,
    });
  }

  #pullSnapshot(node: SimNode, from: ReplicaId, slotAtLeast: number): void {
    const delay = this.#network.plan()[0];
    if (delay === undefined) return;
    this.#trace.line(
      this.#now,
      node.id,
      `asks r${from} for a snapshot at or above slot ${slotAtLeast}`,
    );
    this.#queue.push(this.#now + delay, {
      kind: 'snapshot-pull',
      server: from,
      asker: node.id,
      slotAtLeast,
    });
  }

  #onSnapshot(event: Extract<SimEvent, { kind: 'snapshot' }>): void {
    const { from, to, snapshot } = event;
    const node = this.#node(to);
    if (this.#network.isBlocked(from, to) || node.replica === null) return;
    if (snapshot.applied <= node.machine.applied) return;
    this.#trace.line(
      this.#now,
      to,
      `installs snapshot through slot ${snapshot.applied} from r${from}`,
    );
    this.#trace.mix(40, to, snapshot.applied);
    this.#checkers.onMachineRestored(to, snapshot);
    node.machine = KvMachine.restore(snapshot);
    // The installed state.db is durable: a crash from here on restarts from it.
    node.checkpoint = snapshot;
    try {
      node.replica.installSnapshot(snapshot.applied, node.clock.localAt(this.#now), event.admitted);
    } catch (err: unknown) {
      this.#replicaThrew(node, err, 'installSnapshot');
      return;
    }
    this.#scheduleTurn(node);
  }

  // --- clients --------------------------------------------------------------------------------

  #sendToReplica(to: ReplicaId, request: ClientRequest): void {
    const delays = this.#network.plan();
    if (delays.length === 0) this.#faults.drop++;
    if (delays.length > 1) this.#faults.duplicate++;
    for (const delay of delays)
      this.#queue.push(this.#now + delay, { kind: 'request', to, request });
  }

  #reply(from: ReplicaId, client: number, reply: ClientReply): void {
    const delays = this.#network.plan();
    if (delays.length === 0) this.#faults.drop++;
    if (delays.length > 1) this.#faults.duplicate++;
    for (const delay of delays)
      this.#queue.push(this.#now + delay, { kind: 'reply', client, reply });
    this.#trace.line(this.#now, from, () => `-> c${client} ${reply.type}`, true);
  }

  #onRequest(to: ReplicaId, request: ClientRequest): void {
    const node = this.#node(to);
    const replica = node.replica;
    if (replica === null) return;
    this.#network.counters.delivered++;
    switch (request.type) {
      case 'write': {
        const id = identity(request.clientId, request.seq);
        const command: Command = {
          clientId: request.clientId,
          seq: request.seq,
          payload: encodePut({ op: 'put', key: request.key, value: id }),
        };
        node.waiters.set(id, { client: request.client, opId: request.opId });
        node.inbox.push({ type: 'propose', command });
        node.origins.push({ identity: id, client: request.client, opId: request.opId });
        this.#scheduleTurn(node);
        return;
      }
      case 'read': {
        const local = node.clock.localAt(this.#now);
        if (replica.canServeReads(local)) {
          const value = node.machine.kv.get(request.key)?.value ?? null;
          this.#reply(to, request.client, { type: 'read-ok', opId: request.opId, value, from: to });
        } else {
          this.#reply(to, request.client, {
            type: 'redirect',
            opId: request.opId,
            masterId: replica.status(local).masterId,
            from: to,
          });
        }
        return;
      }
      default:
        assertNever(request);
    }
  }

  #onClientCompleted(index: number, op: ClientOp, reply: ClientReply, now: number): void {
    const client = this.#clients[index];
    assert(client !== undefined, 'sim: completion for an unknown client');
    this.#trace.mix(50 + index, op.id, reply.type === 'write-ok' ? reply.effectSlot : 0);
    switch (op.kind) {
      case 'write': {
        assert(reply.type === 'write-ok', 'sim: a write completed with a read reply');
        this.#writesAcked++;
        this.#acked.onAcknowledged(reply.effectSlot, now);
        this.#trace.line(
          now,
          reply.from,
          () => `ack ${client.clientId}:${op.seq} put ${op.key} at slot ${reply.effectSlot}`,
        );
        this.#checkers.onWriteAcknowledged({
          clientId: client.clientId,
          seq: op.seq,
          key: op.key,
          effectSlot: reply.effectSlot,
          invokedAt: op.invokedAt,
          doneAt: now,
        });
        break;
      }
      case 'read': {
        assert(reply.type === 'read-ok', 'sim: a read completed with a write reply');
        this.#readsServed++;
        this.#trace.line(
          now,
          reply.from,
          () => `lease read ${op.key} = ${reply.value ?? '(none)'} for ${client.clientId}`,
        );
        this.#checkers.onReadDone({
          clientId: client.clientId,
          key: op.key,
          value: reply.value,
          servedBy: reply.from,
          invokedAt: op.invokedAt,
          doneAt: now,
        });
        break;
      }
      default:
        assertNever(op);
    }
    const overdueMs = this.#liveness.operationOverdueMs(op.invokedAt, now);
    if (this.#phase === 'liveness' && overdueMs !== null) {
      this.#checkers.fail(
        'liveness',
        `${client.clientId}'s ${op.kind} took ${this.#liveness.describeOverdue(overdueMs)}`,
      );
    }
  }

  #checkClientLiveness(client: SimClient): void {
    const op = client.op;
    if (this.#phase !== 'liveness' || op === null) return;
    const overdueMs = this.#liveness.operationOverdueMs(op.invokedAt, this.#now);
    if (overdueMs !== null) {
      this.#checkers.fail(
        'liveness',
        `${client.clientId}'s ${op.kind} (op ${op.id}) is still pending ${this.#liveness.describeOverdue(overdueMs)}`,
      );
    }
  }

  // --- faults ---------------------------------------------------------------------------------

  /** The replica that believes it is master, if exactly one does; else a random live one. */
  #victim(): SimNode | null {
    const alive = [...this.#nodes.values()].filter((n) => n.replica !== null);
    if (alive.length === 0) return null;
    const masters = alive.filter((n) => n.role === 'master');
    if (masters.length > 0 && this.#faultRandom.chance(this.#plan.faults.targetMasterShare))
      return this.#faultRandom.pick(masters);
    return this.#faultRandom.pick(alive);
  }

  #onPartition(): void {
    const f = this.#plan.faults;
    this.#scheduleExp(f.partitionMeanMs, { kind: 'partition' });
    // One partition at a time: a new one replacing a long one would cut every partition short,
    // and the long ones are those that depose a master that still believes it leads.
    if (this.#network.isPartitioned) return;
    const victim = this.#victim();
    if (victim === null) return;
    const others = REPLICAS.filter((id) => id !== victim.id);
    const generation = ++this.#partitionGeneration;
    if (this.#faultRandom.chance(f.oneWayShare)) {
      // One-way: the victim stops hearing (some of) the others, or they stop hearing it.
      const some = others.filter(() => this.#faultRandom.chance(0.7));
      const peers = some.length === 0 ? others : some;
      const isDeaf = this.#faultRandom.chance(0.5);
      if (isDeaf) this.#network.cutOneWay(peers, [victim.id]);
      else this.#network.cutOneWay([victim.id], peers);
      this.#faults.oneWayPartition++;
    } else if (this.#faultRandom.chance(0.5)) {
      // Symmetric: the victim, alone or with one companion, is cut off from the rest.
      const side = [victim.id];
      if (this.#faultRandom.chance(0.4)) side.push(this.#faultRandom.pick(others));
      this.#network.partition(
        side,
        REPLICAS.filter((id) => !side.includes(id)),
      );
      this.#faults.partition++;
    } else {
      // Partial, both ways: the victim loses one or two peers but keeps a majority, and those
      // peers keep hearing everyone else (a bad switch port, not a split cell).
      const cut = others.filter(() => this.#faultRandom.chance(0.35));
      this.#network.partition(
        [victim.id],
        cut.length === 0 ? [this.#faultRandom.pick(others)] : cut.slice(0, 2),
      );
      this.#faults.partition++;
    }
    // Log-uniform, so short blips and partitions that outlast a lease both happen often.
    const duration = Math.exp(
      this.#faultRandom.range(Math.log(50), Math.log(Math.max(50, f.partitionMaxMs))),
    );
    this.#trace.mix(60, generation, victim.id);
    this.#trace.line(
      this.#now,
      0,
      `PARTITION for ${duration.toFixed(0)} ms: cut ${this.#network.describeCuts()}`,
    );
    this.#queue.push(Math.min(this.#now + duration, this.#healAt), {
      kind: 'heal-partition',
      generation,
    });
  }

  #onCrashFault(): void {
    const f = this.#plan.faults;
    this.#scheduleExp(f.crashMeanMs, { kind: 'crash' });
    if (this.#downCount() >= f.maxDown) return;
    const victim = this.#victim();
    if (victim !== null) this.#crash(victim, 'crash fault');
  }

  #onDrift(): void {
    const f = this.#plan.faults;
    this.#scheduleExp(f.driftMeanMs, { kind: 'drift' });
    const node = this.#faultRandom.pick([...this.#nodes.values()]);
    const spread = rateSpread(this.#plan.config.maxDriftRate);
    const rate = 1 + this.#faultRandom.range(-spread, spread);
    node.clock.setRate(this.#now, rate);
    this.#faults.clockDrift++;
    this.#trace.line(this.#now, node.id, `clock rate now ${rate.toFixed(5)}`);
  }

  /** The next resignation, drawn from #resignRandom (not #faultRandom: see RESIGN_STREAM). */
  #scheduleResign(): void {
    const meanMs = this.#plan.faults.resignMeanMs;
    if (meanMs === Infinity) return;
    const delay = -Math.log(1 - this.#resignRandom.next()) * meanMs;
    if (this.#now + delay < this.#healAt) this.#queue.push(this.#now + delay, { kind: 'resign' });
  }

  /**
   * A planned hand-over (an operator drains the master, a deploy restarts it): a live master
   * whose links are all up resigns, naming a successor. Its Ready (the resign messages) goes out
   * in the next turn, as after any other input; its role changes at once, so a read that reaches
   * it from here on is redirected. A master cut off by a partition is left alone: resigning it
   * would end, every time, the deposed-master hazard the partitions are there to set up (with
   * every master resigned, ignoreLeaseForReads went from 19 to 10 seeds caught of the first 200).
   */
  #onResignFault(): void {
    this.#scheduleResign();
    const masters = [...this.#nodes.values()].filter(
      (n) => n.replica !== null && n.role === 'master' && !this.#isCutOff(n.id),
    );
    if (masters.length === 0) return;
    const node = this.#resignRandom.pick(masters);
    const replica = node.replica;
    assert(replica !== null, 'sim: a master with no replica');
    const local = node.clock.localAt(this.#now);
    let successor: ReplicaId | null;
    try {
      successor = replica.resign(local);
    } catch (err: unknown) {
      this.#replicaThrew(node, err, 'resign');
      return;
    }
    if (successor === null) return;
    this.#faults.resign++;
    this.#trace.mix(70, node.id, successor);
    this.#trace.line(this.#now, node.id, `RESIGN as master, naming r${successor} successor`);
    this.#refreshStatus(node, local);
    this.#scheduleTurn(node);
    // Half the time it is a SIGTERM: the process stops a moment later (runtime/node.ts waits at
    // most a second for the successor), and comes back like any crashed replica.
    if (this.#resignRandom.chance(0.5) && this.#downCount() < this.#plan.faults.maxDown) {
      this.#queue.push(this.#now + this.#resignRandom.range(0, 1000), {
        kind: 'stop-after-resign',
        replica: node.id,
        incarnation: node.incarnation,
      });
    }
  }

  /** The next disk loss, drawn from #diskRandom (see DISK_STREAM in plan.ts). */
  #scheduleDiskLoss(): void {
    const meanMs = this.#plan.faults.diskLossMeanMs;
    if (meanMs === Infinity) return;
    const delay = -Math.log(1 - this.#diskRandom.next()) * meanMs;
    if (this.#now + delay < this.#healAt)
      this.#queue.push(this.#now + delay, { kind: 'disk-loss' });
  }

  /**
   * A replica loses its disk: the process dies as on kill -9, and paxos.db and state.db go with
   * it; it comes back (after a replacement, 0-1 s) on an empty disk with a new random id, a
   * learner until the master admits it. Within the fault budget only: afterwards at most
   * min(maxDown, 2) replicas may be down or learners, so three voters always remain to elect a
   * master that admits the learners.
   *
   * Half the losses are aimed at the hazard the seats exist for: a replica that, with exactly
   * two others, holds the newest slot some replicas lack (most likely a value chosen by those
   * three votes alone). Its disk goes, and the two others are cut off from the rest, so the only
   * majority left is the two that never saw the slot plus the wiped replica. A replacement that
   * voted at once (the old behaviour, the voteWithoutAdmission bug) lets that majority choose
   * another value there; with seats, the cell waits for the partition to heal.
   */
  #onDiskLoss(): void {
    this.#scheduleDiskLoss();
    const limit = Math.min(this.#plan.faults.maxDown, 2);
    const alive = [...this.#nodes.values()].filter((n) => n.replica !== null);
    const eligible = alive.filter((n) => this.#downCount() + (n.isVoter ? 1 : 0) <= limit);
    if (eligible.length === 0) return;
    const aimed = this.#diskRandom.chance(0.5) ? this.#freshQuorumHolder(eligible) : null;
    const node = aimed?.node ?? this.#diskRandom.pick(eligible);
    this.#faults.diskLoss++;
    this.#trace.mix(80, node.id, node.diskId);
    const downMs = this.#diskRandom.range(0, 1000);
    this.#crash(node, `disk loss${aimed === null ? '' : ` (it holds slot ${aimed.slot})`}`, downMs);
    node.store = new MemoryStore();
    node.checkpoint = null;
    node.machine = new KvMachine();
    node.diskId = drawDiskId(this.#diskRandom);
    node.isVoter = false;
    node.commit = 0;
    this.#trace.line(
      this.#now,
      node.id,
      `DISK LOST: paxos.db and state.db gone; back in ${downMs.toFixed(0)} ms on disk ${node.diskId}`,
    );
    if (aimed === null) return;
    const cut = aimed.others;
    const rest = REPLICAS.filter((id) => !cut.includes(id));
    const generation = ++this.#partitionGeneration;
    this.#network.heal();
    this.#network.partition(cut, rest);
    this.#faults.partition++;
    const c = this.#plan.config;
    const duration = this.#diskRandom.range(c.leaseMs, 3 * c.leaseMs + 2 * c.electionTimeoutMs);
    this.#trace.line(
      this.#now,
      0,
      `PARTITION for ${duration.toFixed(0)} ms (after a disk loss): cut ${this.#network.describeCuts()}`,
    );
    this.#queue.push(Math.min(this.#now + duration, this.#healAt), {
      kind: 'heal-partition',
      generation,
    });
  }

  /**
   * A live voter among `eligible` that, with exactly two other replicas, durably holds the
   * highest slot not every replica holds (accepted in any ballot, or chosen); null if none.
   */
  #freshQuorumHolder(
    eligible: readonly SimNode[],
  ): { node: SimNode; slot: number; others: ReplicaId[] } | null {
    const nodes = [...this.#nodes.values()];
    const holds = (n: SimNode, slot: number): boolean =>
      slot < n.store.durableCompactedBelow() || n.store.durableEntry(slot) !== undefined;
    // Nothing is accepted above the highest commit by more than a window of slots.
    const top = Math.max(...nodes.map((n) => n.commit)) + this.#plan.config.windowSlots + 1;
    for (let slot = top; slot > 0 && slot > top - 64; slot--) {
      const holders = nodes.filter((n) => holds(n, slot));
      if (holders.length === nodes.length) return null;
      if (holders.length !== 3) continue;
      const candidates = eligible.filter((n) => n.isVoter && holders.includes(n));
      if (candidates.length === 0) continue;
      const node = this.#diskRandom.pick(candidates);
      return { node, slot, others: holders.filter((n) => n !== node).map((n) => n.id) };
    }
    return null;
  }

  /** True if any link to or from `id` is cut (a partition, symmetric or one-way). */
  #isCutOff(id: ReplicaId): boolean {
    return REPLICAS.some(
      (peer) =>
        peer !== id && (this.#network.isBlocked(id, peer) || this.#network.isBlocked(peer, id)),
    );
  }

  #onHealAll(): void {
    this.#phase = 'liveness';
    this.#network.heal();
    const links: LinkFaults = {
      ...this.#plan.faults.links,
      dropRate: 0,
      duplicateRate: 0,
      spikeRate: 0,
    };
    this.#network.faults = links;
    this.#trace.line(
      this.#now,
      0,
      `HEAL: liveness phase; a master must serve reads within ${this.#liveness.bounds.masterWithinMs.toFixed(0)} ms`,
    );
    for (const node of this.#nodes.values()) {
      if (node.replica === null) this.#start(node);
    }
  }

  /** Ends the run early once everything liveness asks for has happened. */
  #checkLivenessDone(): void {
    const masterAt = this.#liveness.masterAt;
    if (masterAt === null) return;
    if (this.#now < masterAt + 300) return;
    for (const client of this.#clients)
      if (client.op !== null && client.op.invokedAt < masterAt) return;
    // A replacement disk, caught up, is admitted by a master that serves.
    if (!isCaughtUp(this.#progress(), this.#acked.highest)) return;
    this.#isDone = true;
    this.#trace.line(
      this.#now,
      0,
      'liveness phase complete: master elected, operations completing, every replica caught up and a voter',
    );
  }

  #onEnd(): void {
    this.#isDone = true;
    for (const client of this.#clients) this.#checkClientLiveness(client);
    // Writes acknowledged within an operation bound of the end are not judged: a follower learns
    // that a slot is chosen up to a heartbeat after the client's answer.
    const ackedSlot = this.#acked.highestBy(this.#now - this.#liveness.bounds.operationWithinMs);
    for (const detail of catchUpFailures(this.#progress(), ackedSlot))
      this.#checkers.fail('liveness', detail);
  }

  /** Every replica's applied slot and whether it is a learner, for the liveness checks. */
  #progress(): ReplicaProgress[] {
    return [...this.#nodes.values()].map((node) => ({
      id: node.id,
      applied: node.machine.applied,
      isLearner: node.replica !== null && !node.isVoter,
      diskId: node.diskId,
    }));
  }

  // --- checks ---------------------------------------------------------------------------------

  #checkLeases(): void {
    let holders: { id: ReplicaId; localNow: number; leaseUntil: number }[] | null = null;
    for (const node of this.#nodes.values()) {
      if (node.replica === null || node.role !== 'master' || node.leaseUntil === null) continue;
      holders ??= [];
      holders.push({
        id: node.id,
        localNow: node.clock.localAt(this.#now),
        leaseUntil: node.leaseUntil,
      });
    }
    if (holders !== null && holders.length > 1) this.#checkers.paxos.checkLeases(holders);
  }

  #coreLogger(id: ReplicaId): Logger {
    const line = (
      level: string,
      obj: Record<string, unknown>,
      msg: string,
      isQuiet = false,
    ): void => {
      this.#trace.line(this.#now, id, () => `${level} ${msg} ${formatObject(obj)}`, isQuiet);
    };
    return {
      // Debug lines (one per message) go to the failure trace always, to the screen only on request.
      debug: (obj, msg) => line('debug', obj, msg, !this.#echoDebug),
      info: (obj, msg) => line('info', obj, msg),
      warn: (obj, msg) => line('warn', obj, msg),
      error: (obj, msg) => line('error', obj, msg),
    };
  }
}

/** A deep copy of a message: what a real transport's decode would hand the receiver. */
function cloneMessage(message: Message): unknown {
  return cloneDeep(message);
}

function cloneDeep(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return value.slice();
  if (Array.isArray(value)) return value.map(cloneDeep);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = cloneDeep(v);
  return out;
}
