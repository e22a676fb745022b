// `pnpm sim`: runs the deterministic simulator over many seeds and prints one summary line, or
// replays one seed verbosely. Every failure prints its seed, the broken invariant, the tail of
// the trace and the one-line command that replays it (STYLE.md, Tests).
//
//   pnpm sim                      100 seeds
//   pnpm sim --seeds 2000         2000 seeds (seeds 1..2000; --first N shifts the range)
//   pnpm sim --seed 17            replay seed 17, printing every event and core info line
//   pnpm sim --seed 17 --debug    ... and every message and core debug line
//   pnpm sim --bug NAME           switch on a planted bug (PlantedBugs in paxos/ports.ts)
//   pnpm sim --verbose            one line per seed
//   pnpm sim --stop               stop at the first failing seed
//   pnpm sim --no-wire-checks     only the end-to-end checkers (no persist-before-send, no P2c)
//   pnpm sim --cell ...           the cell mode (cell/cell-main.ts): real machine and service

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PlantedBugs } from '../src/paxos/ports.ts';
import { BUG_NAMES, bugsFor, type BugName } from './bugs.ts';
import { cellMain } from './cell/cell-main.ts';
export { BUG_NAMES, bugsFor, type BugName } from './bugs.ts';
import { runSeed, zeroFaultCounts, type FaultCounts, type SeedResult } from './cluster.ts';

interface Flags {
  seeds: number;
  first: number;
  seed: number | null;
  verbose: boolean;
  debug: boolean;
  bug: BugName | null;
  stopOnFailure: boolean;
  wireChecks: boolean;
}

export interface Summary {
  seeds: number;
  simulatedMs: number;
  delivered: number;
  faults: FaultCounts;
  /** Replacement disks admitted through the log, over all seeds. */
  admissions: number;
  violations: SeedResult[];
  wallMs: number;
}

export function emptySummary(): Summary {
  return {
    seeds: 0,
    simulatedMs: 0,
    delivered: 0,
    faults: zeroFaultCounts(),
    admissions: 0,
    violations: [],
    wallMs: 0,
  };
}

export function addResult(summary: Summary, result: SeedResult): void {
  summary.seeds++;
  summary.simulatedMs += result.simulatedMs;
  summary.delivered += result.delivered;
  for (const key of Object.keys(summary.faults) as (keyof FaultCounts)[])
    summary.faults[key] += result.faults[key];
  summary.admissions += result.stats.admissions;
  if (result.violation !== null) summary.violations.push(result);
}

export function formatSummary(summary: Summary): string {
  const f = summary.faults;
  return (
    `sim: ${summary.seeds} seeds, ${(summary.simulatedMs / 1000).toFixed(1)} s simulated, ` +
    `${summary.delivered} messages delivered; faults: drop ${f.drop}, duplicate ${f.duplicate}, ` +
    `reorder/delay ${f.delay}, partition ${f.partition}, one-way partition ${f.oneWayPartition}, ` +
    `crash ${f.crash}, restart ${f.restart}, clock drift ${f.clockDrift}, resign ${f.resign}, ` +
    `disk loss ${f.diskLoss} (admitted ${summary.admissions}); ` +
    `violations: ${summary.violations.length}` +
    (summary.wallMs > 0 ? ` (${(summary.wallMs / 1000).toFixed(1)} s wall)` : '')
  );
}

export function replayCommand(seed: number, bug: BugName | null): string {
  return `pnpm sim --seed ${seed}${bug === null ? '' : ` --bug ${bug}`}`;
}

export function formatFailure(result: SeedResult, bug: BugName | null): string {
  const v = result.violation;
  if (v === null) return '';
  return [
    `VIOLATION seed ${result.seed}: ${v.invariant} at ${(v.at / 1000).toFixed(4)}s`,
    `  ${v.detail}`,
    `  world: ${result.plan}`,
    '  trace tail (recent events and core log lines):',
    ...result.traceTail.map((l) => `    ${l}`),
    `  replay: ${replayCommand(result.seed, bug)}`,
  ].join('\n');
}

function parseFlags(argv: readonly string[]): Flags {
  const flags: Flags = {
    seeds: 100,
    first: 1,
    seed: null,
    verbose: false,
    debug: false,
    bug: null,
    stopOnFailure: false,
    wireChecks: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--seeds':
        flags.seeds = positiveInt(value(), '--seeds');
        break;
      case '--first':
        flags.first = positiveInt(value(), '--first');
        break;
      case '--seed':
        flags.seed = positiveInt(value(), '--seed');
        break;
      case '--verbose':
        flags.verbose = true;
        break;
      case '--debug':
        flags.debug = true;
        break;
      case '--stop':
        flags.stopOnFailure = true;
        break;
      case '--no-wire-checks':
        flags.wireChecks = false;
        break;
      case '--bug': {
        const name = value();
        const bug = BUG_NAMES.find((b) => b === name);
        if (bug === undefined)
          throw new Error(`unknown bug ${name}; one of ${BUG_NAMES.join(', ')}`);
        flags.bug = bug;
        break;
      }
      default:
        throw new Error(`unknown flag ${arg}; see the header of server/sim/main.ts`);
    }
  }
  return flags;
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${flag} takes a non-negative integer, not ${text}`);
  return n;
}

async function main(): Promise<number> {
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const argv = process.argv.slice(2);
  if (argv[0] === '--cell') return await cellMain(argv.slice(1), out);
  const flags = parseFlags(argv);
  const started = process.hrtime.bigint();
  const summary = emptySummary();

  if (flags.seed !== null) {
    out(
      `replaying seed ${flags.seed}${flags.bug === null ? '' : ` with planted bug ${flags.bug}`}`,
    );
    const result = runSeed({
      seed: flags.seed,
      ...withBugs(flags.bug),
      echo: out,
      echoDebug: flags.debug,
      wireChecks: flags.wireChecks,
    });
    addResult(summary, result);
    out(
      `trace hash ${result.traceHash.toString(16).padStart(8, '0')}, ${result.stats.events} events, ${result.stats.chosenSlots} slots chosen, ${result.stats.writesAcked} writes acknowledged, ${result.stats.readsServed} lease reads`,
    );
    if (result.violation !== null) out(formatFailure(result, flags.bug));
  } else {
    if (flags.verbose) {
      out('paxlock deterministic simulator');
      out(
        '  A five-replica Multi-Paxos cell in virtual time: the real core, driven through runtime/turn.ts,',
      );
      out(
        '  on lossy, duplicating and reordering links, with symmetric, partial and one-way partitions,',
      );
      out(
        '  crash-restarts (also between persist and send), drifting clocks, graceful resignations of',
      );
      out(
        '  the master and lost disks (in some seeds), and clients writing and reading under the master lease.',
      );
      out('  After every step it checks agreement, durable quorums,');
      out(
        '  persist-before-send, P2c re-proposal, applied-prefix, exactly-once, a single lease holder,',
      );
      out(
        '  acknowledged writes and linearizable reads; after the heal, that a master emerges in time.',
      );
      out('  Replay any seed with: pnpm sim --seed N');
      out('');
      if (flags.bug !== null) out(`planted bug switched on: ${flags.bug}`);
    }
    for (let seed = flags.first; seed < flags.first + flags.seeds; seed++) {
      const result = runSeed({ seed, ...withBugs(flags.bug), wireChecks: flags.wireChecks });
      addResult(summary, result);
      if (flags.verbose) {
        const s = result.stats;
        const f = result.faults;
        const verdict =
          result.violation === null ? 'ok' : `VIOLATION ${result.violation.invariant}`;
        out(
          `seed ${String(seed).padStart(5)}  ${verdict.padEnd(4)} ${(result.simulatedMs / 1000).toFixed(1).padStart(5)} s simulated, ` +
            `${String(result.delivered).padStart(6)} messages, ${String(s.chosenSlots).padStart(4)} slots chosen, ` +
            `${String(s.writesAcked).padStart(4)} writes acked, ${String(s.readsServed).padStart(4)} lease reads, ` +
            `master ${s.masterAfterHealMs === null ? '-' : `${s.masterAfterHealMs.toFixed(0)} ms`} after the heal`,
        );
        out(
          `             faults: ${f.drop} dropped, ${f.duplicate} duplicated, ${f.delay} delayed, ${f.partition} partitions, ` +
            `${f.oneWayPartition} one-way, ${f.crash} crashes, ${f.clockDrift} clock-rate changes, ${f.resign} resignations, ` +
            `${f.diskLoss} disk losses (${s.admissions} admitted, ${s.learnersAtEnd} learners at the end)`,
        );
        out(`             ${result.plan}`);
      }
      if (result.violation !== null) {
        out(formatFailure(result, flags.bug));
        if (flags.stopOnFailure) break;
      }
    }
  }
  summary.wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  out(formatSummary(summary));
  return summary.violations.length === 0 ? 0 : 1;
}

function withBugs(bug: BugName | null): { bugs?: PlantedBugs } {
  const bugs = bugsFor(bug);
  return bugs === undefined ? {} : { bugs };
}

// Run only as a script, so tests can import the helpers above.
if (
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(resolve(process.argv[1])).href
) {
  void main().then((status) => {
    process.exitCode = status;
  });
}
