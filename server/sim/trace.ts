// The simulator's transcript: a running hash of everything that happened (the determinism check
// reruns a seed and compares hashes, as FoundationDB does) and a ring of the most recent events
// and core log lines, printed when a checker fires. Lines are formatted lazily: a passing seed
// never pays for the strings, a failing one prints the tail.

export interface TraceLine {
  /** Global virtual time, ms. */
  readonly at: number;
  /** Replica id, or 0 for the simulator itself. */
  readonly who: number;
  readonly text: string | (() => string);
}

export class Trace {
  #hash = 0x811c9dc5;
  readonly #ring: (TraceLine | undefined)[];
  #next = 0;
  readonly #echo: ((line: string) => void) | null;

  constructor(options: {
    readonly capacity: number;
    readonly echo: ((line: string) => void) | null;
  }) {
    this.#ring = new Array<TraceLine | undefined>(options.capacity);
    this.#echo = options.echo;
  }

  /** Folds numbers into the determinism hash. */
  mix(a: number, b = 0, c = 0): void {
    let h = this.#hash;
    h = Math.imul(h ^ (a | 0), 0x01000193);
    h = Math.imul(h ^ (b | 0), 0x01000193);
    h = Math.imul(h ^ (c | 0), 0x01000193);
    this.#hash = h >>> 0;
  }

  mixString(s: string): void {
    for (let i = 0; i < s.length; i++) this.mix(s.charCodeAt(i));
  }

  get hash(): number {
    return this.#hash;
  }

  /** Records a line; a quiet line goes to the failure tail but is not echoed. */
  line(at: number, who: number, text: string | (() => string), isQuiet = false): void {
    const entry = { at, who, text };
    this.#ring[this.#next % this.#ring.length] = entry;
    this.#next++;
    if (this.#echo !== null && !isQuiet) this.#echo(formatLine(entry));
  }

  /** The most recent lines, oldest first. */
  tail(count: number): string[] {
    const n = Math.min(count, this.#ring.length, this.#next);
    const out: string[] = [];
    for (let i = this.#next - n; i < this.#next; i++) {
      const entry = this.#ring[i % this.#ring.length];
      if (entry !== undefined) out.push(formatLine(entry));
    }
    return out;
  }
}

export function formatLine(entry: TraceLine): string {
  const text = typeof entry.text === 'string' ? entry.text : entry.text();
  const who = entry.who === 0 ? 'sim' : `r${entry.who}`;
  return `${(entry.at / 1000).toFixed(4).padStart(9)}s ${who.padEnd(3)} ${text}`;
}

/** Renders a log object compactly: ballots as r.id, byte arrays by length. */
export function formatObject(obj: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(obj)) parts.push(`${key}=${formatValue(value, 0)}`);
  return parts.join(' ');
}

function formatValue(value: unknown, depth: number): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Uint8Array) return `<${value.length}B>`;
  if (depth > 3) return '…';
  if (Array.isArray(value)) {
    const items = value.slice(0, 8).map((v) => formatValue(v, depth + 1));
    return `[${items.join(',')}${value.length > 8 ? `,…+${value.length - 8}` : ''}]`;
  }
  if (typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (
      typeof o['round'] === 'number' &&
      typeof o['replica'] === 'number' &&
      Object.keys(o).length === 2
    ) {
      return `${o['round']}.${o['replica']}`;
    }
    return `{${Object.entries(o)
      .map(([k, v]) => `${k}:${formatValue(v, depth + 1)}`)
      .join(' ')}}`;
  }
  return typeof value;
}
