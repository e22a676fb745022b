// `pnpm bench:paxos`: how fast the consensus core alone can go. Five real Replicas in one
// process, each with an in-memory acceptor store, joined by a zero-delay in-process network, all
// driven through runtime/turn.ts exactly as the process drives them. N commands are pushed
// through the master; the script prints one JSON line per configuration with commands/s (wall
// clock) and the commit latency of a command in master turns (p50, p99), batching on and off.
//
// It is a benchmark, not a test: it asserts nothing about speed (STYLE.md, Tests). Time inside
// the cell is virtual (1 ms per round), so the figure is the core's CPU cost, not a network's.
//
//   pnpm bench:paxos                 200000 commands per configuration
//   pnpm bench:paxos --commands N

import { performance } from 'node:perf_hooks';
import type { ChosenEntry, Command, Envelope } from '../server/src/paxos/messages.ts';
import { silentLogger, type Config, type ReplicaId } from '../server/src/paxos/ports.ts';
import { Replica } from '../server/src/paxos/replica.ts';
import { runTurn, type TurnInput, type TurnWiring } from '../server/src/runtime/turn.ts';
import { MemoryStore } from '../server/src/storage/memory-store.ts';

interface BenchOptions {
  readonly label: string;
  readonly commands: number;
  readonly maxBatchCommands: number;
  readonly windowSlots: number;
  /** Commands offered to the master per round: enough to keep the window full. */
  readonly offeredPerRound: number;
}

interface BenchResult {
  readonly bench: string;
  readonly commands: number;
  readonly maxBatchCommands: number;
  readonly windowSlots: number;
  readonly seconds: number;
  readonly commandsPerSecond: number;
  readonly commitLatencyTurnsP50: number;
  readonly commitLatencyTurnsP99: number;
  readonly slots: number;
  readonly commandsPerSlot: number;
  readonly messages: number;
}

const REPLICAS: readonly ReplicaId[] = [1, 2, 3, 4, 5];

/** scripts/ is not a workspace package, so it carries its own one-line assert. */
function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** A tiny deterministic generator for the cores' election jitter; the bench needs no entropy. */
function lcg(seed: number): { next(): number } {
  let s = seed >>> 0;
  return {
    next: () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s / 4294967296;
    },
  };
}

function bench(options: BenchOptions): BenchResult {
  const config = (id: ReplicaId): Config => ({
    id,
    replicas: REPLICAS,
    leaseMs: 1000,
    maxDriftRate: 0.01,
    heartbeatMs: 100,
    electionTimeoutMs: 1000,
    electionJitterMs: 200,
    windowSlots: options.windowSlots,
    maxBatchCommands: options.maxBatchCommands,
    catchUpBatchSlots: 64,
  });

  let now = 0;
  let messages = 0;
  /** Inboxes: everything sent in one round arrives in the next (zero delay, FIFO). */
  let inboxes = new Map<ReplicaId, TurnInput[]>(REPLICAS.map((id) => [id, []]));
  const proposedAtTurn = new Map<string, number>();
  const latencies: number[] = [];
  let masterTurns = 0;
  let appliedAtMaster = 0;
  let slots = 0;
  let masterId: ReplicaId | null = null;

  const nodes = REPLICAS.map((id) => {
    const store = new MemoryStore();
    const replica = new Replica({
      config: config(id),
      random: lcg(id),
      logger: silentLogger,
      durable: store.load(),
      now,
      applied: 0,
    });
    const wiring: TurnWiring = {
      replica,
      store,
      logger: silentLogger,
      send: (envelope: Envelope) => {
        messages++;
        inboxes.get(envelope.to)?.push({ type: 'message', from: id, message: envelope.message });
      },
      apply: (entry: ChosenEntry) => {
        if (id !== masterId) return;
        slots++;
        if (entry.value.type !== 'batch') return;
        for (const command of entry.value.commands) {
          const key = `${command.clientId}#${command.seq}`;
          const at = proposedAtTurn.get(key);
          if (at === undefined) continue;
          proposedAtTurn.delete(key);
          latencies.push(masterTurns - at);
          appliedAtMaster++;
        }
      },
    };
    return { id, replica, wiring };
  });

  const round = (extra: (id: ReplicaId) => TurnInput[]): void => {
    const current = inboxes;
    inboxes = new Map(REPLICAS.map((id) => [id, []]));
    for (const node of nodes) {
      const inputs = [...(current.get(node.id) ?? []), ...extra(node.id)];
      if (node.id === masterId) masterTurns++;
      runTurn(node.wiring, inputs, now);
    }
    now += 1;
  };

  // Elect a master: tick until one replica can serve reads (its no-op is applied).
  for (let i = 0; i < 10_000 && masterId === null; i++) {
    round(() => [{ type: 'tick' }]);
    masterId = nodes.find((n) => n.replica.canServeReads(now))?.id ?? null;
  }
  assert(masterId !== null, 'bench: no master emerged');

  const payload = new Uint8Array(32);
  let proposed = 0;
  const started = performance.now();
  let rounds = 0;
  while (appliedAtMaster < options.commands) {
    const offer: TurnInput[] = [];
    const outstanding = proposed - appliedAtMaster;
    const room = Math.min(
      options.offeredPerRound - Math.min(outstanding, options.offeredPerRound),
      options.commands - proposed,
    );
    for (let i = 0; i < room; i++) {
      const command: Command = { clientId: 'bench', seq: ++proposed, payload };
      proposedAtTurn.set(`bench#${proposed}`, masterTurns + 1);
      offer.push({ type: 'propose', command });
    }
    // A tick every 10 rounds (10 ms of virtual time) keeps heartbeats and the lease going.
    const tick = rounds % 10 === 0;
    round((id) => {
      const inputs: TurnInput[] = tick ? [{ type: 'tick' }] : [];
      return id === masterId ? [...inputs, ...offer] : inputs;
    });
    rounds++;
    assert(rounds < 50_000_000, 'bench: no progress');
  }
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return {
    bench: options.label,
    commands: options.commands,
    maxBatchCommands: options.maxBatchCommands,
    windowSlots: options.windowSlots,
    seconds: round3(seconds),
    commandsPerSecond: Math.round(options.commands / seconds),
    commitLatencyTurnsP50: pct(0.5),
    commitLatencyTurnsP99: pct(0.99),
    slots,
    commandsPerSlot: round3(options.commands / Math.max(1, slots)),
    messages,
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function main(): void {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--commands');
  const commands = i >= 0 ? Number(argv[i + 1]) : 200_000;
  assert(Number.isSafeInteger(commands) && commands > 0, '--commands takes a positive integer');
  const runs: BenchOptions[] = [
    {
      label: 'batching on',
      commands,
      maxBatchCommands: 1024,
      windowSlots: 16,
      offeredPerRound: 8192,
    },
    {
      label: 'batching off',
      commands: Math.min(commands, 50_000),
      maxBatchCommands: 1,
      windowSlots: 16,
      offeredPerRound: 32,
    },
  ];
  for (const options of runs) {
    // A short warm-up run lets the JIT settle so the figure is the steady state.
    bench({ ...options, commands: Math.min(options.commands, 5_000) });
    process.stdout.write(`${JSON.stringify(bench(options))}\n`);
  }
}

main();
