// Proves the door from `unknown`: every well-formed command and query passes unchanged, and
// wrong types, missing or unknown fields, out-of-range numbers, huge contents and bad paths are
// refused with a stable error code, never an exception.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  decodeFrame,
  encodeFrame,
  ERROR_MEANINGS,
  ErrorCode,
  isErrorCode,
  isValidationError,
  LIMITS,
  validateCommand,
  validateQuery,
} from '../src/index.ts';

const open = {
  type: 'Open',
  session: 1,
  seq: 1,
  path: '/ls/c/a',
  create: 'may',
  ephemeral: false,
  directory: false,
  eventMask: 0,
  lockDelayMs: 0,
};

const good: unknown[] = [
  { type: 'CreateSession', clientName: 'x', leaseMs: 12_000 },
  { type: 'CreateSession', clientName: 'x', leaseMs: 12_000, nonce: 'abc-DEF_123' },
  { type: 'CloseSession', session: 1, seq: 2 },
  { type: 'ExpireSession', session: 1 },
  open,
  { ...open, contents: new Uint8Array([1]) },
  { type: 'Close', session: 1, seq: 1, handle: 1 },
  { type: 'SetContents', session: 1, seq: 1, handle: 1, contents: new Uint8Array(3) },
  {
    type: 'SetContents',
    session: 1,
    seq: 1,
    handle: 1,
    contents: new Uint8Array(3),
    ifGeneration: 4,
  },
  { type: 'Delete', session: 1, seq: 1, handle: 1 },
  {
    type: 'SetACL',
    session: 1,
    seq: 1,
    handle: 1,
    acl: { read: 'r', write: '', changeAcl: 'admins' },
  },
  { type: 'Acquire', session: 1, seq: 1, handle: 1, mode: 'shared', wait: true },
  { type: 'Release', session: 1, seq: 1, handle: 1 },
  { type: 'CancelWait', session: 1, seq: 1, handle: 1 },
  { type: 'LockDelayEnd', path: '/ls/c/a' },
];

function bytesAsArray(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (
    typeof value === 'object' &&
    value !== null &&
    (value as { type?: unknown }).type === 'Buffer'
  ) {
    return (value as { data: unknown }).data;
  }
  return value;
}

function codeOf(value: unknown): string | undefined {
  const result = validateCommand(value);
  return isValidationError(result) ? result.error : undefined;
}

describe('validateCommand', () => {
  test.each(good.map((command) => [(command as { type: string }).type, command]))(
    'accepts %s',
    (_type, command) => {
      expect(validateCommand(command)).toEqual(command);
    },
  );

  test.each([
    ['null', null, ErrorCode.BAD_REQUEST],
    ['an array', [open], ErrorCode.BAD_REQUEST],
    ['bytes', new Uint8Array(2), ErrorCode.BAD_REQUEST],
    ['an unknown type', { type: 'Rename' }, ErrorCode.BAD_REQUEST],
    ['a missing field', { type: 'Close', session: 1, seq: 1 }, ErrorCode.BAD_REQUEST],
    ['an unknown field', { ...open, extra: 1 }, ErrorCode.BAD_REQUEST],
    ['a string session', { ...open, session: '1' }, ErrorCode.BAD_REQUEST],
    ['a zero seq', { ...open, seq: 0 }, ErrorCode.BAD_REQUEST],
    [
      'a fractional handle',
      { type: 'Close', session: 1, seq: 1, handle: 1.5 },
      ErrorCode.BAD_REQUEST,
    ],
    ['an unsafe integer', { ...open, seq: 2 ** 60 }, ErrorCode.BAD_REQUEST],
    ['a bad create policy', { ...open, create: 'maybe' }, ErrorCode.BAD_REQUEST],
    ['a string boolean', { ...open, ephemeral: 'yes' }, ErrorCode.BAD_REQUEST],
    ['an unknown mask bit', { ...open, eventMask: 64 }, ErrorCode.BAD_REQUEST],
    [
      'a lock-delay over the cap',
      { ...open, lockDelayMs: LIMITS.lockDelayMaxMs + 1 },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'contents for a directory',
      { ...open, directory: true, contents: new Uint8Array(1) },
      ErrorCode.BAD_REQUEST,
    ],
    ['a malformed path', { ...open, path: '/ls/c/../x' }, ErrorCode.BAD_PATH],
    [
      'a huge path',
      { ...open, path: `/ls/c/${'a/'.repeat(LIMITS.pathMaxBytes)}a` },
      ErrorCode.BAD_PATH,
    ],
    ['a non-string path', { ...open, path: 7 }, ErrorCode.BAD_REQUEST],
    [
      'contents over 256 KiB',
      {
        type: 'SetContents',
        session: 1,
        seq: 1,
        handle: 1,
        contents: new Uint8Array(LIMITS.fileContentsMaxBytes + 1),
      },
      ErrorCode.TOO_LARGE,
    ],
    [
      'contents as a string',
      { type: 'SetContents', session: 1, seq: 1, handle: 1, contents: 'abc' },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'a bad lock mode',
      { type: 'Acquire', session: 1, seq: 1, handle: 1, mode: 'read', wait: true },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'a bad ACL name',
      {
        type: 'SetACL',
        session: 1,
        seq: 1,
        handle: 1,
        acl: { read: 'a/b', write: '', changeAcl: '' },
      },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'an empty nonce',
      { type: 'CreateSession', clientName: 'x', leaseMs: 12_000, nonce: '' },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'a long nonce',
      {
        type: 'CreateSession',
        clientName: 'x',
        leaseMs: 12_000,
        nonce: 'n'.repeat(LIMITS.sessionNonceMaxChars + 1),
      },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'a numeric nonce',
      { type: 'CreateSession', clientName: 'x', leaseMs: 12_000, nonce: 7 },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'a nonce with a space',
      { type: 'CreateSession', clientName: 'x', leaseMs: 12_000, nonce: 'a b' },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'a short lease',
      { type: 'CreateSession', clientName: 'x', leaseMs: 1 },
      ErrorCode.BAD_REQUEST,
    ],
    [
      'a huge client name',
      { type: 'CreateSession', clientName: 'x'.repeat(10_000), leaseMs: 12_000 },
      ErrorCode.TOO_LARGE,
    ],
  ])('rejects %s', (_what, value, code) => {
    expect(codeOf(value)).toBe(code);
  });

  test('every good command survives the wire codec and validates to the same value', () => {
    for (const command of good) {
      const decoded = decodeFrame(encodeFrame(command));
      expect(decoded.ok).toBe(true);
      const result = decoded.ok ? validateCommand(decoded.value) : undefined;
      // Bytes come back as a Buffer; compare them as plain bytes.
      expect(JSON.parse(JSON.stringify(result, bytesAsArray))).toEqual(
        JSON.parse(JSON.stringify(command, bytesAsArray)),
      );
    }
  });

  test('an absent optional field encoded as undefined is still absent', () => {
    const decoded = decodeFrame(encodeFrame({ ...open, contents: undefined }));
    expect(decoded.ok && validateCommand(decoded.value)).toEqual(open);
  });

  test('accepts exactly 256 KiB of contents', () => {
    const command = {
      type: 'SetContents',
      session: 1,
      seq: 1,
      handle: 1,
      contents: new Uint8Array(LIMITS.fileContentsMaxBytes),
    };
    expect(codeOf(command)).toBeUndefined();
  });

  test('property: arbitrary values never throw and fail with a known code', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        const result = validateCommand(value);
        if (isValidationError(result)) expect(isErrorCode(result.error)).toBe(true);
      }),
    );
  });

  test('property: mutating one field of a good command never throws', () => {
    fc.assert(
      fc.property(fc.constantFrom(...good), fc.string(), fc.anything(), (command, key, value) => {
        const result = validateCommand({ ...(command as object), [key]: value });
        if (isValidationError(result)) expect(isErrorCode(result.error)).toBe(true);
      }),
    );
  });
});

describe('validateQuery', () => {
  test('accepts each query', () => {
    for (const query of [
      { type: 'GetContentsAndStat', session: 1, handle: 2 },
      { type: 'GetStat', session: 1, handle: 2 },
      { type: 'ReadDir', session: 1, handle: 2 },
      { type: 'CheckSequencer', sequencer: 'S1:x:1:1:/ls/c/a' },
      { type: 'ListSessions' },
      { type: 'ListLocks' },
      { type: 'ListLocks', path: '/ls/c/a', nowMs: 5 },
    ]) {
      expect(validateQuery(query)).toEqual(query);
    }
  });

  test('rejects malformed queries', () => {
    expect(validateQuery({ type: 'GetStat', session: 1 })).toMatchObject({ error: 'BAD_REQUEST' });
    expect(validateQuery({ type: 'ListLocks', path: '/x' })).toMatchObject({ error: 'BAD_PATH' });
    expect(validateQuery({ type: 'CheckSequencer', sequencer: 5 })).toMatchObject({
      error: 'BAD_REQUEST',
    });
    expect(validateQuery('ListSessions')).toMatchObject({ error: 'BAD_REQUEST' });
  });
});

describe('error codes', () => {
  test('every code has a meaning and names itself', () => {
    for (const [key, code] of Object.entries(ErrorCode)) {
      expect(code).toBe(key);
      expect(ERROR_MEANINGS[code].length).toBeGreaterThan(10);
    }
  });
});
