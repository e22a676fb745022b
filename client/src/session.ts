// The client's view of its session lease (Burrows 2006, section 2.8): pure, times passed in, so
// the tests can drive it through any schedule.
//
// The master holds the session for `leaseRemainingMs` from when it handled a KeepAlive. The
// client cannot know when that was, only that it was after the KeepAlive was sent, so it counts
// its local lease from the moment it SENT the KeepAlive, and shortens it by the clock-rate drift
// the cell allows (a client clock running slow must not outlive the master's lease). The local
// lease therefore always ends before the master's, whatever the round trip took.
//
//   connected --(local lease runs out)--> jeopardy --(KeepAlive acked)--> connected ("safe")
//                                            |
//                                            +--(grace period runs out, or the master says
//                                                SESSION_EXPIRED)--> expired
//
// In jeopardy the session may still be alive at the master (a fail-over is in progress, say),
// but the client can no longer promise that its locks are held: whoever uses a lock must stop
// using it. After the grace period the client gives up: even if the master still had the
// session, the client treats it as gone.

/** The clock-rate drift allowed between client and master (1 %: far above real clocks). */
export const CLIENT_CLOCK_DRIFT = 0.01;

export type SessionState = 'connected' | 'jeopardy' | 'expired' | 'closed';

export type LeaseTransition = 'jeopardy' | 'safe' | 'expired' | null;

export class SessionLease {
  readonly #graceMs: number;
  #state: SessionState = 'connected';
  /** When the local lease runs out (local monotonic ms). */
  #leaseEnd: number;
  /** When jeopardy turns into expiry (local monotonic ms); meaningful only in jeopardy. */
  #graceEnd = Number.POSITIVE_INFINITY;

  /** A new session: its lease runs from when CreateSession was sent. */
  constructor(createdSentAt: number, leaseMs: number, graceMs: number) {
    this.#graceMs = graceMs;
    this.#leaseEnd = localLeaseEnd(createdSentAt, leaseMs);
  }

  get state(): SessionState {
    return this.#state;
  }

  /** When the local lease runs out, or ran out. */
  get leaseEnd(): number {
    return this.#leaseEnd;
  }

  get graceEnd(): number {
    return this.#graceEnd;
  }

  /** The local lease left at `now` (0 once it ran out). */
  remaining(now: number): number {
    return Math.max(0, this.#leaseEnd - now);
  }

  /**
   * Moves the state on to `now`: the local lease running out means jeopardy, and the grace
   * period running out after that means expiry. Call it before trusting the state.
   */
  advance(now: number): LeaseTransition {
    if (this.#state === 'connected' && now >= this.#leaseEnd) {
      this.#state = 'jeopardy';
      this.#graceEnd = this.#leaseEnd + this.#graceMs;
      if (now < this.#graceEnd) return 'jeopardy';
    }
    if (this.#state === 'jeopardy' && now >= this.#graceEnd) {
      this.#state = 'expired';
      return 'expired';
    }
    return null;
  }

  /** The master acknowledged a KeepAlive sent at `sentAt`, holding the session `leaseMs` more. */
  onAck(sentAt: number, leaseMs: number, now: number): LeaseTransition {
    const early = this.advance(now);
    if (this.#state === 'expired' || this.#state === 'closed') return early;
    this.#leaseEnd = Math.max(this.#leaseEnd, localLeaseEnd(sentAt, leaseMs));
    if (this.#state === 'jeopardy' && now < this.#leaseEnd) {
      this.#state = 'connected';
      this.#graceEnd = Number.POSITIVE_INFINITY;
      return 'safe';
    }
    return early;
  }

  /** The master said the session is gone. */
  onExpired(): LeaseTransition {
    if (this.#state === 'expired' || this.#state === 'closed') return null;
    this.#state = 'expired';
    return 'expired';
  }

  onClosed(): void {
    this.#state = 'closed';
  }
}

/** The local end of a lease of `leaseMs` that the master granted after `sentAt`. */
export function localLeaseEnd(sentAt: number, leaseMs: number): number {
  return sentAt + leaseMs * (1 - CLIENT_CLOCK_DRIFT);
}
