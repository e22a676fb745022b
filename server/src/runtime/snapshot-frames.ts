// The snapshot-chunk frame: how a replica ships its state database to a peer behind the log's
// compaction point (node.ts sends and receives it as an aux frame on the peer link). Like every
// frame from the network it is `unknown` until validateSnapshotChunk has checked each field and
// rebuilt it from the checked fields only (STYLE.md, Boundaries). SnapshotReceiver puts the
// chunks of one transfer back together on disk.

import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
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

/** A snapshot received whole, its bytes in `path` under the sha256 they were sent with. */
export interface ReceivedSnapshot {
  readonly from: number;
  readonly slot: number;
  readonly admitted: readonly Admission[];
  readonly sizeBytes: number;
  /** Still open for writing: the installer fsyncs it, then closes it. */
  readonly fd: number;
  readonly path: string;
}

export type ChunkOutcome =
  /** Taken (or a duplicate, or the middle of a transfer not seen begin): nothing to do yet. */
  | { readonly kind: 'more' }
  /** The transfer under way was dropped (a gap, a checksum mismatch); its file is gone. */
  | { readonly kind: 'dropped'; readonly reason: 'gap' | 'checksum'; readonly slot: number }
  /** The last chunk: the whole snapshot is in the file, its checksum verified. */
  | { readonly kind: 'complete'; readonly snapshot: ReceivedSnapshot };

/**
 * The receiving side of a snapshot transfer. Chunks come in order over one peer link: each is
 * written to a file as it arrives and hashed, so the snapshot is never all in memory and no turn
 * copies more than a chunk. A new snapshot starts at chunk 0 (and replaces one under way); a gap
 * (a chunk lost on a backed-up or broken link) drops the transfer, and the sender sends it whole
 * again when asked. Files are `<prefix><n>` in `dir`; the caller removes leftovers at start-up.
 */
export class SnapshotReceiver {
  readonly #dir: string;
  readonly #prefix: string;
  #count = 0;
  #current: {
    readonly from: number;
    readonly slot: number;
    readonly sha256: string;
    readonly total: number;
    readonly admitted: readonly Admission[];
    readonly hash: Hash;
    readonly fd: number;
    readonly path: string;
    received: number;
    sizeBytes: number;
  } | null = null;

  constructor(dir: string, prefix: string) {
    this.#dir = dir;
    this.#prefix = prefix;
  }

  /** The slot of the snapshot being received, or null. */
  get slot(): number | null {
    return this.#current?.slot ?? null;
  }

  receive(from: number, chunk: SnapshotChunk): ChunkOutcome {
    let current = this.#current;
    if (current?.from !== from || current.slot !== chunk.slot || current.sha256 !== chunk.sha256 || current.total !== chunk.total) {
      if (chunk.index !== 0) return { kind: 'more' };
      this.drop();
      this.#count++;
      const path = join(this.#dir, `${this.#prefix}${String(this.#count)}`);
      current = { from, slot: chunk.slot, sha256: chunk.sha256, total: chunk.total, admitted: chunk.admitted, hash: createHash('sha256'), fd: openSync(path, 'w'), path, received: 0, sizeBytes: 0 };
      this.#current = current;
    }
    if (chunk.index < current.received) return { kind: 'more' };
    if (chunk.index > current.received) {
      this.drop();
      return { kind: 'dropped', reason: 'gap', slot: current.slot };
    }
    for (let offset = 0; offset < chunk.bytes.byteLength; ) offset += writeSync(current.fd, chunk.bytes, offset);
    current.hash.update(chunk.bytes);
    current.sizeBytes += chunk.bytes.byteLength;
    current.received++;
    if (current.received < current.total) return { kind: 'more' };
    this.#current = null;
    if (current.hash.digest('hex') !== current.sha256) {
      closeSync(current.fd);
      rmSync(current.path, { force: true });
      return { kind: 'dropped', reason: 'checksum', slot: current.slot };
    }
    const { slot, admitted, sizeBytes, fd, path } = current;
    return { kind: 'complete', snapshot: { from, slot, admitted, sizeBytes, fd, path } };
  }

  /** Abandons the snapshot being received, and its file. */
  drop(): void {
    const current = this.#current;
    if (current === null) return;
    this.#current = null;
    closeSync(current.fd);
    rmSync(current.path, { force: true });
  }
}
