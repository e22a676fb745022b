// Launches a local cell: N replica processes on 127.0.0.1, each its own OS process with its own
// data directory, logs to a file per replica. Used by `pnpm start` and by the cell tests, which
// also use it to kill -9, SIGSTOP/SIGCONT and restart replicas by pid.
//
// A new cell's replicas are founding disks: startAll() gives every replica --bootstrap when no
// replica directory holds a paxos.db yet, and never otherwise, so running it again on the same
// folder reuses the data, and a replica restarted alone on a wiped directory (start(id)) comes
// back as a replacement disk that the master must admit (docs/cell.md, Replacing a lost disk).

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CellConfig } from '../server/src/runtime/config.ts';

const repoRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const serverMain = join(repoRoot, 'server', 'src', 'main.ts');

export interface CellOptions {
  /** Where cell.json, r<id>/ data directories and r<id>.log go. */
  readonly dir: string;
  readonly cell?: string;
  /** Peers listen on basePort+id, clients on basePort+100+id. */
  readonly basePort: number;
  readonly replicas?: number;
  readonly logLevel?: string;
  /** Extra flags for every replica (timing, batching). */
  readonly serverArgs?: readonly string[];
  /** Extra flags for one replica (a trace file of its own). */
  readonly perReplicaArgs?: (id: number) => readonly string[];
}

export interface StartOptions {
  /**
   * Pass --bootstrap: the replica's data directory, if empty, is a founding disk of a new cell.
   * Default false: an empty directory is then a replacement disk (a learner until admitted).
   */
  readonly bootstrap?: boolean;
  /** Extra flags for this start only. */
  readonly extraArgs?: readonly string[];
}

export interface ReplicaProcess {
  readonly id: number;
  process: ChildProcess;
  readonly clientAddress: string;
}

export class LocalCell {
  readonly config: CellConfig;
  readonly configPath: string;
  readonly replicas = new Map<number, ReplicaProcess>();
  readonly #options: CellOptions;

  constructor(options: CellOptions) {
    this.#options = options;
    const count = options.replicas ?? 5;
    this.config = {
      cell: options.cell ?? 'local',
      replicas: Array.from({ length: count }, (_, i) => i + 1).map((id) => ({
        id,
        peer: `127.0.0.1:${options.basePort + id}`,
        client: `127.0.0.1:${options.basePort + 100 + id}`,
      })),
    };
    mkdirSync(options.dir, { recursive: true });
    this.configPath = join(options.dir, 'cell.json');
    writeFileSync(this.configPath, JSON.stringify(this.config, null, 2) + '\n');
  }

  get clientAddresses(): string[] {
    return this.config.replicas.map((r) => r.client);
  }

  /** True until some replica directory holds a paxos.db: the cell has never started. */
  get isNew(): boolean {
    return this.config.replicas.every((r) => !existsSync(this.dataPath(r.id, 'paxos.db')));
  }

  /** Starts every replica; a new cell's with --bootstrap (its founding disks), else as they are. */
  startAll(): void {
    const bootstrap = this.isNew;
    for (const r of this.config.replicas) this.start(r.id, { bootstrap });
  }

  /** Starts (or restarts) replica `id` as a new OS process. */
  start(id: number, options: StartOptions = {}): ReplicaProcess {
    const address = this.config.replicas.find((r) => r.id === id);
    if (address === undefined) throw new Error(`no replica ${id}`);
    const log = createWriteStream(this.logPath(id), { flags: 'a' });
    const child = spawn(
      process.execPath,
      [
        // PAXLOCK_NODE_ARGS passes flags to each replica's node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
        ...(process.env['PAXLOCK_NODE_ARGS']?.split(' ').filter(Boolean) ?? []),
        '--import', 'tsx',
        serverMain,
        '--id', String(id),
        '--config', this.configPath,
        '--data', join(this.#options.dir, `r${id}`),
        '--log-level', this.#options.logLevel ?? 'info',
        ...(options.bootstrap === true ? ['--bootstrap'] : []),
        ...(this.#options.serverArgs ?? []),
        // PAXLOCK_SERVER_ARGS passes flags to each paxlock-server, e.g. "--tick-ms 20".
        ...(process.env['PAXLOCK_SERVER_ARGS']?.split(' ').filter(Boolean) ?? []),
        ...(this.#options.perReplicaArgs?.(id) ?? []),
        ...(options.extraArgs ?? []),
      ],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    const replica: ReplicaProcess = { id, process: child, clientAddress: address.client };
    this.replicas.set(id, replica);
    return replica;
  }

  /** A file in replica `id`'s data directory. */
  dataPath(id: number, file: string): string {
    return join(this.#options.dir, `r${id}`, file);
  }

  /** The file replica `id` logs to. */
  logPath(id: number): string {
    return join(this.#options.dir, `r${id}.log`);
  }

  pid(id: number): number {
    const pid = this.replicas.get(id)?.process.pid;
    if (pid === undefined) throw new Error(`replica ${id} has no process`);
    return pid;
  }

  isRunning(id: number): boolean {
    const child = this.replicas.get(id)?.process;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Sends `signal` to replica `id` by its pid and, for terminating signals, waits for exit. */
  async signal(id: number, signal: NodeJS.Signals): Promise<void> {
    const child = this.replicas.get(id)?.process;
    if (child === undefined || !this.isRunning(id)) return;
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      process.kill(this.pid(id), signal);
      return;
    }
    const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
    process.kill(this.pid(id), signal);
    await exited;
  }

  /** Stops every replica: SIGCONT (in case it is frozen), then SIGTERM, and waits for exits. */
  async stopAll(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await Promise.all(
      [...this.replicas.keys()].map(async (id) => {
        if (!this.isRunning(id)) return;
        process.kill(this.pid(id), 'SIGCONT');
        await this.signal(id, signal);
      }),
    );
  }
}
