// The snapshot-chunk frame: how a replica ships its state database to a peer behind the log's
// compaction point (node.ts sends and receives it as an aux frame on the peer link). Like every
// frame from the network it is `unknown` until validateSnapshotChunk has checked each field and
// rebuilt it from the checked fields only (STYLE.md, Boundaries).

import type { Admission } from '../paxos/messages.ts';
import { MESSAGE_LIMITS } from '../paxos/validate.ts';

/** Bytes of state database per chunk. */
export const SNAPSHOT_CHUNK_BYTES = 256 * 1024;
/** Most chunks in one snapshot (16 GiB at 256 KiB a chunk). */
export const SNAPSHOT_MAX_CHUNKS = 65_536;
/** Most admissions a snapshot may carry: one per replacement disk in the cell's life. */
export const SNAPSHOT_MAX_ADMISSIONS = 4_096;

export interface SnapshotChunk {
  readonly kind: 'snapshot-chunk';
  /** The applied slot of the state the chunks make up. */
  readonly slot: number;
  readonly index: number;
  readonly total: number;
  /** sha256 of the whole state database, hex. */
  readonly sha256: string;
  readonly bytes: Uint8Array;
  /**
   * The sender's admissions (Replica.admitted(), in slot order): who holds each seat. The snapshot
   * replaces the log below its slot, and with it the 'admit' entries there, so it carries them.
   */
  readonly admitted: readonly Admission[];
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A checked SnapshotChunk, or null. `replicaIds` are the cell's replicas (admissions name one). */
export function validateSnapshotChunk(raw: unknown, replicaIds: ReadonlySet<number>): SnapshotChunk | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const c = raw as Record<string, unknown>;
  const { slot, index, total, sha256, bytes } = c;
  if (c['kind'] !== 'snapshot-chunk' || !isCount(slot) || !isCount(index) || !isCount(total)) return null;
  if (total < 1 || total > SNAPSHOT_MAX_CHUNKS || index >= total) return null;
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256) || !(bytes instanceof Uint8Array)) return null;
  if (bytes.byteLength > SNAPSHOT_CHUNK_BYTES) return null;
  const rawAdmitted = c['admitted'];
  if (!Array.isArray(rawAdmitted) || rawAdmitted.length > SNAPSHOT_MAX_ADMISSIONS) return null;
  const admitted: Admission[] = [];
  for (const a of rawAdmitted as unknown[]) {
    if (typeof a !== 'object' || a === null) return null;
    const { slot: at, replica, diskId } = a as Record<string, unknown>;
    if (!isCount(at) || at < 1 || !isCount(replica) || !replicaIds.has(replica)) return null;
    if (!isCount(diskId) || diskId > MESSAGE_LIMITS.maxDiskId) return null;
    // In slot order, one per slot; disk 0 is never admitted (only founding disks have it).
    if (diskId === 0 || at <= (admitted.at(-1)?.slot ?? 0)) return null;
    admitted.push({ slot: at, replica, diskId });
  }
  return { kind: 'snapshot-chunk', slot, index, total, sha256, bytes, admitted };
}
