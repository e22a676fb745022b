// Proves, for the cell mode (issue 4, item 9), that the real state machine and the real client
// service, driven through the real turn with crashes (also at the turn's fault points), state.db
// lagging the log, compaction and snapshot installs, master isolations and lossy links:
// 1. never let two sessions hold conflicting locks, hand out sequencers whose generations never go
//    back, expire no session within its acknowledged lease, keep every replica's state digest
//    equal, keep the Multi-Paxos safety properties (shared with the KV mode), leave no ephemeral
//    file behind its session, release a closed session's locks without lock-delay, and deliver
//    every committed event for a session in log order or tell the client of the gap, over a
//    fixed range of seeds;
// 2. run deterministically: a seed is a complete description of a run;
// 3. are watched by checkers that bite: each planted bug (the cell mode's own, and the core's
//    that the shared Multi-Paxos checks catch) is reported within a few seeds;
// 4. answer stale reads (issue 6) from a state current within the stated staleness, and
//    linearizable reads only from the leased master, including every acknowledged write;
// 5. recover once the faults stop (the liveness phase, ../liveness.ts): every clean seed
//    completes it, and a cell that cannot (KeepAlives lost, snapshots lost) is flagged; a
//    waiter's grant and a client's events reach it (or it is told of the gap) within their
//    bounds, and a grant lost on its way to its waiter is flagged; all of it also with one or
//    two replicas kept down (crashed or cut off) from the heal to the end.
import { describe, expect, it } from 'vitest';
import { runCellSeed, type CellSeedOptions } from './cell-cluster.ts';
import type { CellViolation } from './checkers.ts';

const CLEAN_SEEDS = 16;

function firstViolation(
  bug: CellSeedOptions['bug'],
  budget: number,
  first = 1,
): CellViolation | null {
  for (let seed = first; seed < first + budget; seed++) {
    const violation = runCellSeed({ seed, ...(bug === undefined ? {} : { bug }) }).violations[0];
    if (violation !== undefined) return violation;
  }
  return null;
}

describe('cell simulation', () => {
  it(`holds every cell invariant over ${CLEAN_SEEDS} seeds`, () => {
    const totals = new Map<string, number>();
    for (let seed = 1; seed <= CLEAN_SEEDS; seed++) {
      const result = runCellSeed({ seed });
      const first = result.violations[0];
      // The seed and the replay line come first so a failure names what to rerun.
      expect(
        first,
        `seed ${seed}: ${first?.invariant ?? ''} ${first?.detail ?? ''} (replay: pnpm sim --cell --seed ${seed})`,
      ).toBeUndefined();
      for (const [key, value] of Object.entries(result.stats))
        totals.set(key, (totals.get(key) ?? 0) + value);
    }
    // The run must exercise what it checks.
    const at = (key: string): number => totals.get(key) ?? 0;
    expect(at('grants')).toBeGreaterThan(1000);
    expect(at('sessionsExpired')).toBeGreaterThan(0);
    expect(at('turnCrashes')).toBeGreaterThan(0);
    expect(at('restoresChecked')).toBeGreaterThan(0);
    expect(at('compactions')).toBeGreaterThan(0);
    expect(at('snapshotsInstalled')).toBeGreaterThan(0);
    expect(at('acceptsJudged')).toBeGreaterThan(0);
    expect(at('ephemeralChecks')).toBeGreaterThan(0);
    expect(at('lockDelayChecks')).toBeGreaterThan(0);
    expect(at('eventsChecked')).toBeGreaterThan(100);
    expect(at('noGapAcksChecked')).toBeGreaterThan(100);
    expect(at('linearizableReadsChecked')).toBeGreaterThan(100);
    expect(at('staleReadsChecked')).toBeGreaterThan(100);
    expect(at('staleReadsByFollowers')).toBeGreaterThan(100);
    expect(at('resignations')).toBeGreaterThan(0);
    expect(at('diskLosses')).toBeGreaterThan(0);
    expect(at('admissions')).toBeGreaterThan(0);
    // Every seed reached the liveness phase and completed it: a master served, every request,
    // read and KeepAlive was answered, every replica caught up and votes.
    expect(at('livenessPhases')).toBe(CLEAN_SEEDS);
    expect(at('livenessCompleted')).toBe(CLEAN_SEEDS);
    // ... and grants and events were owed, and delivered, after the heal: some waited across it.
    expect(at('waitersAtHeal')).toBeGreaterThan(0);
    expect(at('grantsJudgedLive')).toBeGreaterThan(10);
    expect(at('eventsJudgedLive')).toBeGreaterThan(100);
  }, 120_000);

  it('is deterministic: a seed run twice gives the same figures', () => {
    expect(runCellSeed({ seed: 7 }).stats).toEqual(runCellSeed({ seed: 7 }).stats);
  }, 60_000);

  // Measured first failing seeds (pnpm sim --cell --bug NAME --stop): queuedIsHeld 1,
  // forgetEphemeral 1, hideEventGaps 25, answerBeforePersist 1, skipLeaseCheckInPrepare none in 40,
  // trustOldBallotAsChosen 26; lateProbeSentAt 1 (re-measured with the readers, issue 6). Any
  // change to the core's timing moves the seeds a bug shows on (hideEventGaps was caught at 10
  // before candidates withdrew their lost ballots): searches start at the seed measured last
  // and go on well past it, so a shift costs time, not a false failure.
  it.each([
    ['queuedIsHeld', 'exclusive-lock', 3, 1],
    ['forgetEphemeral', 'ephemeral', 3, 1],
    // Seeds 1..24 do not happen to lose an event under a no-gap ack (measured: 25, 28, 36, 38 of
    // 1..40); search from 25.
    ['hideEventGaps', 'event-gap', 20, 25],
    ['answerBeforePersist', 'persist-before-send', 3, 1],
  ] as const)(
    'catches the planted bug %s as %s',
    (bug, invariant, budget, first) => {
      expect(firstViolation(bug, budget, first)?.invariant).toBe(invariant);
    },
    60_000,
  );

  it('catches lateProbeSentAt (a probe answer naming a later sentAt) as stale-read', () => {
    expect(firstViolation('lateProbeSentAt', 3)?.invariant).toBe('stale-read');
  }, 60_000);

  // ignoreLeaseForReads: a deposed master, still master in its own eyes, answers reads. Measured:
  // seeds 26, 57, 67, 91 and 94 of 1..100 are caught (stale-read: it answers a stale read with
  // stalenessMs 0); with stale reads not judged, linearizable-read catches seed 145 of 1..199
  // since held Acquires share log entries (91 before; 82 and 94 before candidates withdrew their
  // lost ballots).
  it('catches ignoreLeaseForReads as stale-read, and as linearizable-read alone', () => {
    expect(firstViolation('ignoreLeaseForReads', 20, 26)?.invariant).toBe('stale-read');
    let alone: CellViolation | undefined;
    for (let seed = 131; seed < 161 && alone === undefined; seed++)
      alone = runCellSeed({ seed, bug: 'ignoreLeaseForReads', checkStaleReads: false })
        .violations[0];
    expect(alone?.invariant).toBe('linearizable-read');
  }, 60_000);

  // serveAfterResign: a master that resigned keeps serving on its lease. Only the seeds with
  // resignations (~40 %) can show it, and only when the successor's first round completes before
  // its Accept reaches the old master (about 1 resignation in 100): measured, seeds 34, 51, 57,
  // 95 and 131 of 1..150. A cell seed costs ~0.5 s, so search from 34.
  it('catches serveAfterResign (a resigned master keeps its lease) as single-lease', () => {
    expect(firstViolation('serveAfterResign', 30, 34)?.invariant).toBe('single-lease');
  }, 60_000);

  // voteWithoutAdmission: a replacement disk votes at once as the disk it replaced, so a majority
  // that includes it can miss a chosen slot and choose another value there. Only the seeds with
  // disk losses (~40 %) can show it: measured, seeds 12, 15 and 37 of 1..40 (agreement each
  // time). Search 11..13 to keep it quick.
  it('catches voteWithoutAdmission (a replacement disk votes at once) as agreement', () => {
    expect(firstViolation('voteWithoutAdmission', 15, 11)?.invariant).toBe('agreement');
  }, 60_000);

  // The liveness checks bite. loseKeepAlivesAfterHeal: every KeepAlive sent after the heal is
  // lost, so the master expires sessions whose clients keep sending them (measured: seeds 2, 3,
  // 6, 7, 8 of 1..10, each by the session check). loseSnapshots: no shipped snapshot arrives, so
  // a replica behind its peers' compaction point never catches up (seeds 3, 6, 8, 9, 10 of
  // 1..10: behind at the end, or, seed 10 since replicas stay down past the heal in some seeds
  // (seed 3 before), no master within the bound when the elected one needs one).
  it("catches loseKeepAlivesAfterHeal as liveness: a live client's session expires", () => {
    const violation = firstViolation('loseKeepAlivesAfterHeal', 10, 2);
    expect(violation?.invariant).toBe('liveness');
    expect(violation?.detail).toMatch(/proposes to expire session \d+ of live client/);
  }, 60_000);

  // loseGrantsAfterHeal: after the heal every lock-granted push is lost, and so is every answer
  // to a waiter's ListLocks recheck, so a waiter never learns it holds the lock. Measured: seeds
  // 3, 9, 10, 11 and 19 of 1..20 (the heal pair's waiter, or a waiter of the workload's own; 10
  // since replicas stay down past the heal in some seeds).
  it('catches loseGrantsAfterHeal as liveness: a granted waiter is never told', () => {
    const violation = firstViolation('loseGrantsAfterHeal', 20, 3);
    expect(violation?.invariant).toBe('liveness');
    expect(violation?.detail).toMatch(/still waits for \S+ on handle \d+, granted at .* not told/);
  }, 60_000);

  // Not a planted bug: paxlock's own, now fixed. Machine time is the max of the masters' stamps,
  // and a master whose clock was behind an earlier master's left a lock-delay frozen until its
  // clock caught up (minutes, with the simulator's unrelated clock offsets): seeds 19, 26, 35, 43,
  // 50 and 51 of 1..60 before masters stamped on from the machine's time (Replica.stampNow,
  // docs/state-machine.md rule 2). strictLockDelays holds any such wait against the phase.
  it('leaves no lock-delay frozen behind a new master clock (strictLockDelays, seeds 19..51)', () => {
    let frozen = 0;
    for (const seed of [19, 26, 35, 43, 50, 51]) {
      const result = runCellSeed({ seed, strictLockDelays: true });
      expect(result.violations[0]?.detail ?? 'none').toBe('none');
      frozen += result.stats.frozenLockDelays;
    }
    expect(frozen).toBe(0);
  }, 60_000);

  // Issue 4, "two replicas down: the cell still serves": in about a third of the seeds one or
  // two replicas stay down from the heal to the end (crashed, or cut off from every other
  // replica), half the time with the master the heal found among them, and every liveness check
  // must still hold with the majority left. Seed 2 keeps two crashed, seed 21 two cut off with
  // the master among them, seed 32 the master crashed (its successor served 1,638 ms after the
  // heal, the slowest of seeds 1..40).
  it('completes the liveness phase with one or two replicas down past the heal', () => {
    const down = [2, 21, 32].map((seed) => {
      const result = runCellSeed({ seed });
      expect(result.violations[0]?.detail ?? 'none').toBe('none');
      return result.stats;
    });
    expect(down.map((s) => s.downPastHeal)).toEqual([1, 1, 1]);
    expect(down.map((s) => s.livenessCompletedDown)).toEqual([1, 1, 1]);
    expect(down.map((s) => s.replicasDownPastHeal)).toEqual([2, 2, 1]);
    expect(down.map((s) => s.cutOffPastHeal)).toEqual([0, 1, 0]);
    // Whether the master the heal finds is among them depends on the run's trajectory (any
    // change to the core moves it); at least one of these seeds must start with a fail-over.
    expect(down.reduce((n, s) => n + s.mastersDownPastHeal, 0)).toBeGreaterThan(0);
    // Clients found the live replicas: the crashed ones refused their frames.
    expect(down[0]?.refusedFrames).toBeGreaterThan(0);
  }, 60_000);

  it('catches loseSnapshots as liveness: a replica never catches up', () => {
    const violation = firstViolation('loseSnapshots', 10, 6);
    expect(violation?.invariant).toBe('liveness');
    expect(violation?.detail).toMatch(/applied only through slot \d+, behind acknowledged slot/);
  }, 60_000);
});
