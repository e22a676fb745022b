// The partition assignment of the Kafka-style controller example: pure functions, no I/O.
//
// The assignment file holds which broker owns each partition, and which controller term wrote
// it (the term's sequencer, a fencing token). The controller rebalances with as little movement
// as it can: partitions of living brokers stay where they are unless their owner has more than
// its share; orphaned partitions (dead broker) and the excess go to the least-loaded brokers.

import { parseSequencer } from '@paxlock/client';

export interface Assignment {
  readonly v: 1;
  /** The sequencer of the controller term that wrote it. */
  readonly term: string;
  readonly controller: string;
  /** partition index -> broker id. */
  readonly partitions: readonly string[];
}

export function parseAssignment(contents: Uint8Array): Assignment | null {
  if (contents.length === 0) return null;
  try {
    const raw = JSON.parse(Buffer.from(contents).toString('utf8')) as Partial<Assignment> | null;
    if (
      raw?.v !== 1 ||
      typeof raw.term !== 'string' ||
      typeof raw.controller !== 'string' ||
      !Array.isArray(raw.partitions)
    )
      return null;
    if (!raw.partitions.every((p) => typeof p === 'string')) return null;
    return raw as Assignment;
  } catch {
    return null;
  }
}

/** The lock generation of a term (its sequencer), for ordering terms; 0 if malformed. */
export function termNumber(term: string): number {
  return parseSequencer(term)?.lockGeneration ?? 0;
}

/**
 * The new owners of `count` partitions among `brokers` (sorted ids), keeping `previous` owners
 * where possible. Every partition gets a living broker; loads differ by at most one.
 */
export function rebalance(
  previous: readonly string[],
  brokers: readonly string[],
  count: number,
): string[] {
  if (brokers.length === 0) return [...previous];
  const living = new Set(brokers);
  const owners: (string | null)[] = Array.from({ length: count }, (_, i) => {
    const owner = previous[i];
    return owner !== undefined && living.has(owner) ? owner : null;
  });
  const load = new Map(brokers.map((b) => [b, 0]));
  const base = Math.floor(count / brokers.length);
  const extra = count % brokers.length;
  // The first `extra` brokers (by current load, then id) may hold base+1.
  for (const owner of owners) if (owner !== null) load.set(owner, (load.get(owner) ?? 0) + 1);
  const order = [...brokers].sort(
    (a, b) => (load.get(b) ?? 0) - (load.get(a) ?? 0) || a.localeCompare(b),
  );
  const cap = new Map(order.map((b, i) => [b, base + (i < extra ? 1 : 0)]));
  const kept = new Map(brokers.map((b) => [b, 0]));
  for (let i = 0; i < count; i++) {
    const owner = owners[i];
    if (owner === null || owner === undefined) continue;
    if ((kept.get(owner) ?? 0) < (cap.get(owner) ?? 0)) kept.set(owner, (kept.get(owner) ?? 0) + 1);
    else owners[i] = null;
  }
  for (let i = 0; i < count; i++) {
    if (owners[i] !== null) continue;
    const target = brokers.find((b) => (kept.get(b) ?? 0) < (cap.get(b) ?? 0))!;
    kept.set(target, (kept.get(target) ?? 0) + 1);
    owners[i] = target;
  }
  return owners as string[];
}
