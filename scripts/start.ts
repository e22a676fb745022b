// `pnpm start`: runs a five-replica cell on 127.0.0.1 with data under .data/ (git-ignored), prints
// which replica is master and how to talk to it, and stops all five cleanly on Ctrl-C or SIGTERM.
// Running it again reuses the data: what was written is still there.
//
// `pnpm start --restore FILE` starts the cell from a backup (`pnpm paxlock backup FILE`) instead:
// every replica installs FILE as its state (paxlock-server --restore), so the data directory must
// not hold a cell yet (move it away, or set PAXLOCK_DATA to a new one).

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { findMaster } from '../client/src/client.ts';
import { LocalCell } from './cell.ts';

const dir = resolve(process.env['PAXLOCK_DATA'] ?? '.data');
const restoreFlag = process.argv.indexOf('--restore');
const restoreFrom = restoreFlag >= 0 ? process.argv[restoreFlag + 1] : undefined;
if (restoreFlag >= 0 && restoreFrom === undefined) {
  console.error('paxlock: --restore needs the backup file: pnpm start --restore FILE');
  process.exit(64);
}
if (restoreFrom !== undefined && existsSync(join(dir, 'r1', 'paxos.db'))) {
  console.error(`paxlock: ${dir} already holds a cell; restore into a new data directory (PAXLOCK_DATA=DIR pnpm start --restore FILE) or move ${dir} away`);
  process.exit(2);
}
const cell = new LocalCell({ dir, basePort: 7100, ...(restoreFrom === undefined ? {} : { serverArgs: ['--restore', resolve(restoreFrom)] }) });
const started = Date.now();
cell.startAll();
console.log(`paxlock: starting a five-replica cell "${cell.config.cell}" (data in ${dir}, logs in ${dir}/r<id>.log)`);
if (restoreFrom !== undefined) console.log(`paxlock: every replica restores its state from ${resolve(restoreFrom)}`);
for (const r of cell.config.replicas) {
  console.log(`  replica ${r.id}: pid ${cell.pid(r.id)}, clients at ${r.client}, peers at ${r.peer}`);
}

let isStopping = false;
async function stop(signal: string): Promise<void> {
  if (isStopping) return;
  isStopping = true;
  console.log(`\npaxlock: ${signal}, stopping the five replicas`);
  await cell.stopAll();
  console.log('paxlock: stopped');
  process.exit(0);
}
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));

for (const r of cell.config.replicas) {
  cell.replicas.get(r.id)?.process.on('exit', (code, sig) => {
    if (isStopping) return;
    console.log(`paxlock: replica ${r.id} exited (${sig ?? `code ${code}`}); see ${dir}/r${r.id}.log`);
    if (cell.config.replicas.every((x) => !cell.isRunning(x.id))) {
      console.error('paxlock: every replica has exited');
      process.exit(1);
    }
  });
}

try {
  const { address, status } = await findMaster(cell.clientAddresses, 60_000);
  console.log(
    `paxlock: replica ${status.id} is master (epoch ${status.epoch.round}.${status.epoch.replica}) after ${Date.now() - started} ms, at ${address}`,
  );
  console.log('paxlock: the cell configuration is', cell.configPath);
  console.log(`paxlock: try \`pnpm paxlock status\`; metrics at http://${address}/metrics (every replica has them)`);
  console.log('paxlock: Ctrl-C stops the cell.');
} catch (err: unknown) {
  console.error(`paxlock: ${(err as Error).message}`);
  await stop('no master');
}
