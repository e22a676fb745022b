// The simulated network between replicas: it decides, for each message sent, whether and when
// it arrives. It drops, duplicates, delays (a delay spike reorders a message behind later ones)
// and partitions — symmetric (the cell splits in two, or a few links are cut both ways) and
// one-way (A no longer hears B, B still hears A) — and every partition heals. Partitions are judged at delivery time, so a message
// already in flight when a partition starts is lost too, as on a real cut cable.
//
// It owns no queue: it answers "deliver at these times" and the cluster schedules the events.

import type { ReplicaId } from '../src/paxos/ports.ts';
import type { SimRandom } from './random.ts';

export interface LinkFaults {
  /** Probability that a message is lost. */
  readonly dropRate: number;
  /** Probability that a message is delivered twice (each copy with its own delay). */
  readonly duplicateRate: number;
  /** Probability that a message is held back by a delay spike, so later ones overtake it. */
  readonly spikeRate: number;
  readonly spikeMaxMs: number;
  /** Ordinary one-way latency, uniform in [delayMinMs, delayMaxMs]. */
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
}

export const HEALTHY_LINKS: LinkFaults = {
  dropRate: 0,
  duplicateRate: 0,
  spikeRate: 0,
  spikeMaxMs: 0,
  delayMinMs: 1,
  delayMaxMs: 5,
};

export interface NetworkCounters {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  delayed: number;
  /** Messages lost to a partition or to a crashed receiver. */
  cut: number;
}

export class SimNetwork {
  faults: LinkFaults;
  readonly counters: NetworkCounters = {
    sent: 0,
    delivered: 0,
    dropped: 0,
    duplicated: 0,
    delayed: 0,
    cut: 0,
  };
  /** Directed links that are cut: "from->to". */
  readonly #blocked = new Set<string>();
  readonly #random: SimRandom;

  constructor(random: SimRandom, faults: LinkFaults) {
    this.#random = random;
    this.faults = faults;
  }

  /** The delays (from now) at which copies of one message arrive; empty if it is lost. */
  plan(): number[] {
    this.counters.sent++;
    const f = this.faults;
    if (this.#random.chance(f.dropRate)) {
      this.counters.dropped++;
      return [];
    }
    const copies = this.#random.chance(f.duplicateRate) ? 2 : 1;
    if (copies === 2) this.counters.duplicated++;
    const delays: number[] = [];
    for (let i = 0; i < copies; i++) {
      let delay = this.#random.range(f.delayMinMs, f.delayMaxMs);
      if (this.#random.chance(f.spikeRate)) {
        this.counters.delayed++;
        delay += this.#random.range(0, f.spikeMaxMs);
      }
      delays.push(delay);
    }
    return delays;
  }

  isBlocked(from: ReplicaId, to: ReplicaId): boolean {
    return this.#blocked.size > 0 && this.#blocked.has(`${from}->${to}`);
  }

  /** Cuts every link between the two sides, both ways. */
  partition(sideA: readonly ReplicaId[], sideB: readonly ReplicaId[]): void {
    for (const a of sideA) {
      for (const b of sideB) {
        this.#blocked.add(`${a}->${b}`);
        this.#blocked.add(`${b}->${a}`);
      }
    }
  }

  /** Cuts the links from each of `from` to each of `to`, one way only. */
  cutOneWay(from: readonly ReplicaId[], to: readonly ReplicaId[]): void {
    for (const a of from) for (const b of to) if (a !== b) this.#blocked.add(`${a}->${b}`);
  }

  heal(): void {
    this.#blocked.clear();
  }

  get isPartitioned(): boolean {
    return this.#blocked.size > 0;
  }

  describeCuts(): string {
    return [...this.#blocked].sort().join(' ');
  }
}
