// The master's in-memory table of session leases (DESIGN.md, Sessions; Chubby section 2.8).
// Pure: time is an argument. KeepAlives never touch the log: only creation and expiry do, so
// this table, not the replicated state, knows when each session last showed signs of life.
//
// Invariants:
// - A session is never reported expired while KeepAlives arrived within its lease: expiry is
//   the time of the last KeepAlive (or creation, or mastership) plus the full lease.
// - A new master never expires anyone on the strength of an old master's memory: when it starts
//   serving it gives every recorded session a full lease from that moment (onMastership).
// - A session is reported for expiry once; the master proposes ExpireSession for it, and the
//   table forgets it when that entry (or a CloseSession) is applied.

import { assert } from '@paxlock/shared';

interface Lease {
  readonly leaseMs: number;
  expiresAt: number;
  isExpiring: boolean;
}

export class SessionTable {
  readonly #leases = new Map<number, Lease>();
  /**
   * No lease that is not being expired ends before this: takeExpired, which the master runs after
   * every turn, walks the table only once the earliest lease may have run out (a KeepAlive only
   * pushes an end later, so the bound stays true until a lease is added or re-armed).
   */
  #earliestEndMs = Infinity;

  /** The replica became master at `now`: every session recorded in the state gets a full lease. */
  onMastership(sessions: readonly { readonly session: number; readonly leaseMs: number }[], now: number): void {
    this.#leases.clear();
    this.#earliestEndMs = Infinity;
    for (const { session, leaseMs } of sessions) {
      this.#leases.set(session, { leaseMs, expiresAt: now + leaseMs, isExpiring: false });
      this.#earliestEndMs = Math.min(this.#earliestEndMs, now + leaseMs);
    }
  }

  /** The replica is no longer master: its memory of leases means nothing to the next one. */
  onStepDown(): void {
    this.#leases.clear();
    this.#earliestEndMs = Infinity;
  }

  /** A CreateSession was applied. */
  onCreated(session: number, leaseMs: number, now: number): void {
    assert(leaseMs > 0, 'session lease must be positive');
    this.#leases.set(session, { leaseMs, expiresAt: now + leaseMs, isExpiring: false });
    this.#earliestEndMs = Math.min(this.#earliestEndMs, now + leaseMs);
  }

  /** A CloseSession or ExpireSession was applied. */
  onRemoved(session: number): void {
    this.#leases.delete(session);
  }

  has(session: number): boolean {
    return this.#leases.has(session);
  }

  /**
   * A KeepAlive arrived: extend the lease by a full lease from now. Returns the remaining lease
   * in ms, or null if the session is unknown or already being expired (the client must learn
   * its session is gone rather than be told it is alive).
   */
  keepAlive(session: number, now: number): number | null {
    const lease = this.#leases.get(session);
    if (lease === undefined || lease.isExpiring) return null;
    if (lease.expiresAt <= now) return null;
    lease.expiresAt = now + lease.leaseMs;
    return lease.leaseMs;
  }

  remainingMs(session: number, now: number): number | null {
    const lease = this.#leases.get(session);
    if (lease === undefined || lease.isExpiring) return null;
    return Math.max(0, lease.expiresAt - now);
  }

  /**
   * Sessions whose lease ran out at or before `now` and that were not reported yet. Each is
   * reported once: the caller proposes ExpireSession for it.
   */
  takeExpired(now: number): number[] {
    if (now < this.#earliestEndMs) return [];
    const expired: number[] = [];
    let earliestEndMs = Infinity;
    for (const [session, lease] of this.#leases) {
      if (lease.isExpiring) continue;
      if (lease.expiresAt <= now) {
        lease.isExpiring = true;
        expired.push(session);
      } else if (lease.expiresAt < earliestEndMs) {
        earliestEndMs = lease.expiresAt;
      }
    }
    this.#earliestEndMs = earliestEndMs;
    return expired.sort((a, b) => a - b);
  }

  /** An ExpireSession proposal was lost (fail-over, timeout): allow it to be reported again. */
  retryExpiry(session: number): void {
    const lease = this.#leases.get(session);
    if (lease === undefined) return;
    lease.isExpiring = false;
    this.#earliestEndMs = Math.min(this.#earliestEndMs, lease.expiresAt);
  }

  get size(): number {
    return this.#leases.size;
  }
}
