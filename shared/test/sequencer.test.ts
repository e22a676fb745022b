// Proves sequencers round-trip exactly in both directions and that malformed strings are refused.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { encodeSequencer, parseSequencer, type Sequencer } from '../src/index.ts';

const sequencer: fc.Arbitrary<Sequencer> = fc.record({
  path: fc
    .array(fc.stringMatching(/^[a-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 5 })
    .map((p) => `/ls/${p.join('/')}`),
  mode: fc.constantFrom('exclusive' as const, 'shared' as const),
  lockGeneration: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  instance: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
});

describe('sequencer', () => {
  test('encodes path, mode, generation and instance', () => {
    const text = encodeSequencer({
      path: '/ls/c/lock',
      mode: 'shared',
      lockGeneration: 7,
      instance: 3,
    });
    expect(text).toBe('S1:s:7:3:/ls/c/lock');
    expect(parseSequencer(text)).toEqual({
      path: '/ls/c/lock',
      mode: 'shared',
      lockGeneration: 7,
      instance: 3,
    });
  });

  test('property: parse(encode(s)) equals s, and encode(parse(text)) equals text', () => {
    fc.assert(
      fc.property(sequencer, (s) => {
        const text = encodeSequencer(s);
        expect(parseSequencer(text)).toEqual(s);
        expect(encodeSequencer(parseSequencer(text)!)).toBe(text);
      }),
    );
  });

  test.each([
    '',
    'S1:x:1:1',
    'S2:x:1:1:/ls/c/a',
    'S1:y:1:1:/ls/c/a',
    'S1:x:0:1:/ls/c/a',
    'S1:x:01:1:/ls/c/a',
    'S1:x:1:-1:/ls/c/a',
    'S1:x:1:1.5:/ls/c/a',
    'S1:x:1:99999999999999999:/ls/c/a',
    'S1:x:1:1:/ls/c//a',
    'S1:x:1:1:not-a-path',
  ])('rejects %j', (text) => {
    expect(parseSequencer(text)).toBeUndefined();
  });

  test('property: arbitrary strings never throw', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const parsed = parseSequencer(text);
        if (parsed !== undefined) expect(encodeSequencer(parsed)).toBe(text);
      }),
    );
  });
});
