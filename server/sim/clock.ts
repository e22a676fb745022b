// A replica's local monotonic clock in virtual time. Each clock runs at its own rate, piecewise
// constant: the rate changes only when the simulator injects a clock-drift fault, and every rate
// stays within the bound the configuration promises (Config.maxDriftRate between any two clocks).
// Clocks start at unrelated offsets: replicas share no notion of time (DESIGN.md, master lease).
//
// The lease checker needs the inverse too: given a local time, the global instant the clock reads
// it (assuming the current rate holds), to compare leases held by different replicas.

import { assert } from '@paxlock/shared';

export class SimClock {
  /** Global time and local reading at the last rate change. */
  #globalBase: number;
  #localBase: number;
  #rate: number;

  constructor(options: {
    readonly globalNow: number;
    readonly localStart: number;
    readonly rate: number;
  }) {
    assert(options.rate > 0, 'clock rate must be positive');
    this.#globalBase = options.globalNow;
    this.#localBase = options.localStart;
    this.#rate = options.rate;
  }

  get rate(): number {
    return this.#rate;
  }

  /** The local reading at global time `globalNow` (never earlier than the last rate change). */
  localAt(globalNow: number): number {
    assert(globalNow >= this.#globalBase, 'clock read before its last rate change');
    return this.#localBase + (globalNow - this.#globalBase) * this.#rate;
  }

  /** The global instant this clock reads `local`, if the current rate holds. */
  globalAt(local: number): number {
    return this.#globalBase + (local - this.#localBase) / this.#rate;
  }

  /** Changes the rate from `globalNow` on; the reading is continuous, so the clock stays monotonic. */
  setRate(globalNow: number, rate: number): void {
    assert(rate > 0, 'clock rate must be positive');
    this.#localBase = this.localAt(globalNow);
    this.#globalBase = globalNow;
    this.#rate = rate;
  }
}

/**
 * Rates in [1 - x, 1 + x] keep the ratio of any two clocks' rates within 1 + maxDriftRate:
 * (1 + x) / (1 - x) <= 1 + m  <=>  x <= m / (2 + m).
 */
export function rateSpread(maxDriftRate: number): number {
  return maxDriftRate / (2 + maxDriftRate);
}
