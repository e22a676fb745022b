// A tiny synchronous harness for the core's unit tests: N Replicas, an in-memory "disk" per
// replica that keeps exactly what Ready.persist wrote, and one FIFO message queue. It executes
// each Ready in the order ready.ts prescribes (sendEarly, persist, send, commit, advance) and
// records every step, so tests can check orderings as well as outcomes. It is deliberately
// independent of server/sim (the full simulator), so the core can be tested on its own.

import type { Ballot } from '../../src/paxos/ballot.ts';
import { compareBallots, ZERO_BALLOT } from '../../src/paxos/ballot.ts';
import type { DurableEntry, DurableState } from '../../src/paxos/durable.ts';
import type {
  Admission,
  ChosenEntry,
  Command,
  Envelope,
  Message,
  SlotValue,
} from '../../src/paxos/messages.ts';
import type { Config, Logger, PlantedBugs, Random, ReplicaId } from '../../src/paxos/ports.ts';
import { silentLogger } from '../../src/paxos/ports.ts';
import type { PersistBatch, Ready } from '../../src/paxos/ready.ts';
import { Replica } from '../../src/paxos/replica.ts';
import { isPersistBatchEmpty } from '../../src/storage/store.ts';

export function testConfig(id: ReplicaId, overrides: Partial<Config> = {}): Config {
  return {
    id,
    replicas: [1, 2, 3, 4, 5],
    leaseMs: 1000,
    maxDriftRate: 0.01,
    heartbeatMs: 100,
    electionTimeoutMs: 1500,
    electionJitterMs: 300,
    windowSlots: 8,
    maxBatchCommands: 64,
    catchUpBatchSlots: 16,
    ...overrides,
  };
}

/** A seeded xorshift generator: tests are deterministic. */
export function seededRandom(seed: number): Random {
  let x = seed >>> 0 || 1;
  return {
    next(): number {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x / 4294967296;
    },
  };
}

/** The in-memory twin of the acceptor store, enough for these tests. */
export class MemoryDisk {
  isFresh = true;
  promised: Ballot = ZERO_BALLOT;
  readonly entries = new Map<number, DurableEntry>();
  commit = 0;
  compactedBelow = 1;
  admitted: Admission[] = [];
  writes = 0;

  load(): DurableState {
    const entries = [...this.entries.values()].sort((a, b) => a.slot - b.slot);
    return {
      isFresh: this.isFresh,
      promised: this.promised,
      entries,
      commit: this.commit,
      compactedBelow: this.compactedBelow,
      admitted: this.admitted.map((a) => ({ ...a })),
    };
  }

  persist(batch: PersistBatch): void {
    const isEmpty =
      batch.promised === null &&
      batch.accepted.length === 0 &&
      batch.chosen.length === 0 &&
      batch.commit === null &&
      batch.compactBelow === null &&
      batch.admitted.length === 0;
    if (isEmpty) return;
    this.writes += 1;
    this.isFresh = false;
    if (batch.promised !== null) {
      if (compareBallots(batch.promised, this.promised) < 0)
        throw new Error('promise would decrease');
      this.promised = batch.promised;
    }
    for (const a of batch.accepted) {
      const existing = this.entries.get(a.slot);
      if (existing?.isChosen === true) continue;
      this.entries.set(a.slot, { slot: a.slot, ballot: a.ballot, value: a.value, isChosen: false });
    }
    for (const c of batch.chosen) {
      const existing = this.entries.get(c.slot);
      this.entries.set(c.slot, {
        slot: c.slot,
        ballot: existing?.ballot ?? ZERO_BALLOT,
        value: c.value,
        isChosen: true,
      });
    }
    if (batch.commit !== null) {
      if (batch.commit < this.commit) throw new Error('commit would decrease');
      this.commit = batch.commit;
    }
    for (const a of batch.admitted) {
      if (!this.admitted.some((known) => known.slot === a.slot)) this.admitted.push({ ...a });
    }
    this.admitted.sort((x, y) => x.slot - y.slot);
    if (batch.compactBelow !== null && batch.compactBelow > this.compactedBelow) {
      for (const slot of this.entries.keys())
        if (slot < batch.compactBelow) this.entries.delete(slot);
      this.compactedBelow = batch.compactBelow;
    }
  }
}

export interface InFlight {
  readonly from: ReplicaId;
  readonly to: ReplicaId;
  readonly message: Message;
}

/** One recorded event of executing a Ready, for ordering checks. */
export type TraceEvent =
  | {
      readonly kind: 'send';
      readonly early: boolean;
      readonly from: ReplicaId;
      readonly envelope: Envelope;
    }
  | { readonly kind: 'persist'; readonly replica: ReplicaId; readonly batch: PersistBatch };

export interface Node {
  readonly id: ReplicaId;
  replica: Replica;
  disk: MemoryDisk;
  /** The disk's id: 0 for a founding disk, else a replacement's (wipe()). */
  diskId: number;
  /** Every chosen entry applied here, in order (a snapshot install skips ahead). */
  applied: ChosenEntry[];
  /** The state machine's applied slot (what survives a crash, like state.db). */
  appliedThrough: number;
  isUp: boolean;
  readonly readies: Ready[];
}

export interface CellOptions {
  readonly ids?: readonly ReplicaId[];
  readonly config?: Partial<Config>;
  readonly bugs?: PlantedBugs;
  readonly seed?: number;
  readonly logger?: Logger;
}

export class Cell {
  now = 0;
  readonly nodes = new Map<ReplicaId, Node>();
  queue: InFlight[] = [];
  readonly trace: TraceEvent[] = [];
  /** Return true to drop a message. */
  drop: (m: InFlight) => boolean = () => false;
  readonly #options: CellOptions;
  #seed: number;

  constructor(options: CellOptions = {}) {
    this.#options = options;
    this.#seed = options.seed ?? 1;
    for (const id of options.ids ?? [1, 2, 3, 4, 5]) {
      const disk = new MemoryDisk();
      this.nodes.set(id, {
        id,
        replica: this.#makeReplica(id, disk, 0, 0),
        disk,
        diskId: 0,
        applied: [],
        appliedThrough: 0,
        isUp: true,
        readies: [],
      });
    }
  }

  config(id: ReplicaId): Config {
    const base = testConfig(id, {
      replicas: this.#options.ids ?? [1, 2, 3, 4, 5],
      ...this.#options.config,
    });
    return this.#options.bugs === undefined ? base : { ...base, bugs: this.#options.bugs };
  }

  #makeReplica(id: ReplicaId, disk: MemoryDisk, applied: number, diskId: number): Replica {
    this.#seed += 7919;
    return new Replica({
      diskId,
      config: this.config(id),
      random: seededRandom(this.#seed * 31 + id),
      logger: this.#options.logger ?? silentLogger,
      durable: disk.load(),
      now: this.now,
      applied,
    });
  }

  node(id: ReplicaId): Node {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no replica ${id}`);
    return node;
  }

  /** Execute every Ready the replica has, in the prescribed order. */
  flush(id: ReplicaId): void {
    const node = this.node(id);
    if (!node.isUp) return;
    for (let i = 0; i < 1000 && node.replica.hasReady(); i++) {
      const ready = node.replica.ready();
      if (this.isTracing) node.readies.push(ready);
      this.onReady(id, ready);
      for (const envelope of ready.sendEarly) this.#send(id, envelope, true);
      if (this.isTracing && !isPersistBatchEmpty(ready.persist))
        this.trace.push({ kind: 'persist', replica: id, batch: ready.persist });
      node.disk.persist(ready.persist);
      for (const envelope of ready.send) this.#send(id, envelope, false);
      for (const entry of ready.commit) {
        if (entry.slot !== node.appliedThrough + 1) {
          throw new Error(`replica ${id}: applied out of order`);
        }
        node.appliedThrough = entry.slot;
        node.applied.push(entry);
      }
      node.replica.advance(ready, this.now);
    }
  }

  /** Called for every message a replica sends (after the persist before it, unless early). */
  onSend: (from: ReplicaId, envelope: Envelope, early: boolean) => void = () => undefined;
  /** Called for every Ready before it is executed. */
  onReady: (id: ReplicaId, ready: Ready) => void = () => undefined;
  /** Record every Ready, send and persist (`readies`, `trace`); off for long runs. */
  isTracing = true;

  /** The wiring's side of a snapshot install: the machine now holds everything <= slot. */
  installSnapshot(id: ReplicaId, slot: number): void {
    const node = this.node(id);
    if (!node.isUp || slot <= node.appliedThrough) return;
    node.appliedThrough = slot;
    const sender = [...this.nodes.values()].find((n) => n.id !== id && n.isUp);
    node.replica.installSnapshot(slot, this.now, sender?.replica.admitted() ?? []);
    this.flush(id);
  }

  #send(from: ReplicaId, envelope: Envelope, early: boolean): void {
    this.onSend(from, envelope, early);
    if (this.isTracing) this.trace.push({ kind: 'send', early, from, envelope });
    this.queue.push({ from, to: envelope.to, message: envelope.message });
  }

  /** Deliver queued messages (and what they cause) until the queue is empty. */
  deliverAll(maxMessages = 100_000): void {
    for (let i = 0; i < maxMessages && this.queue.length > 0; i++) {
      const m = this.queue.shift();
      if (m === undefined) break;
      this.deliver(m);
    }
  }

  deliver(m: InFlight): void {
    const node = this.nodes.get(m.to);
    if (node === undefined || !node.isUp || this.drop(m)) return;
    node.replica.step(m.from, m.message, this.now);
    this.flush(m.to);
  }

  /** Advance time in `stepMs` increments up to `ms`, ticking everyone and delivering everything. */
  run(ms: number, stepMs = 10): void {
    const end = this.now + ms;
    while (this.now < end) {
      this.now = Math.min(end, this.now + stepMs);
      for (const node of this.nodes.values()) {
        if (!node.isUp) continue;
        node.replica.tick(this.now);
        this.flush(node.id);
      }
      this.deliverAll();
    }
  }

  /** Run until `predicate` holds or `maxMs` passes; returns whether it held. */
  runUntil(predicate: () => boolean, maxMs = 20_000, stepMs = 10): boolean {
    const end = this.now + maxMs;
    while (this.now < end) {
      if (predicate()) return true;
      this.run(stepMs, stepMs);
    }
    return predicate();
  }

  masters(): ReplicaId[] {
    return [...this.nodes.values()]
      .filter((n) => n.isUp && n.replica.status(this.now).role === 'master')
      .map((n) => n.id);
  }

  master(): ReplicaId | null {
    const masters = this.masters();
    return masters.length === 1 ? (masters[0] ?? null) : null;
  }

  /** Run until one master can serve reads. */
  elect(maxMs = 20_000): ReplicaId {
    const ok = this.runUntil(() => {
      const m = this.master();
      return m !== null && this.node(m).replica.canServeReads(this.now);
    }, maxMs);
    if (!ok) throw new Error('no master elected');
    const m = this.master();
    if (m === null) throw new Error('no master');
    return m;
  }

  propose(id: ReplicaId, command: Command): ReturnType<Replica['propose']> {
    const result = this.node(id).replica.propose(command, this.now);
    this.flush(id);
    return result;
  }

  crash(id: ReplicaId): void {
    const node = this.node(id);
    node.isUp = false;
    this.queue = this.queue.filter((m) => m.to !== id);
  }

  restart(id: ReplicaId): void {
    const node = this.node(id);
    node.replica = this.#makeReplica(id, node.disk, node.appliedThrough, node.diskId);
    node.isUp = true;
    this.flush(id);
  }

  /**
   * A lost disk: the replica restarts on an empty one with a new disk id (its state machine is
   * gone too), as an operator replacing a failed disk would start it.
   */
  wipe(id: ReplicaId, diskId: number): void {
    const node = this.node(id);
    this.crash(id);
    node.disk = new MemoryDisk();
    node.diskId = diskId;
    node.applied = [];
    node.appliedThrough = 0;
    this.restart(id);
  }
}

export function command(clientId: string, seq: number): Command {
  return { clientId, seq, payload: new Uint8Array([seq & 0xff]) };
}

/** The commands of applied entries, as "client:seq" strings in order. */
export function appliedCommands(entries: readonly ChosenEntry[]): string[] {
  return entries.flatMap((e) =>
    e.value.type === 'batch' ? e.value.commands.map((c) => `${c.clientId}:${c.seq}`) : [],
  );
}

export function batchValue(stampMs: number, ...commands: Command[]): SlotValue {
  return { type: 'batch', stampMs, commands };
}

export interface SoloOptions {
  readonly id?: ReplicaId;
  readonly durable?: Partial<DurableState>;
  readonly config?: Partial<Config>;
  readonly bugs?: PlantedBugs;
  readonly now?: number;
  readonly applied?: number;
  readonly diskId?: number;
  readonly logger?: Logger;
}

/** One Replica on its own, fed messages by hand. */
export function solo(options: SoloOptions = {}): Replica {
  const id = options.id ?? 2;
  const base = testConfig(id, options.config);
  return new Replica({
    diskId: options.diskId ?? 0,
    config: options.bugs === undefined ? base : { ...base, bugs: options.bugs },
    random: seededRandom(id),
    logger: options.logger ?? silentLogger,
    durable: {
      isFresh: true,
      promised: ZERO_BALLOT,
      entries: [],
      commit: 0,
      compactedBelow: 1,
      admitted: [],
      ...options.durable,
    },
    now: options.now ?? 0,
    applied: options.applied ?? 0,
  });
}

/** Take one Ready and advance it at `now` (as if the wiring executed it). */
export function drain(replica: Replica, now: number): Ready {
  const ready = replica.ready();
  replica.advance(ready, now);
  return ready;
}

/** Messages of one type in a list of envelopes. */
export function ofType<T extends Message['type']>(
  envelopes: readonly Envelope[],
  type: T,
): (Extract<Message, { type: T }> & { readonly to: ReplicaId })[] {
  const out: (Extract<Message, { type: T }> & { readonly to: ReplicaId })[] = [];
  for (const e of envelopes) {
    if (e.message.type === type)
      out.push({ ...(e.message as Extract<Message, { type: T }>), to: e.to });
  }
  return out;
}
