// Frame encoding for the client protocol and the peer links: msgpack (msgpackr) with plain
// maps, no records, so any msgpack reader can decode a frame. decode() never throws: bytes that
// are not msgpack come back as a failure, and what does decode is still `unknown` until a
// validator (validate.ts) has checked it.

import { Packr } from 'msgpackr';
import { LIMITS } from './limits.ts';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeFrame(value: unknown): Uint8Array {
  return packr.pack(value);
}

export type Decoded = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: 'too-large' | 'malformed' };

export function decodeFrame(bytes: Uint8Array, maxBytes: number = LIMITS.frameMaxBytes): Decoded {
  if (bytes.byteLength > maxBytes) return { ok: false, reason: 'too-large' };
  try {
    return { ok: true, value: packr.unpack(bytes) };
  } catch (err: unknown) {
    // msgpackr throws plain Errors (and RangeErrors on truncation) for malformed input; that is
    // the one case handled here. Anything else is a bug and propagates.
    if (err instanceof Error) return { ok: false, reason: 'malformed' };
    throw err;
  }
}
