// `paxlock backup` and `paxlock-server --restore` with real parts: a five-replica cell, the real
// CLI executable, real replica processes. Proves that a backup asked of a follower comes from the
// master (the redirect), is checked against its sha256 and written whole or not at all, that a
// cell restored from it on new ports and empty data directories holds exactly what the backup
// held (byte-identical files, the same stats, directories) and nothing written after it, and
// accepts writes; that `backup` refuses to overwrite without --force and reports an unreachable
// cell with exit 5; and that a replica refuses to restore over existing data, from a backup of
// another cell, or from a file that is not a backup.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCell } from '../scripts/cell.ts';
import { currentMaster, eventually, runningStatuses, tempDir } from './helpers.ts';
import { freeBasePort } from './ports.ts';

const repoRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const bin = join(repoRoot, 'client', 'bin', 'paxlock');
const serverMain = join(repoRoot, 'server', 'src', 'main.ts');

interface Finished {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('paxlock backup, and paxlock-server --restore', () => {
  const dirs: string[] = [];
  const cells: LocalCell[] = [];
  const children = new Set<ChildProcess>();

  /** Runs a process to its end (tracked so that afterAll can stop it by pid if the test fails). */
  async function run(
    command: string,
    args: readonly string[],
    input: Uint8Array = Buffer.alloc(0),
  ): Promise<Finished> {
    const env = { ...process.env };
    delete env['PAXLOCK_CELL'];
    const child = spawn(command, args, { cwd: repoRoot, env, stdio: 'pipe' });
    children.add(child);
    let stdout: Buffer = Buffer.alloc(0);
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout = Buffer.concat([stdout, chunk]);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.stdin.end(input);
    return new Promise((resolveExit) => {
      child.once('close', (code) => {
        children.delete(child);
        resolveExit({ code, stdout, stderr });
      });
    });
  }

  /** The CLI against `cell` (a list of client addresses). */
  async function paxlock(
    cell: readonly string[],
    args: readonly string[],
    input?: Buffer,
  ): Promise<Finished> {
    return run(bin, ['--cell', cell.join(','), ...args], input);
  }

  /** One replica process on `dataDir`, as LocalCell starts them, run until it exits. */
  async function server(options: {
    readonly config: string;
    readonly dataDir: string;
    readonly restore: string;
  }): Promise<Finished> {
    return run(process.execPath, [
      '--import',
      'tsx',
      serverMain,
      '--id',
      '1',
      '--config',
      options.config,
      '--data',
      options.dataDir,
      '--restore',
      options.restore,
    ]);
  }

  function newCell(options: {
    readonly name: string;
    readonly basePort: number;
    readonly serverArgs?: readonly string[];
  }): LocalCell {
    const dir = tempDir(options.name);
    dirs.push(dir);
    const cell = new LocalCell({
      dir,
      basePort: options.basePort,
      logLevel: 'info',
      serverArgs: options.serverArgs ?? [],
    });
    cells.push(cell);
    return cell;
  }

  function expectOneLine(stderr: string, pattern: RegExp): void {
    expect(stderr).toMatch(pattern);
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
  }

  afterAll(async () => {
    for (const child of children) if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    await Promise.all(cells.map(async (cell) => cell.stopAll()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('backs up from a follower, restores all five replicas from the file, and refuses bad restores', async () => {
    const startedAt = Date.now();
    const work = tempDir('backup-files');
    dirs.push(work);
    const file = join(work, 'backup.db');

    // 1. A cell with a few files and directories in it, written through the CLI.
    const original = newCell({ name: 'backup-original', basePort: await freeBasePort() });
    original.startAll();
    const cell = original.clientAddresses;
    await currentMaster(original);
    const blob = randomBytes(100 * 1024);
    expect((await paxlock(cell, ['mkdir', '-p', 'conf/app'])).code).toBe(0);
    const written = await Promise.all([
      paxlock(cell, ['mkdir', 'empty-dir']),
      paxlock(cell, ['put', 'conf/app/name', 'hello, backup']),
      paxlock(cell, ['put', 'conf/app/empty', '']),
      paxlock(cell, ['put', 'blob'], blob),
    ]);
    expect(written.map((w) => [w.code, w.stderr])).toEqual(written.map(() => [0, '']));
    const contents = new Map<string, Buffer>([
      ['/ls/local/conf/app/name', Buffer.from('hello, backup')],
      ['/ls/local/conf/app/empty', Buffer.alloc(0)],
      ['/ls/local/blob', blob],
    ]);
    const [tree, blobStat] = await Promise.all([
      paxlock(cell, ['ls', '-R', '--json', '/']),
      paxlock(cell, ['stat', '--json', 'blob']),
    ]);
    expect(tree.code).toBe(0);
    expect(blobStat.code).toBe(0);

    // 2. The backup, asked of one follower only: it redirects to the master.
    const follower = await eventually(async () => {
      const status = await paxlock(cell, ['status', '--json']);
      const replicas = JSON.parse(status.stdout.toString('utf8')) as {
        id: number;
        role: string;
        address: string;
        masterId: number | null;
      }[];
      const master = replicas.find((r) => r.role === 'master');
      const known = replicas.find(
        (r) => r.role === 'follower' && master !== undefined && r.masterId === master.id,
      );
      return master === undefined || known === undefined
        ? undefined
        : { address: known.address, master: master.address };
    }, 'a follower that knows the master');
    // (What curl -L follows: the follower points at the master. The CLI asks the follower's
    // /health where the master is, then the master.)
    const redirect = await fetch(`http://${follower.address}/backup`, { redirect: 'manual' });
    expect(redirect.status).toBe(307);
    expect(redirect.headers.get('location')).toBe(`http://${follower.master}/backup`);
    await redirect.body?.cancel();
    const [fromFollower, refused] = await Promise.all([
      paxlock([follower.address], ['backup', '--json', file]),
      paxlock([follower.address], ['backup', '-']),
    ]);
    expect(refused.code).toBe(64);
    expectOneLine(refused.stderr, /^paxlock: backup -: BAD_REQUEST: /);
    expect(fromFollower.stderr).toBe('');
    expect(fromFollower.code).toBe(0);
    const first = JSON.parse(fromFollower.stdout.toString('utf8')) as {
      cell: string;
      slot: number;
      bytes: number;
      sha256: string;
      file: string;
    };
    expect(first).toMatchObject({ cell: 'local', file });
    expect(first.slot).toBeGreaterThan(0);
    expect(first.bytes).toBe(statSync(file).size);
    expect(first.bytes).toBeGreaterThan(blob.length);
    expect(sha256(readFileSync(file))).toBe(first.sha256);

    // Not over an existing file, unless --force; and no temporary file is left behind either way.
    const again = await paxlock(cell, ['backup', file]);
    expect(again.code).toBe(3);
    expectOneLine(again.stderr, /^paxlock: backup .*: EXISTS: /);
    expect(sha256(readFileSync(file))).toBe(first.sha256);
    const forced = await paxlock(cell, ['backup', '--force', file]);
    expect(forced.stderr).toBe('');
    expect(forced.code).toBe(0);
    const line = forced.stdout.toString('utf8');
    expect(line).toMatch(
      /^backup of cell local at slot \d+: \d+ bytes, sha256 [0-9a-f]{64}, written to \S+\n$/,
    );
    const [, slot, sizeBytes, hash] =
      /at slot (\d+): (\d+) bytes, sha256 ([0-9a-f]{64})/.exec(line) ?? [];
    expect(Number(slot)).toBeGreaterThanOrEqual(first.slot);
    expect(Number(sizeBytes)).toBe(statSync(file).size);
    expect(sha256(readFileSync(file))).toBe(hash);
    expect(readdirSync(work)).toEqual(['backup.db']);

    // 3. A write after the backup: the restored cell must not have it.
    expect((await paxlock(cell, ['put', 'after-backup', 'too late'])).code).toBe(0);

    // 4. A new cell on new ports (taken while the old one still holds its own) and empty data
    // directories, every replica restored from the same file.
    const restoredPort = await freeBasePort();
    await original.stopAll();
    // (The old cell, stopped: no replica answers, and nothing is written.)
    const gone = await paxlock(cell, ['backup', '--timeout', '5s', join(work, 'none.db')]);
    expect(gone.code).toBe(5);
    expectOneLine(gone.stderr, /^paxlock: backup .*: NO_MASTER: no replica answered/);
    expect(readdirSync(work)).toEqual(['backup.db']);

    const restored = newCell({
      name: 'backup-restored',
      basePort: restoredPort,
      serverArgs: ['--restore', file],
    });
    restored.startAll();
    const restoredCell = restored.clientAddresses;
    expect(restoredCell.some((address) => cell.includes(address))).toBe(false);
    const master = await currentMaster(restored);
    expect(master.applied).toBeGreaterThanOrEqual(Number(slot));
    const reads = await Promise.all(
      [...contents.keys()].map(async (path) => paxlock(restoredCell, ['cat', path])),
    );
    for (const [i, [path, bytes]] of [...contents].entries())
      expect(reads[i]?.stdout.equals(bytes), path).toBe(true);
    const [restoredTree, restoredStat, late] = await Promise.all([
      paxlock(restoredCell, ['ls', '-R', '--json', '/']),
      paxlock(restoredCell, ['stat', '--json', 'blob']),
      paxlock(restoredCell, ['cat', 'after-backup']),
    ]);
    expect(JSON.parse(restoredTree.stdout.toString('utf8'))).toEqual(
      JSON.parse(tree.stdout.toString('utf8')),
    );
    expect(JSON.parse(restoredStat.stdout.toString('utf8'))).toEqual(
      JSON.parse(blobStat.stdout.toString('utf8')),
    );
    expect(late.code).toBe(2);
    expect((await paxlock(restoredCell, ['put', 'after-restore', 'new'])).code).toBe(0);
    expect((await paxlock(restoredCell, ['cat', 'after-restore'])).stdout.toString()).toBe('new');
    // All five went on from the same state: past the backup's slot, with one digest.
    const agreed = await eventually(async () => {
      const all = await runningStatuses(restored);
      const applied = new Set(all.map((s) => s.applied));
      return all.length === 5 && applied.size === 1 ? all : undefined;
    }, 'all five restored replicas at the same applied slot');
    expect(agreed[0]!.applied).toBeGreaterThan(Number(slot));
    expect(new Set(agreed.map((s) => s.digest)).size).toBe(1);

    // 5. Refusals: over a data directory that has a log of another history (the original cell's,
    // stopped; restoring the same backup again over a restored one is a no-op, see
    // server/test/runtime/restore.test.ts); from a backup of another cell; from a file that is
    // not a backup. Each exits before serving.
    await restored.stopAll();
    const used = original.dataPath(1, '');
    const paxosBefore = sha256(readFileSync(join(used, 'paxos.db')));
    // (Only its cell.json: the same replicas, another cell name. Nothing of it is started.)
    const otherConfig = new LocalCell({
      dir: join(work, 'other'),
      cell: 'other',
      basePort: restoredPort,
    }).configPath;
    const notBackup = join(work, 'not-a-backup.db');
    writeFileSync(notBackup, randomBytes(8192));
    const [overData, otherCell, garbage] = await Promise.all([
      server({ config: restored.configPath, dataDir: used, restore: file }),
      server({ config: otherConfig, dataDir: join(work, 'other', 'r1'), restore: file }),
      server({
        config: restored.configPath,
        dataDir: join(work, 'garbage-r1'),
        restore: notBackup,
      }),
    ]);
    expect(overData.code).not.toBe(0);
    expectOneLine(overData.stderr, /^paxlock-server: .*paxos\.db/);
    expect(sha256(readFileSync(join(used, 'paxos.db')))).toBe(paxosBefore);
    expect(otherCell.code).not.toBe(0);
    expectOneLine(otherCell.stderr, /^paxlock-server: .*cell other/);
    expect(existsSync(join(work, 'other', 'r1', 'state.db'))).toBe(false);
    expect(garbage.code).not.toBe(0);
    expectOneLine(garbage.stderr, /^paxlock-server: .*not a paxlock state database/);
    expect(existsSync(join(work, 'garbage-r1', 'state.db'))).toBe(false);
    console.log(`[figure] backup and restore test: ${Date.now() - startedAt} ms`);
  });
  it('waits for a master that takes longer than the per-replica bound to start sending, past a frozen replica', async () => {
    // Two stand-ins on 127.0.0.1, for what a state of hundreds of MB does to the master and for
    // a replica stopped with SIGSTOP: the first accepts connections and never answers; the second
    // answers /health at once (it is master) and /backup only after 4 s (the master copies and
    // hashes the state before its first byte), more than the 3 s each replica gets to answer.
    // Before the CLI probed /health, the 3 s bound applied to /backup itself and this failed.
    const work = tempDir('backup-slow');
    dirs.push(work);
    const frozenSockets = new Set<Socket>();
    const frozen = createNetServer((socket) => {
      frozenSockets.add(socket);
      socket.on('close', () => frozenSockets.delete(socket));
    });
    const image = Buffer.concat([Buffer.from('SQLite format 3\0', 'latin1'), randomBytes(64 * 1024)]);
    let address = '';
    const pending = new Set<NodeJS.Timeout>();
    const master = createHttpServer((request, response) => {
      if (request.url === '/health') {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ health: true, id: 2, cell: 'local', role: 'master', masterId: 2, master: address }));
        return;
      }
      if (request.url === '/backup') {
        const timer = setTimeout(() => {
          pending.delete(timer);
          response.writeHead(200, {
            'content-type': 'application/octet-stream',
            'x-paxlock-cell': 'local',
            'x-paxlock-slot': '42',
            'x-paxlock-sha256': sha256(image),
          });
          response.end(image);
        }, 4_000);
        pending.add(timer);
        return;
      }
      response.writeHead(404).end();
    });
    const listen = async (server: NetServer | HttpServer): Promise<string> => {
      await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
      const bound = server.address();
      if (bound === null || typeof bound === 'string') throw new Error('no port');
      return `127.0.0.1:${bound.port}`;
    };
    try {
      const frozenAddress = await listen(frozen);
      address = await listen(master);
      const file = join(work, 'slow.db');
      const startedAt = Date.now();
      const done = await paxlock([frozenAddress, address], ['backup', '--json', '--timeout', '20s', file]);
      const tookMs = Date.now() - startedAt;
      expect(done.stderr).toBe('');
      expect(done.code).toBe(0);
      expect(JSON.parse(done.stdout.toString('utf8'))).toMatchObject({ cell: 'local', slot: 42, bytes: image.length, sha256: sha256(image) });
      expect(readFileSync(file).equals(image)).toBe(true);
      expect(tookMs).toBeGreaterThanOrEqual(4_000);
      console.log(`[figure] backup past a frozen replica from a master that took 4 s to start: ${tookMs} ms`);

      // With a --timeout shorter than the master needs, the error says so and what to do.
      const short = await paxlock([address], ['backup', '--timeout', '2s', join(work, 'short.db')]);
      expect(short.code).toBe(4);
      expectOneLine(short.stderr, /TIMEOUT: the master \(127\.0\.0\.1:\d+\) did not start sending the backup within the --timeout of 2000 ms.*larger --timeout/);
      expect(readdirSync(work)).toEqual(['slow.db']);
    } finally {
      for (const timer of pending) clearTimeout(timer);
      for (const socket of frozenSockets) socket.destroy();
      master.closeAllConnections();
      await Promise.all([
        new Promise((resolveClose) => frozen.close(resolveClose)),
        new Promise((resolveClose) => master.close(resolveClose)),
      ]);
    }
  }, 60_000);
});
