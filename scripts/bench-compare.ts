// `pnpm bench:compare`: runs paxlock's cell benchmark (scripts/bench.ts) and the same workloads
// against five etcd 3.4 members (scripts/bench-etcd.ts) back to back, in one go, with the same
// flags, and prints a table and a JSON line of paxlock/etcd ratios per workload. Absolute figures
// drift by up to 30 % between runs on this shared 2-core machine; the ratio of two runs made
// minutes apart is the figure to quote (docs/benchmarks.md). Needs etcd: see ETCD_INSTALL_HINT.
//
// Flags: --seconds, --only, --sessions, --hold, --multiplex (passed to both), --etcd-target all|leader,
// --etcd-first (run etcd before paxlock). Each child also gets --cpu.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdVersionOrExit } from './bench-etcd.ts';
import { WORKLOADS, benchOptions, flag } from './bench-workloads.ts';

type Line = Record<string, unknown>;
type System = 'paxlock' | 'etcd';

/** The load average and, where the kernel has PSI, the share of the last minute in which some runnable task waited for a CPU. */
function machineLoad(): { loadavg: number[]; cpuPressureSomeAvg60: number | null } {
  let pressure: number | null = null;
  try {
    const match = /some avg10=\S+ avg60=(\S+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    if (match !== null) pressure = Number(match[1]);
  } catch {
    // no PSI on this kernel
  }
  return {
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    cpuPressureSomeAvg60: pressure,
  };
}

const scripts = resolve(fileURLToPath(import.meta.url), '..');
let running: number | null = null;

/** Runs one benchmark script as a child process; echoes and collects its JSON lines. */
async function runBench(system: System, args: readonly string[]): Promise<Line[]> {
  const script = join(scripts, system === 'paxlock' ? 'bench.ts' : 'bench-etcd.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args, '--cpu'], {
    cwd: resolve(scripts, '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  running = child.pid ?? null;
  const lines: Line[] = [];
  let buffered = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      console.log(`${system.padEnd(7)} ${text}`);
      try {
        lines.push(JSON.parse(text) as Line);
      } catch {
        // not a JSON line; echoed only
      }
    }
  });
  const code = await new Promise<number | null>((resolveExit) =>
    child.once('exit', (c) => resolveExit(c)),
  );
  running = null;
  if (code !== 0) throw new Error(`${system} benchmark exited with ${code}`);
  return lines;
}

const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);
const ratio = (a: unknown, b: unknown): number | null => {
  const r = num(a) / num(b);
  return Number.isFinite(r) ? Math.round(r * 100) / 100 : null;
};
const fmt = (v: unknown): string => {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : String(v);
};
const fmtRatio = (r: number | null): string => (r === null ? '–' : `${r.toFixed(2)}×`);

async function main(): Promise<void> {
  const version = etcdVersionOrExit();
  const options = benchOptions();
  const args = [
    '--seconds',
    String(options.seconds),
    '--warmup',
    String(options.warmupSeconds),
    '--sessions',
    String(options.sessionCount),
    '--hold',
    String(options.holdSeconds),
  ];
  if (options.only.length > 0) args.push('--only', options.only.join(','));
  if (options.multiplex) args.push('--multiplex');
  const etcdArgs = [...args, '--etcd-target', flag('etcd-target', 'all')];

  const onSignal = (signal: NodeJS.Signals): void => {
    // The child stops its own cell or cluster on SIGINT; wait for it to do so.
    if (running !== null) process.kill(running, 'SIGINT');
    console.error(`bench-compare: ${signal}`);
    setTimeout(() => process.exit(130), 10_000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = new Date();
  const load: Record<string, ReturnType<typeof machineLoad>> = { start: machineLoad() };
  const order: System[] = process.argv.includes('--etcd-first')
    ? ['etcd', 'paxlock']
    : ['paxlock', 'etcd'];
  const results: Partial<Record<System, Line[]>> = {};
  for (const system of order) {
    results[system] = await runBench(system, system === 'etcd' ? etcdArgs : args);
    load[`after-${system}`] = machineLoad();
  }
  const byWorkload = (system: System, name: string): Line | undefined =>
    results[system]?.find((l) => l['workload'] === name);

  const header = [
    'workload',
    'paxlock /s',
    'etcd /s',
    'ratio',
    'p50 pax',
    'p50 etcd',
    'ratio',
    'p99 pax',
    'p99 etcd',
    'ratio',
    'srv CPU pax',
    'srv CPU etcd',
  ];
  const rows: string[][] = [];
  const ratios: Record<string, Record<string, number | null>> = {};
  for (const name of WORKLOADS) {
    const p = byWorkload('paxlock', name);
    const e = byWorkload('etcd', name);
    if (p === undefined || e === undefined) continue;
    if (name === 'sessions') {
      ratios[name] = {
        serverCpu: ratio(p['serverCpuPercentOfOneCore'], e['serverCpuPercentOfOneCore']),
        masterCpu: ratio(p['masterCpuPercentOfOneCore'], e['masterCpuPercentOfOneCore']),
        expiriesPaxlock: num(p['expiries']),
        expiriesEtcd: num(e['expiries']),
      };
      continue;
    }
    ratios[name] = {
      throughput: ratio(p['opsPerSecond'], e['opsPerSecond']),
      p50: ratio(p['latencyMsP50'], e['latencyMsP50']),
      p99: ratio(p['latencyMsP99'], e['latencyMsP99']),
      serverCpu: ratio(p['serverCpuPercentOfOneCore'], e['serverCpuPercentOfOneCore']),
      clientCpu: ratio(p['clientCpuPercentOfOneCore'], e['clientCpuPercentOfOneCore']),
    };
    const r = ratios[name];
    rows.push([
      name,
      fmt(p['opsPerSecond']),
      fmt(e['opsPerSecond']),
      fmtRatio(r['throughput'] ?? null),
      fmt(p['latencyMsP50']),
      fmt(e['latencyMsP50']),
      fmtRatio(r['p50'] ?? null),
      fmt(p['latencyMsP99']),
      fmt(e['latencyMsP99']),
      fmtRatio(r['p99'] ?? null),
      `${fmt(p['serverCpuPercentOfOneCore'])} %`,
      `${fmt(e['serverCpuPercentOfOneCore'])} %`,
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const printRow = (row: readonly string[]): void =>
    console.log(
      row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '),
    );
  console.log('');
  console.log(
    `paxlock / etcd ${version} (ratio > 1: paxlock has more throughput or higher latency); latencies in ms; server CPU: all five processes, % of one core`,
  );
  printRow(header);
  for (const row of rows) printRow(row);
  const pst = byWorkload('paxlock', 'stale-reads');
  const est = byWorkload('etcd', 'stale-reads');
  if (pst !== undefined && est !== undefined) {
    console.log(
      `stale-reads: answered by followers ${fmt(pst['followerShare'])} (paxlock, bound ${fmt(pst['maxStatedStalenessMs'])} ms at most stated) vs ${fmt(est['followerShare'])} (etcd serializable, no bound stated)`,
    );
  }
  const ps = byWorkload('paxlock', 'sessions');
  const es = byWorkload('etcd', 'sessions');
  if (ps !== undefined && es !== undefined) {
    console.log(
      `sessions (${fmt(ps['sessions'])} held ${fmt(ps['heldSeconds'])} s): server CPU ${fmt(ps['serverCpuPercentOfMachine'])} % vs ${fmt(es['serverCpuPercentOfMachine'])} % of the machine ` +
        `(${fmtRatio(ratios['sessions']?.['serverCpu'] ?? null)}), master/leader ${fmt(ps['masterCpuPercentOfOneCore'])} % vs ${fmt(es['masterCpuPercentOfOneCore'])} % of a core, ` +
        `expiries ${fmt(ps['expiries'])} vs ${fmt(es['expiries'])}, live at end ${fmt(ps['sessionsLiveAtEnd'])} vs ${fmt(es['sessionsLiveAtEnd'])}`,
    );
  }
  console.log(
    `load average (1, 5, 15 min): ${Object.entries(load)
      .map(
        ([k, v]) =>
          `${k} ${v.loadavg.join(' ')}` +
          (v.cpuPressureSomeAvg60 === null ? '' : ` (CPU pressure ${v.cpuPressureSomeAvg60} %)`),
      )
      .join('; ')}`,
  );
  console.log(
    JSON.stringify({
      comparison: 'paxlock/etcd',
      etcd: version,
      started: started.toISOString(),
      order,
      args: etcdArgs,
      load,
      ratios,
    }),
  );
}

await main();
