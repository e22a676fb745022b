import { describe, expect, it } from 'vitest';
import { Freshness, FRESHNESS_DRIFT } from '../../src/sessions/freshness.ts';

describe('Freshness', () => {
  it('promises nothing before a probe was answered, or before catching up with it', () => {
    const f = new Freshness();
    expect(f.bound(1_000, 50)).toBeNull();
    f.onMasterCommit(900, 60);
    expect(f.bound(1_000, 59)).toBeNull();
    expect(f.bound(1_000, 60)).toBeCloseTo(100 * (1 + FRESHNESS_DRIFT));
  });

  it('counts from when the probe was sent, and uses the newest probe already applied', () => {
    const f = new Freshness();
    f.onMasterCommit(100, 10);
    f.onMasterCommit(200, 20);
    f.onMasterCommit(300, 30);
    expect(f.bound(400, 25)).toBeCloseTo(200 * (1 + FRESHNESS_DRIFT));
    expect(f.bound(400, 30)).toBeCloseTo(100 * (1 + FRESHNESS_DRIFT));
    // Once a newer mark is applied, the older ones are gone.
    expect(f.bound(500, 30)).toBeCloseTo(200 * (1 + FRESHNESS_DRIFT));
  });

  it('ignores an answer older than one already recorded, and forgets all on reset', () => {
    const f = new Freshness();
    f.onMasterCommit(300, 30);
    f.onMasterCommit(200, 5);
    expect(f.bound(400, 10)).toBeNull();
    f.reset();
    expect(f.bound(400, 30)).toBeNull();
  });
});
