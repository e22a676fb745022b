// The snapshot-chunk frame is bytes from a peer: every field is checked before a replica writes a
// byte of it to disk or hands its admissions to the core, and the frame is rebuilt from the
// checked fields only.
import { describe, expect, it } from 'vitest';
import {
  SNAPSHOT_CHUNK_BYTES,
  SNAPSHOT_MAX_ADMISSIONS,
  SNAPSHOT_MAX_CHUNKS,
  validateSnapshotChunk,
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
