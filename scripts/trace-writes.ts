// `pnpm bench:trace`: where the time of one write goes. Starts its own five-replica cell (real
// processes, real fsync) with `--trace-file`, writes one small file N times in sequence from one
// client, and takes each write apart using the stamps every replica recorded (runtime/trace.ts;
// process.hrtime, the monotonic clock all processes on this machine share). Prints one JSON line
// per stage with p50/p90 in ms, and the client's own p50/p99. Not a test: nothing is asserted.
//
//   pnpm bench:trace [--writes N] [--warmup N]   (default 500 traced after 500 untraced)

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PaxlockClient, findMaster } from '../client/src/index.ts';
import { percentile } from './bench-workloads.ts';
import { LocalCell } from './cell.ts';

interface Mark {
  readonly at: bigint;
  readonly replica: number;
  readonly stage: string;
  readonly detail: string;
}

function readMarks(paths: readonly string[]): Mark[] {
  const marks: Mark[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      continue; // a replica that wrote nothing
    }
    for (const line of text.split('\n')) {
      const [at, replica, stage, ...detail] = line.split(' ');
      if (at === undefined || replica === undefined || stage === undefined || at === '') continue;
      marks.push({ at: BigInt(at), replica: Number(replica), stage, detail: detail.join(' ') });
    }
  }
  return marks.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}

const ms = (from: bigint, to: bigint): number => Number(to - from) / 1e6;


/**
 * The stages of one write, from the marks inside its client window [sent, received]. Returns
 * null when the window is not a plain write (a heartbeat-only window, an election).
 */
function stagesOf(marks: readonly Mark[], sent: bigint, received: bigint, master: number): Record<string, number> | null {
  const inWindow = marks.filter((m) => m.at >= sent && m.at <= received);
  const at = (pred: (m: Mark) => boolean, from = 0): Mark | undefined => inWindow.slice(from).find(pred);
  const arrived = at((m) => m.replica === master && m.stage === 'client-frame' && m.detail === 'command');
  const acceptsOut = at((m) => m.replica === master && m.stage === 'peers-out' && m.detail.includes('accept') && !m.detail.includes('accepted'));
  const ownPersist = at((m) => m.replica === master && m.stage === 'persist-start' && !m.detail.startsWith('accepted 0'));
  const ownPersisted = ownPersist === undefined ? undefined : at((m) => m.replica === master && m.stage === 'persist-end' && m.at >= ownPersist.at);
  // Votes after this write's Accepts left (the previous write's slowest voters may answer inside
  // this window; the marks do not name the slot).
  const votes = inWindow.filter((m) => m.replica === master && m.stage === 'peer-in' && m.detail.startsWith('accepted ') && acceptsOut !== undefined && m.at >= acceptsOut.at);
  const quorum = votes[1]; // the master's own vote and two followers' make three of five
  const applied = at((m) => m.replica === master && m.stage === 'apply-start' && quorum !== undefined && m.at >= quorum.at);
  const appliedEnd = applied === undefined ? undefined : at((m) => m.replica === master && m.stage === 'apply-end' && m.at >= applied.at);
  const replied = appliedEnd === undefined ? undefined : at((m) => m.replica === master && m.stage === 'replies-out' && m.at >= appliedEnd.at);
  if (arrived === undefined || acceptsOut === undefined || ownPersist === undefined || ownPersisted === undefined || quorum === undefined || applied === undefined || appliedEnd === undefined || replied === undefined) return null;
  // The followers whose votes made the quorum: their receipt of the Accept and their fsync.
  const voters = votes.slice(0, 2).map((v) => Number(v.detail.split(' ')[2]));
  const followerStages = voters.map((f) => {
    const got = at((m) => m.replica === f && m.stage === 'peer-in' && m.detail.startsWith('accept from'));
    const start = at((m) => m.replica === f && m.stage === 'persist-start' && !m.detail.startsWith('accepted 0'));
    const end = start === undefined ? undefined : at((m) => m.replica === f && m.stage === 'persist-end' && m.at >= start.at);
    const out = end === undefined ? undefined : at((m) => m.replica === f && m.stage === 'peers-out' && m.detail.includes('accepted') && m.at >= end.at);
    return { got, start, end, out };
  });
  const second = followerStages[1];
  // Inside "quorum to apply": the wait for the turn, and the chosen mark's (unsynced) commit.
  const quorumTurn = at((m) => m.replica === master && m.stage === 'turn' && m.at >= quorum.at);
  const markStart = quorumTurn === undefined ? undefined : at((m) => m.replica === master && m.stage === 'persist-start' && m.at >= quorumTurn.at);
  const markEnd = markStart === undefined ? undefined : at((m) => m.replica === master && m.stage === 'persist-end' && m.at >= markStart.at);
  if (second?.got === undefined || second.start === undefined || second.end === undefined || second.out === undefined) return null;
  return {
    'client to master (send, wake, decode)': ms(sent, arrived.at),
    'master: request to Accepts written': ms(arrived.at, acceptsOut.at),
    "master's own fsync (paxos.db)": ms(ownPersist.at, ownPersisted.at),
    'Accepts written to 2nd voter receiving': ms(acceptsOut.at, second.got.at),
    "2nd voter: receipt to persist start": ms(second.got.at, second.start.at),
    "2nd voter's fsync": ms(second.start.at, second.end.at),
    "2nd voter: Accepted written to master's receipt": ms(second.out.at, quorum.at),
    'master: quorum to apply (turn, chosen mark)': ms(quorum.at, applied.at),
    '  of which: quorum to its turn': quorumTurn === undefined ? NaN : ms(quorum.at, quorumTurn.at),
    '  of which: chosen mark commit': markStart === undefined || markEnd === undefined || markEnd.at > applied.at ? 0 : ms(markStart.at, markEnd.at),
    'master: apply to state.db': ms(applied.at, appliedEnd.at),
    'master: applied to reply written': ms(appliedEnd.at, replied.at),
    'reply written to client receipt': ms(replied.at, received),
    'total as the client saw it': ms(sent, received),
  };
}

async function main(): Promise<void> {
  const flag = process.argv.indexOf('--writes');
  const writes = flag >= 0 ? Number(process.argv[flag + 1]) : 500;
  if (!Number.isSafeInteger(writes) || writes < 1) throw new Error('--writes N: a positive integer');
  const warmupFlag = process.argv.indexOf('--warmup');
  const warmup = warmupFlag >= 0 ? Number(process.argv[warmupFlag + 1]) : 500;
  if (!Number.isSafeInteger(warmup) || warmup < 0) throw new Error('--warmup N: a whole number of writes');
  const dir = mkdtempSync(join(tmpdir(), 'paxlock-trace-'));
  const tracePath = (id: number): string => join(dir, `trace-r${String(id)}.txt`);
  const cell = new LocalCell({
    dir,
    basePort: 26_000 + (process.pid % 40) * 100,
    logLevel: 'warn',
    perReplicaArgs: (id) => ['--trace-file', tracePath(id)],
  });
  cell.startAll();
  const windows: { sent: bigint; received: bigint }[] = [];
  let master: number;
  try {
    master = (await findMaster(cell.clientAddresses, 60_000)).status.id;
    const client = await PaxlockClient.connect({ cell: cell.clientAddresses, name: 'trace-writes' });
    const handle = await client.open('trace-writes', { create: true, contents: '' });
    const payload = Buffer.alloc(64, 1);
    for (let i = 0; i < warmup; i++) await handle.write(payload); // warm-up, not traced
    for (let i = 0; i < writes; i++) {
      const sent = process.hrtime.bigint();
      await handle.write(payload);
      windows.push({ sent, received: process.hrtime.bigint() });
    }
    await handle.close();
    await client.close();
  } finally {
    await cell.stopAll();
  }
  const marks = readMarks(cell.config.replicas.map((r) => tracePath(r.id)));
  rmSync(dir, { recursive: true, force: true });
  const perStage = new Map<string, number[]>();
  const decodedStages: Record<string, number>[] = [];
  let decoded = 0;
  for (const { sent, received } of windows) {
    const stages = stagesOf(marks, sent, received, master);
    if (stages === null) continue;
    decoded++;
    decodedStages.push(stages);
    for (const [stage, value] of Object.entries(stages)) {
      const list = perStage.get(stage) ?? [];
      list.push(value);
      perStage.set(stage, list);
    }
  }
  console.log(JSON.stringify({ writes, warmup, decoded, master }));
  // The slowest 1 % of writes (by the client's total), and what each stage took in them on average:
  // which stage the tail is made of.
  const totalStage = [...perStage.keys()].at(-1);
  const totals = decodedStages.map((s) => (totalStage === undefined ? 0 : (s[totalStage] ?? 0))).sort((a, b) => a - b);
  const tailFrom = percentile(totals, 99);
  const tail = decodedStages.filter((s) => totalStage !== undefined && (s[totalStage] ?? 0) >= tailFrom);
  for (const [stage, values] of perStage) {
    const sorted = [...values].sort((a, b) => a - b);
    const tailMean = tail.length === 0 ? NaN : tail.reduce((sum, s) => sum + (s[stage] ?? 0), 0) / tail.length;
    console.log(
      JSON.stringify({
        stage,
        p50: +percentile(sorted, 50).toFixed(3),
        p90: +percentile(sorted, 90).toFixed(3),
        p99: +percentile(sorted, 99).toFixed(3),
        meanInSlowest1Pct: +tailMean.toFixed(3),
      }),
    );
  }
}

await main();
