// What the consensus core is given from outside: its configuration, a source of randomness
// and a logger. The core never reads a clock (time is the `now` argument of every call),
// never uses a timer and never does I/O; that is what lets the deterministic simulator drive
// it through millions of fault schedules (DESIGN.md, Multi-Paxos; STYLE.md, Boundaries).

/** Replica ids are small positive integers, unique in the cell (1..5 for a five-replica cell). */
export type ReplicaId = number;

export interface Config {
  /** This replica. */
  readonly id: ReplicaId;
  /** Every replica of the cell, this one included. A majority is floor(n/2)+1. */
  readonly replicas: readonly ReplicaId[];
  /**
   * Master lease length, in the clock of whoever measures it. An acceptor that acks the master
   * at local time t refuses other candidates until t + leaseMs.
   */
  readonly leaseMs: number;
  /**
   * Bound on the clock-rate drift between any two replicas, as a fraction (0.01 = 1 %). The
   * master shortens the lease it believes it holds by this factor on both sides, so a
   * master's lease ends (in real time) before any acceptor's grant does.
   */
  readonly maxDriftRate: number;
  /** How often the master sends a heartbeat (commit index, lease renewal). */
  readonly heartbeatMs: number;
  /**
   * A follower that has not heard a live master for this long becomes a candidate, after a
   * random jitter in [0, electionJitterMs) drawn from Random. At startup the first candidacy
   * is staggered by replica id so one master emerges quickly.
   */
  readonly electionTimeoutMs: number;
  readonly electionJitterMs: number;
  /** Most slots the master keeps in flight (proposed, not yet chosen) at once. */
  readonly windowSlots: number;
  /** Most commands batched into one slot value; 1 turns batching off. */
  readonly maxBatchCommands: number;
  /** Most entries sent in one catch-up reply. */
  readonly catchUpBatchSlots: number;
  /**
   * Test-only switches that plant known bugs, so tests can prove the simulator's checkers
   * bite. Production configuration never sets them.
   */
  readonly bugs?: PlantedBugs;
}

export interface PlantedBugs {
  /** Acceptors answer Promise/Accepted before the promise or acceptance is persisted. */
  readonly answerBeforePersist?: boolean;
  /** Acceptors promise a candidate even while they have granted another master a lease. */
  readonly skipLeaseCheckInPrepare?: boolean;
  /** A follower trusts any accepted value at or below the commit index as chosen. */
  readonly trustOldBallotAsChosen?: boolean;
  /** A new master re-proposes the lowest-ballot accepted value instead of the highest. */
  readonly reproposeLowestBallot?: boolean;
  /** The master serves reads without checking its lease. */
  readonly ignoreLeaseForReads?: boolean;
  /**
   * A resigning master tells its acceptors to drop its lease but keeps serving on the lease it
   * already holds (it only stops renewing it).
   */
  readonly serveAfterResign?: boolean;
  /**
   * A replacement disk votes at once, claiming the seat of the disk it replaced, as a fresh
   * data directory did before admissions (docs/consensus.md, Replacing a disk).
   */
  readonly voteWithoutAdmission?: boolean;
}

/** Injected randomness: a seeded generator in the simulator, the platform generator in the process. */
export interface Random {
  /** A number in [0, 1). */
  next(): number;
}

/** Injected logging: a pino child in the process, a transcript in the simulator. */
export interface Logger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
