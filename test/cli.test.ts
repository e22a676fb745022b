// The paxlock CLI as a user runs it: the real client/bin/paxlock executable, spawned from a
// scratch directory against a real five-replica cell (one for the whole file). The executable
// runs from a bundle it rebuilds when a source is newer (checked last). Proves that files round-trip byte-exact through stdin and stdout, that
// failures are one line with the documented exit code, that `lock` serialises commands and
// propagates their status, that `elect` hands over at once when the leader is stopped, that
// `status` works replica by replica, and that no command leaves its session behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PaxlockClient } from '@paxlock/client';
import type { LocalCell } from '../scripts/cell.ts';
import { currentMaster, eventually, runningStatuses, tempDir, useCell } from './helpers.ts';

const bin = resolve(fileURLToPath(import.meta.url), '..', '..', 'client', 'bin', 'paxlock');

interface Finished {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** A running CLI process, its output so far, and a way to wait for a line of it. */
class Cli {
  readonly child: ChildProcess;
  stdout = Buffer.alloc(0);
  stderr = '';
  readonly finished: Promise<Finished>;
  #onOutput: (() => void) | null = null;

  constructor(args: readonly string[], options: { cwd: string; input?: Buffer }) {
    const env = { ...process.env };
    delete env['PAXLOCK_CELL'];
    this.child = spawn(bin, args, { cwd: options.cwd, env, stdio: 'pipe' });
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.stdout = Buffer.concat([this.stdout, chunk]);
      this.#onOutput?.();
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
      this.#onOutput?.();
    });
    this.finished = new Promise((resolveExit) => {
      this.child.once('close', (code) => {
        resolveExit({ code, stdout: this.stdout, stderr: this.stderr });
        this.#onOutput?.();
      });
    });
    this.child.stdin?.end(options.input ?? Buffer.alloc(0));
  }

  /** Resolves when stdout matches `pattern`; rejects if the process exits first. */
  async waitFor(pattern: RegExp): Promise<void> {
    for (;;) {
      if (pattern.test(this.stdout.toString('utf8'))) return;
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`exited (${this.child.exitCode}) before ${pattern}: ${this.stderr}`);
      await new Promise<void>((resolveOutput) => {
        this.#onOutput = resolveOutput;
      });
    }
  }
}

describe('the paxlock CLI', () => {
  const theCell = useCell('cli');
  let cell: LocalCell;
  let cwd: string;
  let client: PaxlockClient;
  const running = new Set<Cli>();

  /** Starts the CLI with --cell set to the test cell. */
  function start(args: readonly string[], input?: Buffer): Cli {
    const cli = new Cli(['--cell', cell.clientAddresses.join(','), ...args], {
      cwd,
      ...(input === undefined ? {} : { input }),
    });
    running.add(cli);
    void cli.finished.then(() => running.delete(cli));
    return cli;
  }

  async function paxlock(args: readonly string[], input?: Buffer): Promise<Finished> {
    return start(args, input).finished;
  }

  function expectOneLineError(stderr: string, pattern: RegExp): void {
    expect(stderr).toMatch(pattern);
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(stderr).not.toMatch(/\n\s+at /);
  }

  beforeAll(async () => {
    cell = theCell();
    cwd = tempDir('cli-cwd');
    await currentMaster(cell);
    // status --json must find all five answering, not one still starting.
    await eventually(
      async () => ((await runningStatuses(cell)).length === 5 ? true : undefined),
      'all five replicas answering',
      60_000,
    );
    client = await PaxlockClient.connect({
      cell: cell.clientAddresses,
      name: 'cli-test',
      findMasterTimeoutMs: 60_000,
    });
    // ... and each to have applied something: a follower whose links came up after the first
    // entries learns them by catch-up, a moment later (a clean-clone CI run once saw applied 0).
    await eventually(
      async () => {
        const statuses = await runningStatuses(cell);
        return statuses.length === 5 && statuses.every((s) => s.applied > 0) ? true : undefined;
      },
      'all five replicas applied an entry',
      60_000,
    );
  });
  afterAll(async () => {
    for (const cli of running)
      if (cli.child.pid !== undefined) process.kill(cli.child.pid, 'SIGKILL');
    await client.close();
    rmSync(cwd, { recursive: true, force: true });
  });

  it('status --json lists the five replicas with exactly one master; sessions lists sessions', async () => {
    const [status, sessions] = await Promise.all([
      paxlock(['status', '--json']),
      paxlock(['sessions', '--json']),
    ]);
    expect(status.code).toBe(0);
    const replicas = JSON.parse(status.stdout.toString('utf8')) as {
      id: number;
      role: string;
      address: string;
      applied: number;
    }[];
    expect(replicas.map((r) => r.id).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(replicas.map((r) => r.address).sort()).toEqual([...cell.clientAddresses].sort());
    expect(replicas.filter((r) => r.role === 'master')).toHaveLength(1);
    for (const r of replicas) expect(r.applied).toBeGreaterThan(0);
    expect(sessions.code).toBe(0);
    const names = (JSON.parse(sessions.stdout.toString()) as { clientName: string }[]).map(
      (s) => s.clientName,
    );
    expect(names).toContain('cli-test');
    // Read-only commands read by name without a session of their own.
    expect(names.some((name) => name.startsWith('paxlock sessions '))).toBe(false);
  });

  it('puts 256 KiB of random bytes from stdin and cats them back byte-exact', async () => {
    const data = randomBytes(256 * 1024);
    const put = await paxlock(['put', 'blob'], data);
    expect(put.stderr).toBe('');
    expect(put.code).toBe(0);
    const [cat, stat] = await Promise.all([
      paxlock(['cat', '/ls/local/blob']),
      paxlock(['stat', '--json', 'blob']),
    ]);
    expect(cat.code).toBe(0);
    expect(cat.stdout.equals(data)).toBe(true);
    expect(JSON.parse(stat.stdout.toString('utf8'))).toMatchObject({
      path: '/ls/local/blob',
      sizeBytes: 256 * 1024,
      contentGeneration: 1,
    });
  });

  it('reads with --stale from any replica and says how stale the answer can be', async () => {
    await client.writeFile('stale-cli', 'fresh enough');
    const [cat, stat, ls] = await Promise.all([
      paxlock(['cat', '--json', '--stale=5000', 'stale-cli']),
      paxlock(['stat', '--stale', 'stale-cli']),
      paxlock(['ls', '--stale=2s', '/']),
    ]);
    expect(cat.code).toBe(0);
    const read = JSON.parse(cat.stdout.toString('utf8')) as {
      contentsBase64: string;
      stalenessMs: number;
      replica: number;
      slot: number;
    };
    expect(read.stalenessMs).toBeLessThanOrEqual(5_000);
    expect(read.replica).toBeGreaterThanOrEqual(1);
    expect(read.slot).toBeGreaterThan(0);
    expect(stat.code).toBe(0);
    expect(stat.stdout.toString('utf8')).toMatch(/stale-cli/);
    expect(ls.code).toBe(0);
    expect(ls.stdout.toString('utf8').split('\n')).toContain('stale-cli');
  });

  it('reports a missing file, a file over the limit and bad usage in one line with their exit codes', async () => {
    const [missing, tooLarge, usage] = await Promise.all([
      paxlock(['cat', 'no/such/file']),
      paxlock(['put', 'too-large'], randomBytes(256 * 1024 + 1)),
      paxlock(['cat']),
    ]);
    expect(missing.code).toBe(2);
    expectOneLineError(missing.stderr, /^paxlock: cat \/ls\/local\/no\/such\/file: NOT_FOUND: /);
    expect(missing.stdout.length).toBe(0);
    expect(tooLarge.code).toBe(64);
    expectOneLineError(tooLarge.stderr, /^paxlock: put too-large: TOO_LARGE: 262145 bytes/);
    expect(usage.code).toBe(64);
    expectOneLineError(usage.stderr, /^paxlock: /);
    expect(await client.exists('too-large')).toBe(false);
  });

  it('makes, lists, stats and removes directories', async () => {
    // (A tree for rm -r made through the library, alongside.)
    await client.mkdir('tree/a', { parents: true });
    await client.writeFile('tree/a/leaf', 'x');
    expect((await paxlock(['mkdir', '-p', 'd/e/f'])).code).toBe(0);
    const [again, put, stat, rmNotEmpty, rmTree] = await Promise.all([
      paxlock(['mkdir', 'd/e']),
      paxlock(['put', 'd/file', 'hello']),
      paxlock(['stat', 'd/e']),
      paxlock(['rm', 'd']),
      paxlock(['rm', '-r', '/ls/local/tree']),
    ]);
    expect(again.code).toBe(3);
    expectOneLineError(again.stderr, /^paxlock: mkdir \/ls\/local\/d\/e: EXISTS: /);
    expect(put.code).toBe(0);
    expect(stat.stdout.toString()).toMatch(/^type: +directory$/m);
    expect(rmNotEmpty.code).toBe(3);
    expectOneLineError(rmNotEmpty.stderr, /^paxlock: rm \/ls\/local\/d: NOT_EMPTY: /);
    expect(rmTree.code).toBe(0);
    expect(await client.exists('tree')).toBe(false);
    const [ls, lsR, lsL] = await Promise.all([
      paxlock(['ls', 'd']),
      paxlock(['ls', '-R', '--json', '/ls/local/d']),
      paxlock(['ls', '-l', 'd/file']),
    ]);
    expect(ls.stdout.toString()).toBe('e/\nfile\n');
    expect((JSON.parse(lsR.stdout.toString()) as { path: string }[]).map((e) => e.path)).toEqual([
      '/ls/local/d/e',
      '/ls/local/d/e/f',
      '/ls/local/d/file',
    ]);
    expect(lsL.stdout.toString()).toMatch(/^f-\s+5\s+gen=1\s.*\/ls\/local\/d\/file$/m);
  });

  it('lock serialises two commands, gives each its own sequencer, and propagates exit codes', async () => {
    const log = join(cwd, 'lock.log');
    const go = join(cwd, 'go');
    // Each command logs its start, waits for the test's go-ahead, and logs its end: with both
    // queued on the lock, any interleaving would show as start, start.
    const script = `echo "start $PAXLOCK_SEQUENCER" >> "${log}"; while [ ! -e "${go}" ]; do sleep 0.05; done; echo end >> "${log}"`;
    // (jobs/ does not exist: lock makes it.)
    const first = start(['lock', 'jobs/one', '--', 'sh', '-c', script]);
    const second = start(['lock', 'jobs/one', '--', 'sh', '-c', script]);
    // Without `--`, the command's own options (-c) are still the command's.
    const status = start(['lock', 'job-two', 'sh', '-c', 'test -n "$PAXLOCK_SEQUENCER" && exit 7']);
    const locks = await eventually(async () => {
      const [info] = await client.listLocks('jobs/one');
      return info !== undefined && info.holders.length === 1 && info.waiters.length === 1
        ? info
        : undefined;
    }, 'one holder and one waiter');
    expect(locks.holders[0]?.mode).toBe('exclusive');
    // Not waiting (--timeout 0) on a held lock: conflict.
    const busy = await paxlock(['lock', '--timeout', '0', 'jobs/one', '--', 'true']);
    expect(busy.code).toBe(3);
    expectOneLineError(busy.stderr, /LOCK_HELD/);
    writeFileSync(go, '');
    const [a, b, seven] = await Promise.all([first.finished, second.finished, status.finished]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(seven.code).toBe(7);
    const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['start', 'end', 'start', 'end']);
    const sequencers = lines.filter((l) => l.startsWith('start ')).map((l) => l.slice(6));
    expect(sequencers.every((s) => s.includes('/ls/local/jobs/one'))).toBe(true);
    expect(sequencers[0]).not.toBe(sequencers[1]);
    const [after] = await client.listLocks('jobs/one');
    expect([after?.holders, after?.waiters]).toEqual([[], []]);
  });

  it('elect hands leadership over at once when the leader is stopped', async () => {
    const campaigners = [
      start(['elect', 'svc-leader', 'host-a:1']),
      start(['elect', 'svc-leader', 'host-b:2']),
    ];
    // Whichever is granted the lock first leads; the other waits in the queue.
    const info = await eventually(async () => {
      const [lock] = await client.listLocks('svc-leader');
      return lock?.holders.length === 1 && lock.waiters.length === 1 ? lock : undefined;
    }, 'a leader and a queued campaigner');
    const leader = await client.election('svc-leader').leader();
    const firstIndex = leader?.value === 'host-a:1' ? 0 : 1;
    const first = campaigners[firstIndex];
    const second = campaigners[1 - firstIndex];
    if (first === undefined || second === undefined) throw new Error('two campaigners');
    expect(leader?.session).toBe(info.holders[0]?.session);
    await first.waitFor(/^leader \/ls\/local\/svc-leader host-.:.$/m);
    expect(second.stdout.toString()).toBe('');
    const stoppedAt = Date.now();
    process.kill(first.child.pid ?? 0, 'SIGTERM');
    expect((await first.finished).code).toBe(0);
    await second.waitFor(/^leader \/ls\/local\/svc-leader host-.:.$/m);
    // Resigned, not abandoned: no lock-delay (5 s for elections) stood in the way.
    expect(Date.now() - stoppedAt).toBeLessThan(5_000);
    expect((await client.election('svc-leader').leader())?.value).toBe(
      firstIndex === 0 ? 'host-b:2' : 'host-a:1',
    );
    process.kill(second.child.pid ?? 0, 'SIGTERM');
    expect((await second.finished).code).toBe(0);
  });

  it('leaves no session behind', async () => {
    // Every command above closed its session on the way out: only the test's own is left.
    expect((await client.listSessions()).map((s) => s.clientName)).toEqual(['cli-test']);
  });
});

describe('the paxlock executable', () => {
  it('runs from a bundle that it rebuilds when a source is newer than it', async () => {
    const clientDir = resolve(bin, '..', '..');
    const source = join(clientDir, 'src', 'cli.ts');
    const bundle = join(clientDir, 'build', 'cli.mjs');
    const now = new Date();
    utimesSync(source, now, now);
    try {
      utimesSync(bundle, new Date(0), new Date(0)); // an out-of-date bundle, if there is one
    } catch {
      // none built yet: the first call builds it
    }
    const cwd = tempDir('cli-bundle');
    try {
      const help = await new Cli(['--help'], { cwd }).finished;
      expect(help.code).toBe(0);
      expect(help.stdout.toString('utf8')).toMatch(/paxlock <command>/);
      expect(statSync(bundle).mtimeMs).toBeGreaterThanOrEqual(statSync(source).mtimeMs);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
