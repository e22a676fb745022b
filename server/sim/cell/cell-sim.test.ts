// Proves, for the cell mode (issue 4, item 9), that the real state machine and the real client
// service, driven through the real turn with crashes, master isolations and lossy links:
// 1. never let two sessions hold conflicting locks (per machine and per client belief), hand out
//    sequencers whose generations never go back, expire no session within its acknowledged lease,
//    and keep every replica's digest equal at sampled slots, over a fixed range of seeds;
// 2. run deterministically: a seed is a complete description of a run;
// 3. are watched by checkers that bite: a planted client bug (a `queued` answer taken as a grant)
//    is reported as two sessions holding one lock.
import { describe, expect, it } from 'vitest';
import { runCellSeed } from './cell-cluster.ts';

const CLEAN_SEEDS = 24;

describe('cell simulation', () => {
  it(`holds every cell invariant over ${CLEAN_SEEDS} seeds`, () => {
    let grants = 0;
    let expiries = 0;
    for (let seed = 1; seed <= CLEAN_SEEDS; seed++) {
      const result = runCellSeed({ seed });
      const first = result.violations[0];
      // The seed and the replay line come first so a failure names what to rerun.
      expect(
        first,
        `seed ${seed}: ${first?.invariant ?? ''} ${first?.detail ?? ''} (replay: runCellSeed({ seed: ${seed} }))`,
      ).toBeUndefined();
      grants += result.stats.grants;
      expiries += result.stats.sessionsExpired;
    }
    // The run must exercise what it checks: many grants, and sessions that do expire.
    expect(grants).toBeGreaterThan(1000);
    expect(expiries).toBeGreaterThan(0);
  }, 60_000);

  it('is deterministic: a seed run twice gives the same figures', () => {
    expect(runCellSeed({ seed: 7 }).stats).toEqual(runCellSeed({ seed: 7 }).stats);
  }, 30_000);

  it('catches a client that takes a queued Acquire for a grant', () => {
    let caught: string | null = null;
    for (let seed = 1; seed <= 10 && caught === null; seed++) {
      const violation = runCellSeed({ seed, bugQueuedIsHeld: true }).violations[0];
      if (violation !== undefined) caught = violation.invariant;
    }
    expect(caught).toBe('exclusive-lock');
  }, 30_000);
});
