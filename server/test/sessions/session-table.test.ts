// The master's lease table expires a session only after a full lease without KeepAlives,
// reports each expiry once, and a new master gives every recorded session a full lease.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SessionTable } from '../../src/sessions/session-table.ts';

describe('SessionTable', () => {
  it('does not expire a session whose KeepAlives arrive within its lease', () => {
    const table = new SessionTable();
    table.onCreated(1, 1000, 0);
    for (let t = 900; t < 10_000; t += 900) {
      expect(table.takeExpired(t)).toEqual([]);
      expect(table.keepAlive(1, t)).toBe(1000);
    }
    expect(table.takeExpired(9900 + 999)).toEqual([]);
    expect(table.takeExpired(9900 + 1000)).toEqual([1]);
  });

  it('reports an expiry once, and refuses KeepAlives for a session being expired', () => {
    const table = new SessionTable();
    table.onCreated(7, 500, 100);
    expect(table.takeExpired(600)).toEqual([7]);
    expect(table.takeExpired(700)).toEqual([]);
    expect(table.keepAlive(7, 700)).toBeNull();
    table.retryExpiry(7);
    expect(table.takeExpired(800)).toEqual([7]);
    table.onRemoved(7);
    expect(table.has(7)).toBe(false);
  });

  it('refuses a KeepAlive that arrives after the lease ran out, even before expiry is taken', () => {
    const table = new SessionTable();
    table.onCreated(1, 1000, 0);
    expect(table.keepAlive(1, 1000)).toBeNull();
    expect(table.takeExpired(1000)).toEqual([1]);
  });

  it('gives every recorded session a full lease when it becomes master', () => {
    const table = new SessionTable();
    table.onMastership([{ session: 1, leaseMs: 12_000 }, { session: 2, leaseMs: 3_000 }], 50_000);
    expect(table.remainingMs(1, 50_000)).toBe(12_000);
    expect(table.takeExpired(52_999)).toEqual([]);
    expect(table.takeExpired(53_000)).toEqual([2]);
    expect(table.takeExpired(62_000)).toEqual([1]);
  });

  it('forgets every lease when it steps down', () => {
    const table = new SessionTable();
    table.onCreated(1, 1000, 0);
    table.onStepDown();
    expect(table.size).toBe(0);
    expect(table.keepAlive(1, 10)).toBeNull();
  });

  it('reports the same expiries as a full scan, although it scans only once the earliest lease may end', () => {
    // A model with no shortcut: every lease, walked on every takeExpired.
    const op = fc.oneof(
      fc.record({ type: fc.constant('create' as const), session: fc.integer({ min: 1, max: 6 }), leaseMs: fc.integer({ min: 1, max: 300 }) }),
      fc.record({ type: fc.constant('keepAlive' as const), session: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ type: fc.constant('remove' as const), session: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ type: fc.constant('retry' as const), session: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ type: fc.constant('take' as const) }),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(op, fc.integer({ min: 0, max: 200 })), { maxLength: 60 }), (steps) => {
        const table = new SessionTable();
        const model = new Map<number, { leaseMs: number; expiresAt: number; isExpiring: boolean }>();
        let now = 0;
        for (const [step, advanceMs] of steps) {
          now += advanceMs;
          switch (step.type) {
            case 'create':
              table.onCreated(step.session, step.leaseMs, now);
              model.set(step.session, { leaseMs: step.leaseMs, expiresAt: now + step.leaseMs, isExpiring: false });
              break;
            case 'keepAlive': {
              const lease = model.get(step.session);
              const isAlive = lease !== undefined && !lease.isExpiring && lease.expiresAt > now;
              if (isAlive) lease.expiresAt = now + lease.leaseMs;
              expect(table.keepAlive(step.session, now)).toBe(isAlive ? lease.leaseMs : null);
              break;
            }
            case 'remove':
              table.onRemoved(step.session);
              model.delete(step.session);
              break;
            case 'retry': {
              table.retryExpiry(step.session);
              const lease = model.get(step.session);
              if (lease !== undefined) lease.isExpiring = false;
              break;
            }
            case 'take': {
              const expected = [...model]
                .filter(([, lease]) => !lease.isExpiring && lease.expiresAt <= now)
                .map(([session, lease]) => {
                  lease.isExpiring = true;
                  return session;
                })
                .sort((a, b) => a - b);
              expect(table.takeExpired(now)).toEqual(expected);
              break;
            }
          }
        }
      }),
    );
  });
});
