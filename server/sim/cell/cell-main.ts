// `pnpm sim --cell`: runs the cell simulation (cell-cluster.ts) over a range of seeds and prints
// one summary line with its figures, every violation with its seed and a replay command.
//
//   pnpm sim --cell                     100 seeds
//   pnpm sim --cell --seeds 2000        seeds 1..2000 (--first N shifts the range)
//   pnpm sim --cell --seed 17           one seed, with its figures
//   pnpm sim --cell --bug NAME          a planted bug the checkers must catch: the cell mode's
//                                       own (CELL_BUGS) or the core's (bugs.ts)
//   pnpm sim --cell --stop              stop at the first failing seed
//   pnpm sim --cell --strict-lock-delays
//                                       hold a lock-delay frozen behind the master's clock
//                                       against the liveness phase (see docs/simulator.md)

import { parseBugName } from '../bugs.ts';
import {
  CELL_BUGS,
  runCellSeed,
  type CellSeedOptions,
  type CellSeedResult,
} from './cell-cluster.ts';

interface CellFlags {
  first: number;
  seeds: number;
  bug: CellSeedOptions['bug'];
  stopOnFailure: boolean;
  strictLockDelays: boolean;
}

function count(text: string | undefined, flag: string): number {
  const n = Number(text);
  if (text === undefined || !Number.isSafeInteger(n) || n < 0)
    throw new Error(`${flag} takes a non-negative integer`);
  return n;
}

function parseCellFlags(argv: readonly string[]): CellFlags {
  const flags: CellFlags = {
    first: 1,
    seeds: 100,
    bug: undefined,
    stopOnFailure: false,
    strictLockDelays: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    switch (arg) {
      case '--seeds':
        flags.seeds = count(argv[++i], arg);
        break;
      case '--first':
        flags.first = count(argv[++i], arg);
        break;
      case '--seed':
        flags.first = count(argv[++i], arg);
        flags.seeds = 1;
        break;
      case '--stop':
        flags.stopOnFailure = true;
        break;
      case '--strict-lock-delays':
        flags.strictLockDelays = true;
        break;
      case '--bug': {
        const name = argv[++i];
        const bug = CELL_BUGS.find((b) => b === name) ?? parseBugName(name);
        if (bug === undefined)
          throw new Error(
            `unknown bug ${String(name)}: one of ${CELL_BUGS.join(', ')} or a core bug (server/sim/bugs.ts)`,
          );
        flags.bug = bug;
        break;
      }
      default:
        throw new Error(`unknown cell-mode flag ${arg}; see server/sim/cell/cell-main.ts`);
    }
  }
  return flags;
}

/**
 * Lets the event loop run once. Each seed calls `machine.snapshot()`, i.e. better-sqlite3's
 * serialize(), for checkpoints and shipped snapshots; the Buffer it returns owns SQLite memory
 * that Node frees only from a callback it queues on the event loop once the Buffer is collected
 * (node_buffer.cc: SetImmediateThreadsafe). A loop over seeds that never yields never runs those
 * callbacks, so every snapshot of every seed stayed in native memory (peak RSS 1.2 GB over 300
 * seeds, 6.7 GB over 2,000) though the JS heap stayed at ~10 MB. One yield per seed frees them.
 */
function freeDeferredNativeMemory(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Runs the cell mode; resolves to the exit status (non-zero on any violation). */
export async function cellMain(
  argv: readonly string[],
  out: (line: string) => void,
): Promise<number> {
  const flags = parseCellFlags(argv);
  const started = process.hrtime.bigint();
  const totals = new Map<string, number>();
  const failed: CellSeedResult[] = [];
  for (let seed = flags.first; seed < flags.first + flags.seeds; seed++) {
    const result = runCellSeed({
      seed,
      ...(flags.bug === undefined ? {} : { bug: flags.bug }),
      ...(flags.strictLockDelays ? { strictLockDelays: true } : {}),
    });
    for (const [key, value] of Object.entries(result.stats))
      totals.set(
        key,
        key.startsWith('max')
          ? Math.max(totals.get(key) ?? 0, value)
          : (totals.get(key) ?? 0) + value,
      );
    const first = result.violations[0];
    if (first !== undefined) {
      failed.push(result);
      out(`VIOLATION seed ${seed}: ${first.invariant} at ${(first.atMs / 1000).toFixed(4)}s`);
      out(`  ${first.detail}`);
      out(
        `  replay: pnpm sim --cell --seed ${seed}${flags.bug === undefined ? '' : ` --bug ${flags.bug}`}${flags.strictLockDelays ? ' --strict-lock-delays' : ''}`,
      );
      if (flags.stopOnFailure) break;
    }
    await freeDeferredNativeMemory();
  }
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const figures = [...totals]
    .map(
      ([key, value]) =>
        `${key} ${key === 'simulatedMs' ? (value / 1000).toFixed(1) + ' s' : String(value)}`,
    )
    .join(', ');
  out(
    `sim --cell: ${flags.seeds} seeds; ${figures}; violations: ${failed.length} (${(wallMs / 1000).toFixed(1)} s wall)`,
  );
  return failed.length === 0 ? 0 : 1;
}
