import { describe, expect, it } from 'vitest';
import { Freshness } from '../../src/sessions/freshness.ts';

const SLOW = 1 / (1 - 0.01);

describe('Freshness', () => {
  it('promises nothing before a probe was answered, or before catching up with it', () => {
    const f = new Freshness();
    expect(f.bound(1_000, 50)).toBeNull();
    f.onMasterCommit(900, 60);
    expect(f.bound(1_000, 59)).toBeNull();
    expect(f.bound(1_000, 60)).toBeCloseTo(100 * SLOW);
  });

  it('counts from when the probe was sent, and uses the newest probe already applied', () => {
    const f = new Freshness();
    f.onMasterCommit(100, 10);
    f.onMasterCommit(200, 20);
    f.onMasterCommit(300, 30);
    expect(f.bound(400, 25)).toBeCloseTo(200 * SLOW);
    expect(f.bound(400, 30)).toBeCloseTo(100 * SLOW);
    // Once a newer mark is applied, the older ones are gone.
    expect(f.bound(500, 30)).toBeCloseTo(200 * SLOW);
  });

  it('ignores an answer older than one already recorded', () => {
    const f = new Freshness();
    f.onMasterCommit(300, 30);
    f.onMasterCommit(200, 5);
    expect(f.bound(400, 10)).toBeNull();
  });

  it('scales by the slowest clock the drift bound allows', () => {
    const f = new Freshness(0.05);
    f.onMasterCommit(0, 1);
    // A clock at rate 0.95 measured 950 ms of a real second.
    expect(f.bound(950, 1)).toBeCloseTo(1_000);
    expect(() => new Freshness(1)).toThrow(RangeError);
  });
});
