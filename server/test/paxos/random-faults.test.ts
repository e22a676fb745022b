// Proves the core keeps Paxos safety under random faults, without the full simulator (see
// fault-run.ts for the fault mix and the checks), and that liveness returns once faults stop.
import { describe, expect, it } from 'vitest';
import { runSeed } from './fault-run.ts';

describe('the core under random faults', () => {
  it('keeps agreement, exactly-once and a single lease holder, and recovers liveness', () => {
    let applied = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const outcome = runSeed(seed);
      expect(outcome.violations, `seed ${seed}`).toEqual([]);
      applied += outcome.applied;
    }
    expect(applied).toBeGreaterThan(1000);
  });
});

describe('the core under random faults with elections faster than the lease', () => {
  it('keeps agreement, exactly-once and a single lease holder when candidates meet lease-held refusals', () => {
    for (let seed = 100; seed < 130; seed++) {
      const outcome = runSeed(seed, { config: { electionTimeoutMs: 300, electionJitterMs: 200 } });
      expect(outcome.violations, `seed ${seed}`).toEqual([]);
    }
  });

  it('keeps them without batching and with a window of one', () => {
    for (let seed = 200; seed < 215; seed++) {
      const outcome = runSeed(seed, {
        config: { maxBatchCommands: 1, windowSlots: 1, catchUpBatchSlots: 3 },
      });
      expect(outcome.violations, `seed ${seed}`).toEqual([]);
    }
  });
});
