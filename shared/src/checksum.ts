// A 64-bit content checksum in pure TypeScript: FNV-1a 64 (Fowler, Noll, Vo). Chubby keeps a
// 64-bit checksum of each file's contents so clients can tell whether contents differ; paxlock
// also uses this hash for the state machine's digest. It has to be pure (no node:crypto),
// because the state machine may not import Node modules, and deterministic on every platform.
//
// The 64-bit state is four 16-bit limbs (v3 the highest), so that every intermediate stays a
// small integer that V8 keeps unboxed: about three times faster than two 32-bit halves, which
// need doubles for the carry. The FNV prime is 2^40 + 435, so h * prime = h * 435 + (h << 40):
// each limb times 435 is below 2^25, `v0 << 8` and `v1 << 8` are the (h << 40) term landing in
// limbs 2 and 3, and carries ripple upwards; bits above 64 are dropped.
// Not cryptographic: it detects accidents (divergence, corruption), not adversaries.

const TWO_TO_32 = 4294967296;

/** Two lower-case hex digits for each byte value. */
const HEX_BYTES: readonly string[] = Array.from({ length: 256 }, (_, byte) =>
  byte.toString(16).padStart(2, '0'),
);

function hexOfLimb(limb: number): string {
  // Both indexes are below 256 because a limb is below 2^16; `?? ''` only satisfies the compiler.
  return (HEX_BYTES[limb >>> 8] ?? '') + (HEX_BYTES[limb & 0xff] ?? '');
}

/** Incremental FNV-1a 64. Feed bytes, strings or integers; read the hash as 16 hex digits. */
export class Fnv1a64 {
  // The offset basis 0xcbf29ce484222325, as limbs from the lowest.
  #v0 = 0x2325;
  #v1 = 0x8422;
  #v2 = 0x9ce4;
  #v3 = 0xcbf2;

  update(bytes: Uint8Array): this {
    let v0 = this.#v0;
    let v1 = this.#v1;
    let v2 = this.#v2;
    let v3 = this.#v3;
    for (let i = 0; i < bytes.length; i++) {
      // The index is in range by the loop bound; `?? 0` only satisfies noUncheckedIndexedAccess.
      v0 ^= bytes[i] ?? 0;
      const t0 = v0 * 435;
      let t1 = v1 * 435;
      let t2 = v2 * 435 + (v0 << 8);
      const t3 = v3 * 435 + (v1 << 8);
      t1 += t0 >>> 16;
      v0 = t0 & 0xffff;
      t2 += t1 >>> 16;
      v1 = t1 & 0xffff;
      v3 = (t3 + (t2 >>> 16)) & 0xffff;
      v2 = t2 & 0xffff;
    }
    this.#v0 = v0;
    this.#v1 = v1;
    this.#v2 = v2;
    this.#v3 = v3;
    return this;
  }

  /** Feeds one byte (0..255). */
  updateByte(byte: number): this {
    const v0 = this.#v0 ^ byte;
    const t0 = v0 * 435;
    let t1 = this.#v1 * 435;
    let t2 = this.#v2 * 435 + (v0 << 8);
    const t3 = this.#v3 * 435 + (this.#v1 << 8);
    t1 += t0 >>> 16;
    this.#v0 = t0 & 0xffff;
    t2 += t1 >>> 16;
    this.#v1 = t1 & 0xffff;
    this.#v3 = (t3 + (t2 >>> 16)) & 0xffff;
    this.#v2 = t2 & 0xffff;
    return this;
  }

  /**
   * Feeds a string as UTF-8, preceded by its byte length so that field boundaries count. ASCII
   * strings (all names are) are fed straight from their char codes, without an encoder copy.
   */
  updateString(text: string): this {
    let isAscii = true;
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) > 0x7f) {
        isAscii = false;
        break;
      }
    }
    if (!isAscii) return this.updateBytes(encoder.encode(text));
    this.updateUint(text.length);
    for (let i = 0; i < text.length; i++) this.updateByte(text.charCodeAt(i));
    return this;
  }

  /** Feeds a non-negative safe integer as 8 little-endian bytes. */
  updateUint(value: number): this {
    const low = value >>> 0;
    const high = Math.floor(value / TWO_TO_32) >>> 0;
    return this.updateByte(low & 0xff)
      .updateByte((low >>> 8) & 0xff)
      .updateByte((low >>> 16) & 0xff)
      .updateByte(low >>> 24)
      .updateByte(high & 0xff)
      .updateByte((high >>> 8) & 0xff)
      .updateByte((high >>> 16) & 0xff)
      .updateByte(high >>> 24);
  }

  /** Feeds a byte string preceded by its length. */
  updateBytes(bytes: Uint8Array): this {
    this.updateUint(bytes.length);
    return this.update(bytes);
  }

  /** The hash so far as 16 lower-case hex digits. */
  hex(): string {
    return hexOfLimb(this.#v3) + hexOfLimb(this.#v2) + hexOfLimb(this.#v1) + hexOfLimb(this.#v0);
  }
}

const encoder = new TextEncoder();

/** FNV-1a 64 of a byte string, as 16 lower-case hex digits. */
export function checksum64(bytes: Uint8Array): string {
  return new Fnv1a64().update(bytes).hex();
}

/** The checksum of empty contents, which every new file and directory starts with. */
export const EMPTY_CHECKSUM = checksum64(new Uint8Array(0));
