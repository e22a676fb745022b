// The client's lease bookkeeping (session.ts), driven with explicit times.

import { describe, expect, it } from 'vitest';
import { CLIENT_CLOCK_DRIFT, localLeaseEnd, SessionLease } from '../src/session.ts';

describe('SessionLease', () => {
  it('counts the local lease from the send time, shortened by the drift bound', () => {
    expect(localLeaseEnd(1_000, 12_000)).toBe(1_000 + 12_000 * (1 - CLIENT_CLOCK_DRIFT));
    const lease = new SessionLease(0, 10_000, 45_000);
    // The ack came 4 s after the send: the lease still counts from the send.
    expect(lease.onAck(5_000, 10_000, 9_000)).toBeNull();
    expect(lease.leaseEnd).toBe(5_000 + 9_900);
    // An older ack arriving late never shortens the lease.
    lease.onAck(1_000, 10_000, 9_500);
    expect(lease.leaseEnd).toBe(14_900);
  });

  it('goes connected -> jeopardy when the local lease runs out, and back (safe) on an ack in time', () => {
    const lease = new SessionLease(0, 10_000, 45_000);
    expect(lease.advance(9_899)).toBeNull();
    expect(lease.state).toBe('connected');
    expect(lease.advance(9_900)).toBe('jeopardy');
    expect(lease.state).toBe('jeopardy');
    expect(lease.remaining(9_950)).toBe(0);
    expect(lease.graceEnd).toBe(9_900 + 45_000);
    expect(lease.advance(20_000)).toBeNull();
    // An ack for a KeepAlive sent while in jeopardy makes the session safe again.
    expect(lease.onAck(30_000, 10_000, 30_050)).toBe('safe');
    expect(lease.state).toBe('connected');
    expect(lease.graceEnd).toBe(Number.POSITIVE_INFINITY);
  });

  it('stays in jeopardy if the ack is for a KeepAlive whose lease has already run out', () => {
    const lease = new SessionLease(0, 10_000, 45_000);
    lease.advance(10_000);
    expect(lease.onAck(100, 10_000, 12_000)).toBeNull();
    expect(lease.state).toBe('jeopardy');
  });

  it('expires when the grace period runs out, and an ack after that changes nothing', () => {
    const lease = new SessionLease(0, 10_000, 45_000);
    expect(lease.advance(9_900 + 45_000)).toBe('expired');
    expect(lease.state).toBe('expired');
    expect(lease.onAck(60_000, 10_000, 60_001)).toBeNull();
    expect(lease.state).toBe('expired');
  });

  it('expires at once when the master says so, and closing is final', () => {
    const lease = new SessionLease(0, 10_000, 45_000);
    expect(lease.onExpired()).toBe('expired');
    expect(lease.onExpired()).toBeNull();
    const closed = new SessionLease(0, 10_000, 45_000);
    closed.onClosed();
    expect(closed.advance(1e9)).toBeNull();
    expect(closed.state).toBe('closed');
  });
});
