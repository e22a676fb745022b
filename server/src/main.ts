// paxlock-server: one replica process. Flags -> configuration, one pino root logger, then the
// replica node (runtime/node.ts). SIGTERM and SIGINT stop it cleanly: sockets closed, databases
// closed. A crash (kill -9) is also fine by design: paxos.db is durable per turn and state.db is
// replayed from it on the next start.

import { existsSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { join, resolve } from 'node:path';
import pino from 'pino';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { askPeers, BOOTSTRAP_WINDOW_MS, foundingVerdict } from './runtime/bootstrap-guard.ts';
import { ConfigError, loadCellConfig } from './runtime/config.ts';
import { DEFAULT_TIMING, ReplicaNode } from './runtime/node.ts';
import { RestoreError, restoreBackup } from './runtime/restore.ts';
import { DEFAULT_QUEUE_HOLD_MS } from './sessions/service.ts';

// V8 compiles a function with its optimising compiler once it has run enough bytecode (the
// interrupt budget). A replica's hot paths run a few hundred times a second, so at V8's default
// (67,584) the first ten-odd seconds after a start, or on a new master's master-only paths after
// a fail-over, ran slower: pnpm bench --only sequential-writes --warmup 2, six interleaved pairs,
// 339-489 writes/s and 3.1-4.6 ms of server CPU a write at the default against 461-604/s and
// 2.3-3.1 ms at 8,192 (docs/benchmarks.md, run 15). Given on node's own command line, that one wins.
if (!process.execArgv.some((arg) => arg.startsWith('--interrupt-budget'))) setFlagsFromString('--interrupt-budget=8192');

const argv = yargs(hideBin(process.argv))
  .scriptName('paxlock-server')
  .usage('$0 --id N --config cell.json --data DIR\n\nRuns one replica of a paxlock cell.')
  .option('id', { type: 'number', demandOption: true, describe: 'this replica’s id in the cell configuration' })
  .option('config', { type: 'string', demandOption: true, describe: 'cell configuration file (JSON: cell, replicas[{id, peer, client}])' })
  .option('data', { type: 'string', demandOption: true, describe: 'data directory (paxos.db, state.db)' })
  .option('lease-ms', { type: 'number', default: DEFAULT_TIMING.leaseMs, describe: 'master lease' })
  .option('heartbeat-ms', { type: 'number', default: DEFAULT_TIMING.heartbeatMs, describe: 'master heartbeat interval' })
  .option('election-timeout-ms', { type: 'number', default: DEFAULT_TIMING.electionTimeoutMs, describe: 'silence before a follower stands for master' })
  .option('tick-ms', { type: 'number', default: DEFAULT_TIMING.tickMs, describe: 'how often timers are checked (heartbeats, elections, session expiry); every tick is a wake-up' })
  .option('snapshot-every', { type: 'number', default: DEFAULT_TIMING.snapshotEverySlots, describe: 'snapshot state.db and compact the log every N applied slots' })
  .option('handover-wait-ms', { type: 'number', default: DEFAULT_TIMING.handoverWaitMs, describe: 'a master stopped by SIGTERM/SIGINT resigns and waits up to this long for its successor to take over before it exits (0: do not wait)' })
  .option('digest-every-ms', { type: 'number', default: DEFAULT_TIMING.digestEveryMs, describe: 'compare state digests through the log this often (0: never)' })
  .option('max-batch', { type: 'number', default: 1024, describe: 'most commands per slot (1 disables batching)' })
  .option('queue-hold-ms', { type: 'number', default: DEFAULT_QUEUE_HOLD_MS, describe: 'an Acquire that would only join a lock\'s queue waits up to this long to share a log entry with the next command (0: never)' })
  .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'silent'] })
  .option('client-send-buffer-max-bytes', { type: 'number', default: 16 * 1024 * 1024, describe: 'cut off a client that stopped reading once this much is waiting to be sent to it' })
  .option('trace-file', { type: 'string', describe: 'append a write-path trace (monotonic ns per stage) to this file; for scripts/trace-writes.ts' })
  .option('pretty', { type: 'boolean', default: false, describe: 'human-readable logs (development)' })
  .option('bootstrap', { type: 'boolean', default: false, describe: 'this empty data directory is a founding member of a NEW cell (give it on every replica\'s first start of a new cell, and never again: a replacement disk started with it would vote as the disk it replaces); ignored once the directory has a disk id' })
  .option('bootstrap-window-ms', { type: 'number', default: BOOTSTRAP_WINDOW_MS, describe: 'with --bootstrap or --restore on an empty data directory: if a peer\'s history began more than this long ago, the cell is already running and this directory starts as a replacement disk instead' })
  .option('restore', { type: 'string', describe: 'first install this backup (`paxlock backup FILE`) as the state; only into an empty data directory, and every replica of the cell from the same file' })
  .example('$0 --id 1 --config .data/cell.json --data .data/r1', 'run replica 1 of the local cell')
  .example('$0 --id 1 --config cell.json --data /var/lib/paxlock/r1 --bootstrap', 'first start of replica 1 of a new cell (do the same on all five)')
  .example('$0 --id 1 --config cell.json --data /var/lib/paxlock/r1 --restore backup.db', 'restore replica 1 from a backup (do the same on all five)')
  .check((a) => {
    // Numbers from the command line are checked before use, like every other input.
    const atLeast: [string, number][] = [
      ['lease-ms', 1], ['heartbeat-ms', 1], ['election-timeout-ms', 1], ['tick-ms', 1], ['snapshot-every', 1],
      ['digest-every-ms', 0], ['max-batch', 1], ['client-send-buffer-max-bytes', 1], ['handover-wait-ms', 0], ['bootstrap-window-ms', 0], ['queue-hold-ms', 0],
    ];
    for (const [name, min] of atLeast) {
      const value = a[name];
      if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number >= ${String(min)} (got ${String(value)})`);
    }
    return true;
  })
  .strict()
  .help()
  .parseSync();

/** How long a fresh --bootstrap replica waits for each peer's GET /health. */
const PEER_HEALTH_TIMEOUT_MS = 2_000;

const logger = pino(
  { level: argv['log-level'], base: { pid: process.pid } },
  argv.pretty ? pino.transport({ target: 'pino-pretty', options: { colorize: true } }) : undefined,
);

async function main(): Promise<void> {
  const cell = loadCellConfig(argv.config);
  const restoreFrom = argv.restore;
  const dataDir = resolve(argv.data);
  // A restored replica is a founding disk of the restored cell, as a bootstrapped one is of a new
  // cell; unless its peers show a cell running for a while (bootstrap-guard.ts).
  let isFoundingDisk = argv.bootstrap || restoreFrom !== undefined;
  if (isFoundingDisk && !existsSync(join(dataDir, 'paxos.db'))) {
    const peers = await askPeers(cell.replicas, argv.id, PEER_HEALTH_TIMEOUT_MS);
    const verdict = foundingVerdict(peers, Date.now(), argv['bootstrap-window-ms']);
    const unanswered = peers.flatMap((p) => (p.answered ? [] : [{ replica: p.replica, reason: p.reason }]));
    if (verdict.isFounding) {
      logger.info({ answered: verdict.answered, asked: verdict.asked, oldest: verdict.oldest, unanswered }, 'no peer holds an older history of the cell: this empty directory is a founding disk');
    } else {
      isFoundingDisk = false;
      logger.warn(
        { oldest: verdict.oldest, windowMs: argv['bootstrap-window-ms'] },
        `${restoreFrom === undefined ? '--bootstrap' : '--restore'} ignored for the seat: replica ${String(verdict.oldest?.replica)} has held this cell's history for ${String(Math.round((verdict.oldest?.ageMs ?? 0) / 1000))} s, so the cell is running and this empty directory is a replacement disk (a learner until the master admits it). Take the flag out of this replica's service file`,
      );
    }
  }
  if (restoreFrom !== undefined) {
    const restored = restoreBackup({ file: resolve(restoreFrom), dataDir, cell: cell.cell });
    logger.info(
      { file: resolve(restoreFrom), slot: restored.slot, sizeBytes: restored.sizeBytes, incarnation: restored.incarnation },
      restored.isAlreadyRestored ? 'already restored from this backup: starting as usual' : 'state restored from backup',
    );
  }
  const node = new ReplicaNode({
    cell,
    id: argv.id,
    dataDir,
    isFoundingDisk,
    logger,
    timing: {
      leaseMs: argv['lease-ms'],
      heartbeatMs: argv['heartbeat-ms'],
      electionTimeoutMs: argv['election-timeout-ms'],
      tickMs: argv['tick-ms'],
      snapshotEverySlots: argv['snapshot-every'],
      digestEveryMs: argv['digest-every-ms'],
      handoverWaitMs: argv['handover-wait-ms'],
    },
    maxBatchCommands: argv['max-batch'],
    queueHoldMs: argv['queue-hold-ms'],
    ...(argv['trace-file'] === undefined ? {} : { traceFile: resolve(argv['trace-file']) }),
    clientSendBufferMaxBytes: argv['client-send-buffer-max-bytes'],
  });
  // Signals are handled from here on, also while start() is still linking to peers: a stop then
  // is as clean as any other (nothing is served yet, the databases are closed).
  let isStopping = false;
  const stop = (signal: string): void => {
    if (isStopping) return;
    isStopping = true;
    logger.info({ signal }, 'stopping');
    node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => {
    stop('SIGTERM');
  });
  process.on('SIGINT', () => {
    stop('SIGINT');
  });
  // SIGUSR2: stay up but give mastership to another replica (maintenance of this host).
  process.on('SIGUSR2', () => {
    const successor = node.stepDown();
    if (successor === null) logger.info({}, 'SIGUSR2: not master, nothing to give up');
  });
  await node.start();
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof RestoreError) {
    process.stderr.write(`paxlock-server: ${err.message}\n`);
    process.exit(2);
  }
  logger.fatal({ err }, 'replica failed');
  process.exit(1);
});
