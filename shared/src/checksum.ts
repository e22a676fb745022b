// A 64-bit content checksum in pure TypeScript: FNV-1a 64 (Fowler, Noll, Vo). Chubby keeps a
// 64-bit checksum of each file's contents so clients can tell whether contents differ; paxlock
// also uses this hash for the state machine's digest. It has to be pure (no node:crypto),
// because the state machine may not import Node modules, and deterministic on every platform.
//
// The 64-bit state is two unsigned 32-bit halves. The FNV prime is 2^40 + 435, so
// h * prime = h * 435 + (h << 40): the low half's product with 435 stays below 2^41 (exact in a
// double) and gives the carry; `lo << 8` is the (h << 40) term landing in the high half.
// Not cryptographic: it detects accidents (divergence, corruption), not adversaries.

const OFFSET_HI = 0xcbf29ce4;
const OFFSET_LO = 0x84222325;
const TWO_TO_32 = 4294967296;

/** Incremental FNV-1a 64. Feed bytes, strings or integers; read the hash as 16 hex digits. */
export class Fnv1a64 {
  #hi = OFFSET_HI;
  #lo = OFFSET_LO;

  update(bytes: Uint8Array): this {
    let hi = this.#hi;
    let lo = this.#lo;
    for (let i = 0; i < bytes.length; i++) {
      // The index is in range by the loop bound; `?? 0` only satisfies noUncheckedIndexedAccess.
      lo = (lo ^ (bytes[i] ?? 0)) >>> 0;
      const product = lo * 435;
      const productLo = product >>> 0;
      hi = (Math.imul(hi, 435) + (product - productLo) / TWO_TO_32 + (lo << 8)) >>> 0;
      lo = productLo;
    }
    this.#hi = hi;
    this.#lo = lo;
    return this;
  }

  /** Feeds one byte (0..255). */
  updateByte(byte: number): this {
    const lo = (this.#lo ^ byte) >>> 0;
    const product = lo * 435;
    const productLo = product >>> 0;
    this.#hi = (Math.imul(this.#hi, 435) + (product - productLo) / TWO_TO_32 + (lo << 8)) >>> 0;
    this.#lo = productLo;
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
    return this.#hi.toString(16).padStart(8, '0') + this.#lo.toString(16).padStart(8, '0');
  }
}

const encoder = new TextEncoder();

/** FNV-1a 64 of a byte string, as 16 lower-case hex digits. */
export function checksum64(bytes: Uint8Array): string {
  return new Fnv1a64().update(bytes).hex();
}

/** The checksum of empty contents, which every new file and directory starts with. */
export const EMPTY_CHECKSUM = checksum64(new Uint8Array(0));
