// The write-path trace appends one line per mark (monotonic ns, replica, stage, detail), only
// when flushed or closed, and in the order the marks were made.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { WriteTrace } from '../../src/runtime/trace.ts';

it('records marks in order with monotonic stamps, written on flush and close', () => {
  const dir = mkdtempSync(join(tmpdir(), 'paxlock-trace-test-'));
  try {
    const path = join(dir, 'trace.txt');
    const trace = new WriteTrace(path, 3);
    trace.mark('client-frame', 'command');
    trace.mark('persist-start', 'accepted 1 chosen 0');
    expect(() => readFileSync(path, 'utf8')).toThrow(); // nothing written before a flush
    trace.flush();
    trace.mark('persist-end');
    trace.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines.map((l) => l.split(' ').slice(1).join(' '))).toEqual([
      '3 client-frame command',
      '3 persist-start accepted 1 chosen 0',
      '3 persist-end',
    ]);
    const stamps = lines.map((l) => BigInt(l.split(' ')[0]!));
    expect(stamps[0]! <= stamps[1]! && stamps[1]! <= stamps[2]!).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
