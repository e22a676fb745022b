// Each seed picks its own world (TigerBeetle's swarm testing): the configuration of the cell, the
// workload, and which fault families are switched on and how hard. A fault mix that is always
// "a little of everything" hides bugs that need one fault hammered; one that varies per seed
// finds them. The plan is drawn from its own random stream, so it depends on the seed alone.

import { assertNever } from '@paxlock/shared';
import type { Config, PlantedBugs, ReplicaId } from '../src/paxos/ports.ts';
import type { LinkFaults } from './network.ts';
import { SimRandom } from './random.ts';

export interface FaultMix {
  readonly links: LinkFaults;
  /** Mean time between partitions (exponential), Infinity for none. */
  readonly partitionMeanMs: number;
  readonly partitionMaxMs: number;
  /** Share of partitions that are one-way rather than symmetric. */
  readonly oneWayShare: number;
  /** Share of partitions and crashes aimed at the replica that currently believes it is master. */
  readonly targetMasterShare: number;
  /** Mean time between crashes (exponential), Infinity for none. */
  readonly crashMeanMs: number;
  /** Longest a crashed replica stays down before it restarts. */
  readonly downMaxMs: number;
  /** Most replicas down at once. */
  readonly maxDown: number;
  /** Probability, per Ready, of a crash at one of the turn's fault points (persist, send, ...). */
  readonly turnCrashRate: number;
  /** Mean time between clock-rate changes (exponential), Infinity for none. */
  readonly driftMeanMs: number;
  /**
   * Mean time between graceful resignations of the master (exponential), Infinity for none:
   * `Replica.resign` hands mastership to a named successor and tells every acceptor to drop the
   * lease it granted. Drawn from its own stream (RESIGN_STREAM), see planSeed.
   */
  readonly resignMeanMs: number;
  /**
   * Mean time between disk losses (exponential), Infinity for none: a replica is killed, its
   * acceptor store and state.db are thrown away, and it comes back on a fresh disk with a new
   * disk id, a learner until the log admits it. Drawn from its own stream (DISK_STREAM).
   */
  readonly diskLossMeanMs: number;
}

/**
 * The kind of world a seed lives in. Most seeds are a free swarm draw; some are focused worlds
 * that hammer one hazard hard, because a handful of bugs hide from a little of everything:
 * - deposed-master: clean links, long symmetric partitions that cut the master off, busy
 *   clients on one key — a master replaced while it still believes it leads;
 * - crashy: crashes at the turn's fault points (between persist and send) and frequent kills;
 * - churn: lossy links and one-way partitions aimed at the master — elections while a lease may
 *   still be held;
 * - master-churn: the master is killed again and again with many slots in flight on lossy links —
 *   slots left accepted by a minority in one ballot and by others in the next.
 */
export type World = 'swarm' | 'deposed-master' | 'crashy' | 'churn' | 'master-churn';

export interface SeedPlan {
  readonly seed: number;
  readonly world: World;
  /** Every Config field but the replica's own id. */
  readonly config: Omit<Config, 'id'>;
  /** Local time between two ticks of a replica. */
  readonly tickMs: number;
  /** Length of the safety phase (faults on), in global ms. */
  readonly safetyMs: number;
  readonly faults: FaultMix;
  readonly clients: number;
  readonly keys: number;
  /** Share of client operations that are writes; the rest are lease reads. */
  readonly writeShare: number;
  /**
   * How many of the clients only read (a service polling its configuration). A reader stays with
   * the replica that answers it, so it is the one that notices a deposed master still answering.
   */
  readonly readerClients: number;
  readonly clientTimeoutMs: number;
  /** The state machine makes its applied state durable every this many slots (state.db lag). */
  readonly checkpointEvery: number;
  /** After this many checkpoints the replica tells the core it may compact; Infinity for never. */
  readonly compactEveryCheckpoints: number;
  /** The initial clock rates, spread within the drift bound. */
  readonly clockRates: readonly number[];
}

export const REPLICAS: readonly ReplicaId[] = [1, 2, 3, 4, 5];

/**
 * The random stream of the resign fault family, separate from the plan's and the faults' streams:
 * resignations came after the other families, and drawing them from a stream of their own keeps
 * every seed's world (and so every planted bug's first failing seed) as it was in the seeds where
 * they are off. The cell mode draws its own resign parameters from RESIGN_STREAM too.
 */
export const RESIGN_STREAM = 0x7265736e;

/** Share of seeds with resignations switched on. */
export const RESIGN_SHARE = 0.4;

/** Mean time between resignations, when a seed has them: from a steady hand-over to a storm. */
export const RESIGN_MEANS_MS: readonly number[] = [300, 1000, 3000];

/**
 * The resign family's mean for a seed: on in RESIGN_SHARE of seeds, drawn from its own stream.
 * `means` are the choices when it is on (the cell mode's safety phase is shorter and asks more).
 */
export function resignMeanFor(seed: number, means: readonly number[] = RESIGN_MEANS_MS): number {
  const r = new SimRandom(seed, RESIGN_STREAM);
  return r.chance(RESIGN_SHARE) ? r.pick(means) : Infinity;
}

/** The stream a run draws its resignations' times and targets from (never the fault stream). */
export function resignEventRandom(seed: number): SimRandom {
  return new SimRandom(seed, RESIGN_STREAM + 1);
}

/**
 * The random stream of the disk-loss fault family (a replacement disk), separate from every other
 * stream for the reason RESIGN_STREAM is: a seed without disk losses runs exactly as before they
 * existed. The cell mode draws its own disk-loss parameters from DISK_STREAM too.
 */
export const DISK_STREAM = 0x6469736b;

/** Share of seeds with disk losses switched on. */
export const DISK_LOSS_SHARE = 0.4;

/** Mean time between disk losses, when a seed has them. */
export const DISK_LOSS_MEANS_MS: readonly number[] = [700, 2000, 5000];

/** The disk-loss family's mean for a seed: on in DISK_LOSS_SHARE of seeds, from its own stream. */
export function diskLossMeanFor(
  seed: number,
  means: readonly number[] = DISK_LOSS_MEANS_MS,
): number {
  const r = new SimRandom(seed, DISK_STREAM);
  return r.chance(DISK_LOSS_SHARE) ? r.pick(means) : Infinity;
}

/** The stream a run draws its disk losses' times, victims and new disk ids from. */
export function diskEventRandom(seed: number): SimRandom {
  return new SimRandom(seed, DISK_STREAM + 1);
}

/** A replacement disk's id: 48 random bits, never 0 (0 names a founding disk). */
export function drawDiskId(r: SimRandom): number {
  for (;;) {
    const id = r.int(0x10000) * 0x100000000 + r.int(0x100000000);
    if (id !== 0) return id;
  }
}

export function planSeed(seed: number, bugs: PlantedBugs | undefined): SeedPlan {
  const r = new SimRandom(seed, 0x706c616e);
  const leaseMs = r.pick([500, 1000, 1000, 2000]);
  const maxDriftRate = r.pick([0.001, 0.01, 0.01, 0.05]);
  const config: Omit<Config, 'id'> = {
    replicas: REPLICAS,
    leaseMs,
    maxDriftRate,
    heartbeatMs: leaseMs / r.pick([4, 5, 8]),
    electionTimeoutMs: leaseMs * r.pick([1, 1.5]),
    electionJitterMs: leaseMs / 2,
    windowSlots: r.pick([1, 4, 16]),
    maxBatchCommands: r.pick([1, 8, 64]),
    catchUpBatchSlots: r.pick([2, 16, 64]),
    ...(bugs === undefined ? {} : { bugs }),
  };

  const on = (p: number): boolean => r.chance(p);
  const links: LinkFaults = {
    dropRate: on(0.6) ? r.pick([0.01, 0.05, 0.15, 0.3]) : 0,
    duplicateRate: on(0.5) ? r.pick([0.01, 0.05, 0.2]) : 0,
    spikeRate: on(0.5) ? r.pick([0.01, 0.05, 0.2]) : 0,
    spikeMaxMs: r.pick([50, 300, leaseMs]),
    delayMinMs: r.pick([0.1, 1]),
    delayMaxMs: r.pick([2, 10, 40]),
  };
  const faults: FaultMix = {
    links,
    partitionMeanMs: on(0.6) ? r.pick([500, 2000, 5000]) : Infinity,
    // Long partitions matter: a master cut off for longer than its lease plus an election
    // timeout is replaced while it still believes it is master.
    partitionMaxMs: r.pick([500, 2 * leaseMs, 4 * leaseMs + config.electionTimeoutMs]),
    oneWayShare: r.pick([0, 0.3, 0.7]),
    targetMasterShare: r.pick([0.2, 0.6, 0.9]),
    crashMeanMs: on(0.6) ? r.pick([300, 1500, 5000]) : Infinity,
    downMaxMs: r.pick([10, 500, 3 * leaseMs]),
    maxDown: r.pick([1, 2, 2, 4]),
    turnCrashRate: on(0.4) ? r.pick([0.002, 0.01, 0.03]) : 0,
    driftMeanMs: on(0.5) ? r.pick([300, 2000]) : Infinity,
    // Not from `r`: a draw here would shift every draw below it, and so every seed's world.
    resignMeanMs: resignMeanFor(seed),
    diskLossMeanMs: diskLossMeanFor(seed),
  };
  const spread = r.pick([0, 0.5, 1]) * (maxDriftRate / (2 + maxDriftRate));
  const clockRates = REPLICAS.map(() => 1 + r.range(-spread, spread));
  const swarm: SeedPlan = {
    seed,
    world: 'swarm',
    config,
    tickMs: r.pick([5, 10, 20]),
    safetyMs: r.pick([4000, 8000, 15000]),
    faults,
    clients: r.pick([1, 2, 3, 5]),
    keys: r.pick([1, 1, 2, 4]),
    writeShare: r.pick([0.3, 0.5, 0.8]),
    readerClients: r.pick([0, 0, 1]),
    clientTimeoutMs: r.pick([100, 300, 800]),
    checkpointEvery: r.pick([1, 1, 5, 50]),
    compactEveryCheckpoints: r.pick([Infinity, 3, 20]),
    clockRates,
  };
  // The focused worlds override the swarm draw (drawn last, so the swarm draw above is the same
  // whichever world a seed gets).
  const world = r.pick<World>([
    'swarm',
    'swarm',
    'swarm',
    'swarm',
    'deposed-master',
    'deposed-master',
    'crashy',
    'churn',
    'master-churn',
    'master-churn',
  ]);
  switch (world) {
    case 'swarm':
      return swarm;
    case 'deposed-master':
      return {
        ...swarm,
        world,
        clients: 5,
        keys: 1,
        writeShare: 0.5,
        readerClients: 2,
        clientTimeoutMs: 100,
        faults: {
          ...faults,
          links: { ...links, dropRate: 0, duplicateRate: 0, spikeRate: 0 },
          partitionMeanMs: 500,
          partitionMaxMs: 4 * leaseMs + config.electionTimeoutMs,
          oneWayShare: 0,
          targetMasterShare: 1,
          crashMeanMs: Infinity,
          turnCrashRate: 0,
        },
      };
    case 'crashy':
      return {
        ...swarm,
        world,
        faults: {
          ...faults,
          turnCrashRate: r.pick([0.02, 0.05, 0.1]),
          crashMeanMs: r.pick([300, 1000]),
          maxDown: 2,
          downMaxMs: r.pick([10, 300]),
        },
      };
    case 'churn':
      return {
        ...swarm,
        world,
        faults: {
          ...faults,
          links: { ...links, dropRate: r.pick([0.05, 0.2]), spikeRate: 0.05 },
          partitionMeanMs: 300,
          partitionMaxMs: 2 * leaseMs,
          oneWayShare: 0.8,
          targetMasterShare: 0.9,
        },
      };
    case 'master-churn':
      return {
        ...swarm,
        world,
        config: { ...config, windowSlots: 16, maxBatchCommands: r.pick([1, 4]) },
        clients: 5,
        writeShare: 0.9,
        readerClients: 0,
        faults: {
          ...faults,
          links: { ...links, dropRate: r.pick([0.1, 0.25]), spikeRate: 0.05, spikeMaxMs: 100 },
          crashMeanMs: r.pick([300, 800]),
          targetMasterShare: 0.9,
          downMaxMs: r.pick([10, 300]),
          maxDown: 2,
          turnCrashRate: 0,
        },
      };
    default:
      return assertNever(world);
  }
}

/** A one-line description of a plan for verbose output and failure reports. */
export function describePlan(plan: SeedPlan): string {
  const f = plan.faults;
  const l = f.links;
  const parts = [
    `world=${plan.world}`,
    `lease=${plan.config.leaseMs}ms drift<=${plan.config.maxDriftRate}`,
    `batch=${plan.config.maxBatchCommands} window=${plan.config.windowSlots}`,
    `clients=${plan.clients}${plan.readerClients > 0 ? `(${plan.readerClients} read-only)` : ''} keys=${plan.keys} writes=${Math.round(plan.writeShare * 100)}%`,
    `drop=${l.dropRate} dup=${l.duplicateRate} spike=${l.spikeRate}/${l.spikeMaxMs}ms`,
    f.partitionMeanMs === Infinity
      ? 'no partitions'
      : `partition~${f.partitionMeanMs}ms oneway=${f.oneWayShare}`,
    f.crashMeanMs === Infinity ? 'no crashes' : `crash~${f.crashMeanMs}ms down<=${f.downMaxMs}ms`,
    f.turnCrashRate === 0 ? '' : `turn-crash=${f.turnCrashRate}`,
    f.driftMeanMs === Infinity ? '' : `drift~${f.driftMeanMs}ms`,
    f.resignMeanMs === Infinity ? '' : `resign~${f.resignMeanMs}ms`,
    f.diskLossMeanMs === Infinity ? '' : `disk-loss~${f.diskLossMeanMs}ms`,
    `safety=${plan.safetyMs}ms`,
  ];
  return parts.filter((p) => p !== '').join(' ');
}
