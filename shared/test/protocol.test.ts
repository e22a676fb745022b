// The client frame door: every well-formed frame round-trips through the codec and the
// validator unchanged; every malformed one (wrong types, unknown fields, bad commands, frames
// too large or not msgpack at all) becomes a typed error carrying the request id when one
// could be read, and the validators never throw on any input.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../src/codec.ts';
import { ErrorCode } from '../src/errors.ts';
import type { ClientFrame } from '../src/protocol.ts';
import { isFrameError, validateClientFrame, validateServerFrame } from '../src/validate.ts';

function roundTrip(frame: unknown): unknown {
  const decoded = decodeFrame(encodeFrame(frame));
  if (!decoded.ok) throw new Error(decoded.reason);
  return validateClientFrame(decoded.value);
}

describe('client frames', () => {
  const good: ClientFrame[] = [
    { type: 'status', id: 1 },
    { type: 'status', id: 6, digest: true },
    { type: 'keep-alive', id: 2, session: 7, eventSeqSeen: 0 },
    { type: 'command', id: 3, command: { type: 'CreateSession', clientName: 'c', leaseMs: 12_000 } },
    { type: 'command', id: 4, command: { type: 'SetContents', session: 1, seq: 2, handle: 3, contents: new Uint8Array([1, 2, 3]) } },
    { type: 'query', id: 5, query: { type: 'GetStat', session: 1, handle: 3 } },
    { type: 'query', id: 7, query: { type: 'ReadPath', path: '/ls/c/f' }, maxStalenessMs: 500 },
  ];

  it.each(good)('accepts a well-formed $type frame after a codec round trip', (frame) => {
    const out = roundTrip(frame);
    expect(out).toMatchObject({ type: frame.type, id: frame.id });
  });

  it('keeps binary contents intact through the codec', () => {
    const contents = new Uint8Array(256 * 1024).map((_, i) => (i * 7) & 255);
    const out = roundTrip({ type: 'command', id: 9, command: { type: 'SetContents', session: 1, seq: 1, handle: 1, contents } });
    expect(isFrameError(out as ClientFrame)).toBe(false);
    const command = (out as { command: { contents: Uint8Array } }).command;
    expect(Buffer.from(command.contents).equals(Buffer.from(contents))).toBe(true);
  });

  it('rejects frames that are not objects or have no readable id', () => {
    for (const raw of [null, 3, 'x', [], new Uint8Array(2), { type: 'status' }, { type: 'status', id: -1 }, { type: 'status', id: 1.5 }]) {
      const out = validateClientFrame(raw);
      expect(out).toMatchObject({ error: ErrorCode.BAD_FRAME, id: null });
    }
  });

  it('answers a bad frame with its id when the id is readable', () => {
    expect(validateClientFrame({ type: 'nope', id: 4 })).toMatchObject({ error: ErrorCode.BAD_FRAME, id: 4 });
    expect(validateClientFrame({ type: 'status', id: 4, extra: 1 })).toMatchObject({ error: ErrorCode.BAD_FRAME, id: 4 });
    expect(validateClientFrame({ type: 'status', id: 4, digest: 'yes' })).toMatchObject({ error: ErrorCode.BAD_FRAME, id: 4 });
    for (const maxStalenessMs of [-1, 1.5, '10', 3_600_001]) {
      expect(validateClientFrame({ type: 'query', id: 4, query: { type: 'StatPath', path: '/ls/c/f' }, maxStalenessMs })).toMatchObject({ error: ErrorCode.BAD_FRAME, id: 4 });
    }
    expect(validateClientFrame({ type: 'query', id: 4, query: { type: 'ListPath', path: 'no-ls' } })).toMatchObject({ error: ErrorCode.BAD_PATH, id: 4 });
    expect(validateClientFrame({ type: 'keep-alive', id: 4, session: 0, eventSeqSeen: 0 })).toMatchObject({ id: 4 });
    expect(validateClientFrame({ type: 'keep-alive', id: 4, session: 1, eventSeqSeen: 'x' })).toMatchObject({ id: 4 });
  });

  it('passes the command validator’s code through (bad path, too large, bad request)', () => {
    const open = { type: 'Open', session: 1, seq: 1, path: '/ls/x/../y', create: 'may', ephemeral: false, directory: false, eventMask: 0, lockDelayMs: 0 };
    expect(validateClientFrame({ type: 'command', id: 1, command: open })).toMatchObject({ error: ErrorCode.BAD_PATH, id: 1 });
    const big = { type: 'SetContents', session: 1, seq: 1, handle: 1, contents: new Uint8Array(256 * 1024 + 1) };
    expect(validateClientFrame({ type: 'command', id: 2, command: big })).toMatchObject({ error: ErrorCode.TOO_LARGE, id: 2 });
    expect(validateClientFrame({ type: 'command', id: 3, command: { type: 'Release', session: '1', seq: 1, handle: 1 } })).toMatchObject({
      error: ErrorCode.BAD_REQUEST,
      id: 3,
    });
  });

  it('refuses the commands only the master may issue', () => {
    expect(validateClientFrame({ type: 'command', id: 1, command: { type: 'ExpireSession', session: 2 } })).toMatchObject({
      error: ErrorCode.BAD_REQUEST,
    });
    expect(validateClientFrame({ type: 'command', id: 1, command: { type: 'LockDelayEnd', path: '/ls/a/b' } })).toMatchObject({
      error: ErrorCode.BAD_REQUEST,
    });
  });

  it('never throws on arbitrary input, and bytes that are not msgpack decode to a failure', () => {
    fc.assert(
      fc.property(fc.anything(), (raw) => {
        const out = validateClientFrame(raw);
        expect(typeof out).toBe('object');
        validateServerFrame(raw);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const decoded = decodeFrame(bytes);
        if (decoded.ok) validateClientFrame(decoded.value);
      }),
      { numRuns: 2000 },
    );
    expect(decodeFrame(new Uint8Array([0xa5, 0x41]))).toEqual({ ok: false, reason: 'malformed' });
    const reserved = decodeFrame(new Uint8Array([0xc1]));
    expect(reserved.ok && isFrameError(validateClientFrame(reserved.value))).toBe(true);
    expect(decodeFrame(new Uint8Array([0x92, 0x01]))).toEqual({ ok: false, reason: 'malformed' });
    expect(decodeFrame(new Uint8Array(11), 10)).toEqual({ ok: false, reason: 'too-large' });
  });
});

describe('server frames', () => {
  const epoch = { round: 2, replica: 3 };
  it('accepts well-formed frames and rejects malformed ones', () => {
    expect(isFrameError(validateServerFrame({ type: 'redirect', id: 1, master: '127.0.0.1:7201', epoch }))).toBe(false);
    expect(isFrameError(validateServerFrame({ type: 'redirect', id: 1, master: null, epoch }))).toBe(false);
    expect(isFrameError(validateServerFrame({ type: 'result', id: 1, epoch, slot: 4, result: { type: 'closed' } }))).toBe(false);
    expect(isFrameError(validateServerFrame({ type: 'error', id: null, code: 'BAD_FRAME', message: 'x' }))).toBe(false);
    expect(isFrameError(validateServerFrame({ type: 'error', id: 1, code: 'NOT_A_CODE', message: 'x' }))).toBe(true);
    expect(isFrameError(validateServerFrame({ type: 'result', id: 1, epoch: { round: 'a' }, slot: 4, result: { type: 'closed' } }))).toBe(true);
    expect(isFrameError(validateServerFrame({ type: 'event', session: 1, eventSeq: 0, epoch, event: { type: 'x' } }))).toBe(true);
    expect(isFrameError(validateServerFrame({ type: 'what', id: 1 }))).toBe(true);
  });
});
