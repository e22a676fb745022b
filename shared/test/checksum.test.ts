// Proves the pure-TS FNV-1a 64 matches the published test vectors and a BigInt reference on
// random inputs, that incremental feeding equals one-shot hashing, and that 256 KiB is cheap.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { checksum64, EMPTY_CHECKSUM, Fnv1a64, LIMITS } from '../src/index.ts';

function reference(bytes: Uint8Array): string {
  const mask = (1n << 64n) - 1n;
  let hash = 0xcbf29ce484222325n;
  for (const byte of bytes) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & mask;
  return hash.toString(16).padStart(16, '0');
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('checksum64 (FNV-1a 64)', () => {
  test('matches the published vectors', () => {
    expect(checksum64(text(''))).toBe('cbf29ce484222325');
    expect(EMPTY_CHECKSUM).toBe('cbf29ce484222325');
    expect(checksum64(text('a'))).toBe('af63dc4c8601ec8c');
    expect(checksum64(text('foobar'))).toBe('85944171f73967e8');
  });

  test('property: equals a BigInt reference implementation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(checksum64(bytes)).toBe(reference(bytes));
      }),
    );
  });

  test('property: feeding in pieces equals feeding at once', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(200), (bytes, cut) => {
        const at = Math.min(cut, bytes.length);
        const pieces = new Fnv1a64().update(bytes.subarray(0, at)).update(bytes.subarray(at)).hex();
        expect(pieces).toBe(checksum64(bytes));
      }),
    );
  });

  test('length-prefixed fields do not collide by concatenation', () => {
    const ab = new Fnv1a64().updateString('ab').updateString('c').hex();
    const abc = new Fnv1a64().updateString('a').updateString('bc').hex();
    expect(ab).not.toBe(abc);
  });

  test('property: a string feeds as its length-prefixed UTF-8 bytes, ASCII or not', () => {
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.constantFrom('a', 'Z', '~', 'é', '€', '😀', '\u0000'),
          maxLength: 30,
        }),
        (value) => {
          const encoded = new TextEncoder().encode(value);
          expect(new Fnv1a64().updateString(value).hex()).toBe(
            new Fnv1a64().updateBytes(encoded).hex(),
          );
        },
      ),
    );
  });

  test('integers feed as 8 little-endian bytes', () => {
    const bytes = new Uint8Array([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x00, 0x00]);
    expect(new Fnv1a64().updateUint(0x060504030201).hex()).toBe(checksum64(bytes));
  });

  test('hashes a full 256 KiB file and agrees with the reference', () => {
    const bytes = new Uint8Array(LIMITS.fileContentsMaxBytes);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
    expect(checksum64(bytes)).toBe(reference(bytes));
  });
});
