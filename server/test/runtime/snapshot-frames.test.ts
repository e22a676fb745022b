// The snapshot-chunk frame is bytes from a peer: every field is checked before a replica writes a
// byte of it to disk or hands its admissions to the core, and the frame is rebuilt from the
// checked fields only. The receiver puts one transfer back together on disk, in order, and hands
// it over only whole and under its checksum.
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  SNAPSHOT_CHUNK_BYTES,
  SNAPSHOT_MAX_ADMISSIONS,
  SNAPSHOT_MAX_CHUNKS,
  SnapshotReceiver,
  validateSnapshotChunk,
  type SnapshotChunk,
} from '../../src/runtime/snapshot-frames.ts';

const replicas = new Set([1, 2, 3, 4, 5]);
const good = {
  kind: 'snapshot-chunk',
  slot: 120,
  index: 0,
  total: 2,
  sha256: 'ab'.repeat(32),
  bytes: new Uint8Array([1, 2, 3]),
  admitted: [
    { slot: 7, replica: 3, diskId: 0xabcdef },
    { slot: 90, replica: 5, diskId: 2 ** 48 - 1 },
  ],
};

describe('validateSnapshotChunk', () => {
  it('returns a well-formed chunk rebuilt from its fields, extra fields dropped', () => {
    const checked = validateSnapshotChunk({ ...good, extra: 'x', admitted: [{ ...good.admitted[0], note: 1 }] }, replicas);
    expect(checked).toEqual({ ...good, admitted: [good.admitted[0]] });
    expect(checked).not.toHaveProperty('extra');
  });

  it.each([
    ['not an object', 'chunk'],
    ['another kind', { ...good, kind: 'commit-probe' }],
    ['a negative slot', { ...good, slot: -1 }],
    ['a fractional index', { ...good, index: 0.5 }],
    ['an index past the total', { ...good, index: 2 }],
    ['no chunks at all', { ...good, total: 0, index: 0 }],
    ['too many chunks', { ...good, total: SNAPSHOT_MAX_CHUNKS + 1 }],
    ['a short sha256', { ...good, sha256: 'ab' }],
    ['an upper-case sha256', { ...good, sha256: 'AB'.repeat(32) }],
    ['bytes that are not bytes', { ...good, bytes: [1, 2, 3] }],
    ['a chunk too large', { ...good, bytes: new Uint8Array(SNAPSHOT_CHUNK_BYTES + 1) }],
    ['admissions that are not a list', { ...good, admitted: {} }],
    ['too many admissions', { ...good, admitted: Array.from({ length: SNAPSHOT_MAX_ADMISSIONS + 1 }, (_, i) => ({ slot: i + 1, replica: 1, diskId: 9 })) }],
    ['an admission of disk 0', { ...good, admitted: [{ slot: 7, replica: 3, diskId: 0 }] }],
    ['an admission of a replica not in the cell', { ...good, admitted: [{ slot: 7, replica: 6, diskId: 9 }] }],
    ['a disk id past 48 bits', { ...good, admitted: [{ slot: 7, replica: 3, diskId: 2 ** 48 }] }],
    ['admissions out of slot order', { ...good, admitted: [good.admitted[1], good.admitted[0]] }],
    ['two admissions at one slot', { ...good, admitted: [good.admitted[0], { ...good.admitted[0], replica: 4 }] }],
    ['an admission at slot 0', { ...good, admitted: [{ slot: 0, replica: 3, diskId: 9 }] }],
  ])('refuses %s', (_what, raw) => {
    expect(validateSnapshotChunk(raw, replicas)).toBeNull();
  });
});

describe('SnapshotReceiver', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'paxlock-receive-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const state = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  const sha256 = createHash('sha256').update(state).digest('hex');
  /** The chunks of `state` as a sender cuts them (here 300 bytes each). */
  function chunksOf(bytes: Buffer, slot = 42, sum = sha256): SnapshotChunk[] {
    const total = Math.ceil(bytes.byteLength / 300);
    return Array.from({ length: total }, (_, index) => ({
      kind: 'snapshot-chunk' as const,
      slot,
      index,
      total,
      sha256: sum,
      bytes: bytes.subarray(index * 300, (index + 1) * 300),
      admitted: [{ slot: 7, replica: 3, diskId: 9 }],
    }));
  }
  const files = (): string[] => readdirSync(dir).sort();

  it('writes the chunks in order to one file and hands it over, checksum verified, at the last', () => {
    const receiver = new SnapshotReceiver(dir, 'in-');
    const chunks = chunksOf(state);
    const outcomes = chunks.map((c) => receiver.receive(2, c));
    expect(outcomes.slice(0, -1).every((o) => o.kind === 'more')).toBe(true);
    const last = outcomes.at(-1);
    if (last?.kind !== 'complete') throw new Error(`not complete: ${JSON.stringify(last)}`);
    expect(last.snapshot).toMatchObject({ from: 2, slot: 42, sizeBytes: 1000, admitted: [{ slot: 7, replica: 3, diskId: 9 }] });
    closeSync(last.snapshot.fd);
    expect(readFileSync(last.snapshot.path).equals(state)).toBe(true);
    expect(receiver.slot).toBeNull();
  });

  it('ignores a duplicate chunk and the middle of a transfer it did not see begin', () => {
    const receiver = new SnapshotReceiver(dir, 'in-');
    const [c0, c1, c2, c3] = chunksOf(state);
    expect(receiver.receive(2, c1!)).toEqual({ kind: 'more' });
    expect(files()).toEqual([]);
    receiver.receive(2, c0!);
    receiver.receive(2, c1!);
    expect(receiver.receive(2, c1!)).toEqual({ kind: 'more' }); // again
    receiver.receive(2, c2!);
    const last = receiver.receive(2, c3!);
    expect(last.kind).toBe('complete');
    if (last.kind === 'complete') closeSync(last.snapshot.fd);
  });

  it('drops the transfer, and its file, at a gap or a checksum mismatch', () => {
    const receiver = new SnapshotReceiver(dir, 'in-');
    const [c0, , c2] = chunksOf(state);
    receiver.receive(2, c0!);
    expect(files()).toEqual(['in-1']);
    expect(receiver.receive(2, c2!)).toEqual({ kind: 'dropped', reason: 'gap', slot: 42 });
    expect(files()).toEqual([]);
    const lying = chunksOf(state, 42, 'cd'.repeat(32));
    const outcomes = lying.map((c) => receiver.receive(2, c));
    expect(outcomes.at(-1)).toEqual({ kind: 'dropped', reason: 'checksum', slot: 42 });
    expect(files()).toEqual([]);
  });

  it('starts over when another transfer begins, and drop() leaves no file', () => {
    const receiver = new SnapshotReceiver(dir, 'in-');
    const [a0] = chunksOf(state, 42);
    const [b0] = chunksOf(state, 50);
    receiver.receive(2, a0!);
    receiver.receive(3, b0!);
    expect(receiver.slot).toBe(50);
    expect(files()).toEqual(['in-2']);
    receiver.drop();
    expect(receiver.slot).toBeNull();
    expect(files()).toEqual([]);
  });
});
