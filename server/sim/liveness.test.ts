// Proves the liveness phase's arithmetic (liveness.ts), shared by the KV and cell modes: the
// bounds are derived from the configuration as stated, operations are judged from the later of
// their start and the master bound, the end-of-run catch-up check names the replica furthest
// behind first, acknowledged slots are looked up as of a past time, and the cell mode's
// notification bounds (events, grants, free locks) are derived as stated.
import { describe, expect, it } from 'vitest';
import {
  AckedSlots,
  catchUpFailures,
  isCaughtUp,
  livenessBounds,
  LivenessPhase,
  notificationBounds,
} from './liveness.ts';

const config = {
  leaseMs: 1000,
  electionTimeoutMs: 1000,
  electionJitterMs: 500,
  maxDriftRate: 0.05,
};

describe('liveness bounds', () => {
  it('derives the master bound from lease, election timeout and jitter, stretched by drift', () => {
    const bounds = livenessBounds({ config, clientTimeoutMs: 300 });
    expect(bounds.masterWithinMs).toBeCloseTo((2000 + 2 * 1500 + 500) * 1.05);
    expect(bounds.operationWithinMs).toBe(1600);
  });

  it('gives one more election round to a cell with replicas kept down past the heal', () => {
    const bounds = livenessBounds({ config, clientTimeoutMs: 300, extraElections: 1 });
    expect(bounds.masterWithinMs).toBeCloseTo((2000 + 3 * 1500 + 500) * 1.05);
    expect(bounds.operationWithinMs).toBe(1600);
  });

  it('derives the notification bounds from the KeepAlive period and the operation bound', () => {
    const bounds = notificationBounds({ operationWithinMs: 1600, sessionLeaseMs: 2000 });
    // An event: the next KeepAlive is due within a quarter lease and is answered within 1600 ms.
    expect(bounds.eventWithinMs).toBe(500 + 1600);
    // A grant: the same, then the waiter's ListLocks recheck, one more operation.
    expect(bounds.grantWithinMs).toBe(500 + 1600 + 1600);
    expect(bounds.freeLockWithinMs).toBe(1600);
    const phase = new LivenessPhase({
      healAt: 4000,
      bounds: { masterWithinMs: 3000, operationWithinMs: 1600 },
    });
    // Owed before the master bound: judged from it; after: from when it became owed.
    expect(phase.overdueMs(5000, bounds.grantWithinMs, 10_700)).toBeNull();
    expect(phase.overdueMs(5000, bounds.grantWithinMs, 10_701)).toBe(3701);
    expect(phase.overdueMs(9000, bounds.eventWithinMs, 11_200)).toBe(2200);
    expect(phase.overdueMs(0, 0, 3999)).toBeNull();
  });

  it('judges an operation from the later of its start and the master bound', () => {
    const phase = new LivenessPhase({
      healAt: 4000,
      bounds: { masterWithinMs: 3000, operationWithinMs: 1600 },
    });
    expect(phase.masterDeadlineAt).toBe(7000);
    // Started before the bound: judged from the bound.
    expect(phase.operationOverdueMs(1000, 8600)).toBeNull();
    expect(phase.operationOverdueMs(1000, 8601)).toBe(1601);
    // Started after it: judged from its start.
    expect(phase.operationOverdueMs(8000, 9600)).toBeNull();
    expect(phase.operationOverdueMs(8000, 9700)).toBe(1700);
    // Never in the safety phase.
    expect(phase.operationOverdueMs(0, 3999)).toBeNull();
  });

  it('notes the first master after the heal only, and says when none came', () => {
    const phase = new LivenessPhase({
      healAt: 4000,
      bounds: { masterWithinMs: 3000, operationWithinMs: 1600 },
    });
    expect(phase.masterMissed('serve')).toMatch(/no replica could serve within 3000 ms/);
    expect(phase.onMasterServes(3000)).toBe(false);
    expect(phase.onMasterServes(5000)).toBe(true);
    expect(phase.onMasterServes(6000)).toBe(false);
    expect(phase.masterAt).toBe(5000);
    expect(phase.masterMissed('serve')).toBeNull();
  });
});

describe('catch-up at the end', () => {
  const replicas = [
    { id: 1, applied: 40, isLearner: false, diskId: 0 },
    { id: 2, applied: 7, isLearner: false, diskId: 0 },
    { id: 3, applied: 40, isLearner: true, diskId: 99 },
  ] as const;

  it('names every replica behind or a learner, the furthest behind first', () => {
    const failures = catchUpFailures(replicas, 40);
    expect(failures).toHaveLength(2);
    expect(failures[0]).toMatch(/^r2 applied only through slot 7, behind acknowledged slot 40/);
    expect(failures[1]).toMatch(/^r3 is still a learner \(disk 99\)/);
    expect(isCaughtUp(replicas, 40)).toBe(false);
    expect(isCaughtUp([replicas[0]], 40)).toBe(true);
  });

  it('looks up the highest slot acknowledged as of a past time', () => {
    const acked = new AckedSlots();
    acked.onAcknowledged(5, 100);
    acked.onAcknowledged(3, 150); // an older slot acknowledged later changes nothing
    acked.onAcknowledged(9, 200);
    expect(acked.highest).toBe(9);
    expect(acked.highestBy(99)).toBe(0);
    expect(acked.highestBy(150)).toBe(5);
    expect(acked.highestBy(200)).toBe(9);
  });
});
