// A random-fault runner for the core's tests (not the simulator): a five-replica Cell with
// message loss, duplication and reordering, partitions and crash-restarts (durable state kept),
// while commands are proposed to whoever is master. After every step it checks that no slot is
// applied with two different values anywhere, no command is applied twice, and no two replicas
// can serve lease reads at the same instant; after the faults stop it checks that a master is
// elected and a new command is applied everywhere.
import type { SlotValue } from '../../src/paxos/messages.ts';
import type { Config, PlantedBugs } from '../../src/paxos/ports.ts';
import { areValuesEqual } from '../../src/paxos/slots.ts';
import type { InFlight } from './harness.ts';
import { Cell, command, seededRandom } from './harness.ts';

export interface Outcome {
  readonly violations: string[];
  readonly applied: number;
}

export interface RunOptions {
  readonly bugs?: PlantedBugs;
  readonly config?: Partial<Config>;
  readonly faultMs?: number;
}

export function runSeed(seed: number, options: RunOptions = {}): Outcome {
  const { bugs, config, faultMs = 15_000 } = options;
  const rng = seededRandom(seed);
  const cell = new Cell({
    seed,
    ...(bugs === undefined ? {} : { bugs }),
    ...(config === undefined ? {} : { config }),
  });
  const violations: string[] = [];
  const chosen = new Map<number, SlotValue>();
  const seenCommands = new Set<string>();
  const checkedUpTo = new Map<number, number>();
  let partition: ReadonlySet<number> | null = null;
  let seq = 0;
  cell.isTracing = false;
  // An Accepted vouches for a durable acceptance at that slot in that ballot (the harness
  // persists before it sends, so a missing entry means the core voted for what it never stored).
  cell.onSend = (from, envelope, early) => {
    const message = envelope.message;
    if (message.type !== 'accepted') return;
    const entry = cell.node(from).disk.entries.get(message.slot);
    const isStored =
      entry !== undefined &&
      entry.ballot.round === message.ballot.round &&
      entry.ballot.replica === message.ballot.replica;
    if (!isStored || early) {
      violations.push(
        `replica ${from} voted for slot ${message.slot} without a durable acceptance`,
      );
    }
  };
  const snapshotsWanted: { id: number; from: number; slotAtLeast: number }[] = [];
  cell.onReady = (id, ready) => {
    if (ready.needSnapshot !== null) snapshotsWanted.push({ id, ...ready.needSnapshot });
  };
  cell.drop = (m: InFlight) => partition !== null && partition.has(m.from) !== partition.has(m.to);

  const check = (): void => {
    for (const node of cell.nodes.values()) {
      const from = checkedUpTo.get(node.id) ?? 0;
      for (let i = from; i < node.applied.length; i++) {
        const entry = node.applied[i];
        if (entry === undefined) continue;
        const known = chosen.get(entry.slot);
        if (known === undefined) {
          chosen.set(entry.slot, entry.value);
          if (entry.value.type === 'batch') {
            for (const c of entry.value.commands) {
              const key = `${c.clientId}:${c.seq}`;
              if (seenCommands.has(key)) violations.push(`command ${key} applied twice`);
              seenCommands.add(key);
            }
          }
        } else if (!areValuesEqual(known, entry.value)) {
          violations.push(`slot ${entry.slot}: replica ${node.id} applied a different value`);
        }
      }
      checkedUpTo.set(node.id, node.applied.length);
    }
    const readers = [...cell.nodes.values()].filter(
      (n) => n.isUp && n.replica.canServeReads(cell.now),
    );
    if (readers.length > 1)
      violations.push(`t=${cell.now}: ${readers.length} replicas serve lease reads`);
  };

  const step = (faults: boolean): void => {
    cell.now += 5;
    for (const node of cell.nodes.values()) {
      if (!node.isUp) continue;
      node.replica.tick(cell.now);
      cell.flush(node.id);
    }
    if (faults) {
      const r = rng.next();
      const down = [...cell.nodes.values()].filter((n) => !n.isUp);
      if (r < 0.004 && down.length < 2) cell.crash(1 + Math.floor(rng.next() * 5));
      else if (r < 0.012 && down.length > 0) cell.restart(down[0]?.id ?? 1);
      else if (r < 0.016)
        partition =
          partition === null
            ? new Set([1 + Math.floor(rng.next() * 5), 1 + Math.floor(rng.next() * 5)])
            : null;
    }
    // The state machine snapshots now and then; the core compacts behind it. A replica that
    // needs a snapshot gets the asked peer's state (as the wiring would ship it).
    for (const node of cell.nodes.values()) {
      if (node.isUp && rng.next() < 0.002) {
        node.replica.snapshotTaken(node.appliedThrough);
        cell.flush(node.id);
      }
    }
    for (const want of snapshotsWanted.splice(0)) {
      const from = cell.node(want.from);
      if (from.isUp && from.appliedThrough >= want.slotAtLeast) {
        cell.installSnapshot(want.id, from.appliedThrough);
      }
    }
    for (const node of cell.nodes.values()) {
      if (node.isUp && node.replica.status(cell.now).role === 'master' && rng.next() < 0.3) {
        seq += 1;
        cell.propose(node.id, command(`c${seq % 7}`, seq));
      }
    }
    // Deliver a random part of the queue in random order; drop or duplicate some when faulty.
    const pending = cell.queue;
    cell.queue = [];
    for (let i = pending.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      const a = pending[i];
      const b = pending[j];
      if (a !== undefined && b !== undefined) {
        pending[i] = b;
        pending[j] = a;
      }
    }
    for (const m of pending) {
      const r = rng.next();
      if (faults && r < 0.05) continue;
      if (faults && r < 0.15) {
        cell.queue.push(m);
        continue;
      }
      cell.deliver(m);
      if (faults && r > 0.97) cell.deliver(m);
    }
    check();
  };

  const faultSteps = faultMs / 5;
  for (let i = 0; i < faultSteps; i++) step(true);
  // Heal: everyone up, no partition, no loss.
  partition = null;
  for (const node of cell.nodes.values()) if (!node.isUp) cell.restart(node.id);
  for (let i = 0; i < 2000; i++) step(false);
  const master = cell.master();
  if (master === null) {
    violations.push('no master after healing');
  } else {
    const probe = command('probe', 1_000_000 + seed);
    cell.propose(master, probe);
    for (let i = 0; i < 400; i++) step(false);
    const probeSlot = [...cell.nodes.values()]
      .flatMap((n) => n.applied)
      .find(
        (e) => e.value.type === 'batch' && e.value.commands.some((c) => c.clientId === 'probe'),
      )?.slot;
    for (const node of cell.nodes.values()) {
      // Applied here, or covered by a snapshot this replica installed.
      const isCovered =
        probeSlot !== undefined &&
        node.appliedThrough >= probeSlot &&
        !node.applied.some((e) => e.slot === probeSlot);
      const has =
        isCovered ||
        node.applied.some(
          (e) => e.value.type === 'batch' && e.value.commands.some((c) => c.clientId === 'probe'),
        );
      if (!has) violations.push(`replica ${node.id} did not apply the probe after healing`);
    }
  }
  return { violations, applied: seenCommands.size };
}
