// Ballots: totally ordered (round, replica) pairs. The master's ballot is the cell's epoch and
// rides on every client reply, so clients see fail-overs (DESIGN.md, Multi-Paxos; Lamport,
// "Paxos Made Simple" section 2.2: proposal numbers are unique and totally ordered).

import type { ReplicaId } from './ports.ts';

export interface Ballot {
  readonly round: number;
  readonly replica: ReplicaId;
}

/** The ballot below every real ballot: nothing has been promised yet. */
export const ZERO_BALLOT: Ballot = { round: 0, replica: 0 };

/** Negative if a < b, zero if equal, positive if a > b. Round first, then replica id. */
export function compareBallots(a: Ballot, b: Ballot): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  if (a.replica !== b.replica) return a.replica < b.replica ? -1 : 1;
  return 0;
}

export function isBallotEqual(a: Ballot, b: Ballot): boolean {
  return compareBallots(a, b) === 0;
}

/** The smallest ballot owned by `replica` that is above `above`. */
export function nextBallot(above: Ballot, replica: ReplicaId): Ballot {
  const candidate = { round: above.round, replica };
  return compareBallots(candidate, above) > 0 ? candidate : { round: above.round + 1, replica };
}

export function formatBallot(b: Ballot): string {
  return `${b.round}.${b.replica}`;
}
