// The core's planted bugs (Config.bugs, paxos/ports.ts) by name, shared by the KV mode (main.ts)
// and the cell mode (cell/cell-main.ts): each mode must catch every one of them.

import type { PlantedBugs } from '../src/paxos/ports.ts';

export const BUG_NAMES = [
  'answerBeforePersist',
  'skipLeaseCheckInPrepare',
  'trustOldBallotAsChosen',
  'reproposeLowestBallot',
  'ignoreLeaseForReads',
  'serveAfterResign',
  'voteWithoutAdmission',
] as const satisfies readonly (keyof PlantedBugs)[];

export type BugName = (typeof BUG_NAMES)[number];

export function bugsFor(bug: BugName | null): PlantedBugs | undefined {
  return bug === null ? undefined : { [bug]: true };
}

export function parseBugName(name: string | undefined): BugName | undefined {
  return BUG_NAMES.find((b) => b === name);
}
