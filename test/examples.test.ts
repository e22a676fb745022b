// The programs in examples/ run against a real cell, as a user would run them by hand: two
// locked jobs never overlap, three primaries elect one and hand over when it stops, and a config
// watcher sees a change. Each example is its own process, stopped by pid at the end.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PaxlockClient } from '@paxlock/client';
import { parseSequencer } from '@paxlock/shared';
import type { LocalCell } from '../scripts/cell.ts';
import { eventually, useCell } from './helpers.ts';

const root = resolve(import.meta.dirname, '..');

interface Running {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
}

const started: Running[] = [];

function run(cell: LocalCell, example: string, args: readonly string[] = []): Running {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(root, 'examples', example), ...args],
    {
      cwd: root,
      env: { ...process.env, PAXLOCK_CELL: cell.clientAddresses.join(',') },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
  createInterface({ input: child.stderr }).on('line', (line) => lines.push(`stderr: ${line}`));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const running = { child, lines, exited };
  started.push(running);
  return running;
}

async function lineMatching(running: Running, pattern: RegExp, what: string): Promise<string> {
  return eventually(() => running.lines.find((l) => pattern.test(l)), what, 60_000);
}

describe('the examples', () => {
  const theCell = useCell('examples');
  let cell: LocalCell;
  beforeAll(() => {
    cell = theCell();
  });
  afterAll(async () => {
    for (const r of started)
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    await Promise.all(started.map((r) => r.exited));
  });

  it('locked-job: two runs of the same job never overlap', async () => {
    const first = run(cell, 'locked-job.ts', ['report', '3']);
    const second = run(cell, 'locked-job.ts', ['report', '3']);
    expect(await first.exited).toBe(0);
    expect(await second.exited).toBe(0);
    const span = (r: Running): [number, number, string] => {
      const running = r.lines.find((l) => l.includes(' running report holding '));
      const last = r.lines.find((l) => l.endsWith(' step 3/3'));
      if (running === undefined || last === undefined)
        throw new Error(`unexpected output:\n${r.lines.join('\n')}`);
      return [
        Date.parse(running.slice(0, 24)),
        Date.parse(last.slice(0, 24)),
        running.slice(running.lastIndexOf(' ') + 1),
      ];
    };
    const [a, b] = [span(first), span(second)].sort((x, y) => x[0] - y[0]) as [
      [number, number, string],
      [number, number, string],
    ];
    expect(a[1]).toBeLessThanOrEqual(b[0]);
    expect(parseSequencer(b[2])!.lockGeneration).toBeGreaterThan(
      parseSequencer(a[2])!.lockGeneration,
    );
  });

  it('primary: three processes elect one primary, and a standby takes over when it stops', async () => {
    const processes = ['one', 'two', 'three'].map((name) => ({
      name,
      running: run(cell, 'primary.ts', [name]),
    }));
    // Every process is up (its signal handlers set) before any is stopped.
    for (const p of processes) {
      await lineMatching(p.running, /standby: campaigning|primary, term/, `${p.name} campaigning`);
    }
    const firstLine = await eventually(
      () => processes.flatMap((p) => p.running.lines).find((l) => / primary, term /.test(l)),
      'a primary',
      60_000,
    );
    const primary = processes.find((p) => p.running.lines.includes(firstLine))!;
    const firstTerm = firstLine.slice(firstLine.lastIndexOf(' ') + 1);
    // Only one of the three is primary.
    expect(
      processes.filter((p) => p.running.lines.some((l) => / primary, term /.test(l))),
    ).toHaveLength(1);
    primary.running.child.kill('SIGTERM');
    expect(await primary.running.exited).toBe(0);
    const others = processes.filter((p) => p !== primary);
    const nextLine = await eventually(
      () => others.flatMap((p) => p.running.lines).find((l) => / primary, term /.test(l)),
      'a new primary',
      60_000,
    );
    const nextTerm = nextLine.slice(nextLine.lastIndexOf(' ') + 1);
    expect(parseSequencer(nextTerm)!.lockGeneration).toBeGreaterThan(
      parseSequencer(firstTerm)!.lockGeneration,
    );
    expect(
      others.filter((p) => p.running.lines.some((l) => / primary, term /.test(l))),
    ).toHaveLength(1);
    for (const p of others) p.running.child.kill('SIGTERM');
    for (const p of others) expect(await p.running.exited).toBe(0);
  });

  it('config-watch: prints the config, then every change', async () => {
    const client = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'config-writer',
    });
    await client.mkdir('config', { parents: true });
    await client.writeFile('config/app.json', '{"color":"red"}');
    const watcher = run(cell, 'config-watch.ts', ['config/app.json']);
    await lineMatching(watcher, /generation 1: \{"color":"red"\}/, 'the first config');
    await client.writeFile('config/app.json', '{"color":"blue"}');
    await lineMatching(watcher, /generation 2: \{"color":"blue"\}/, 'the changed config');
    await client.close();
    watcher.child.kill('SIGTERM');
    expect(await watcher.exited).toBe(0);
  });
});
