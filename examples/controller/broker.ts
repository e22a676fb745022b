// A Kafka-style broker with an elected controller, built on paxlock's coarse-grained election
// and ephemeral files (issue 6).
//
//   pnpm exec tsx examples/controller/broker.ts <id> [--partitions 12] [--lease-ms 12000]
//
// Every broker registers an ephemeral file `brokers/<id>` holding its address (it vanishes when
// the broker's session ends: a crash is noticed one lease later) and campaigns for `controller`.
// The elected controller watches `brokers/` (child added/removed) and keeps the partition
// assignment in `assignment`: JSON with the owners and the controller's term (its sequencer).
// It writes only with compare-and-set on the file's generation, and first of all when it is
// elected, so once a new controller has written, any write by a deposed one fails
// (CAS_MISMATCH); and it refuses to write over an assignment from a newer term. When its
// leadership signal fires (session in jeopardy) it stops writing at once.
//
// One JSON line per event on stdout: {"t": ms, "broker": id, "event": ...}.

import { isPaxlockError, PaxlockClient, type Handle, type Leadership } from '@paxlock/client';
import { parseAssignment, rebalance, termNumber, type Assignment } from './assignment.ts';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0)
    throw new Error(`--${name} must be a positive integer`);
  return value;
}

const id = process.argv[2];
if (id === undefined || id.startsWith('--')) {
  console.error('usage: broker.ts <id> [--partitions N] [--lease-ms MS]');
  process.exit(64);
}
const partitionCount = option('partitions', 12);
const leaseMs = option('lease-ms', 12_000);

function log(event: string, detail: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ t: Date.now(), broker: id, event, ...detail }));
}

const client = await PaxlockClient.connect({ name: `broker:${id}`, leaseMs });
const stop = new AbortController();
const isStopping = (): boolean => stop.signal.aborted;
client.on('jeopardy', () => {
  log('jeopardy');
});
client.on('safe', () => {
  log('safe');
});
client.on('expired', () => {
  log('expired');
  stop.abort();
});

await client.mkdir('brokers', { parents: true });
// Held open for the broker's life: the ephemeral file lives as long as this handle and session.
const registration = await client.open(`brokers/${id}`, {
  create: true,
  ephemeral: true,
  contents: `127.0.0.1:${9_000 + (process.pid % 1_000)}`,
});
log('registered', { path: registration.path });

const election = client.election('controller', { lockDelayMs: 2_000 });

process.on('SIGINT', () => {
  stop.abort();
});
process.on('SIGTERM', () => {
  stop.abort();
});

/** Controller duties for one term, until the term's signal or the broker's stop fires. */
async function control(term: Leadership): Promise<void> {
  const both = AbortSignal.any([term.signal, stop.signal]);
  const brokers = await client.open('brokers', {
    directory: true,
    events: ['child-added', 'child-removed'],
  });
  const assignment: Handle = await client.open('assignment', { create: true });
  let isDirty = true;
  // (Read through calls: the compiler cannot see the event handlers change these between awaits.)
  const isAborted = (): boolean => both.aborted;
  const isDirtyNow = (): boolean => isDirty;
  let wake: (() => void) | null = null;
  const onChange = (): void => {
    isDirty = true;
    wake?.();
  };
  brokers.on('event', onChange);
  both.addEventListener('abort', onChange, { once: true });
  try {
    while (!both.aborted) {
      if (isDirty) {
        isDirty = false;
        const living = (await brokers.readdir()).map((entry) => entry.name).sort();
        const { contents, stat } = await assignment.readWithStat();
        const current = parseAssignment(contents);
        if (current !== null && termNumber(current.term) > termNumber(term.sequencer)) {
          log('deposed', { newer: current.term, mine: term.sequencer });
          return;
        }
        const partitions = rebalance(current?.partitions ?? [], living, partitionCount);
        const isSame =
          current?.term === term.sequencer && current.partitions.join() === partitions.join();
        if (!isSame && living.length > 0 && !isAborted()) {
          const next: Assignment = { v: 1, term: term.sequencer, controller: id!, partitions };
          try {
            const written = await assignment.write(JSON.stringify(next), {
              ifGeneration: stat.contentGeneration,
            });
            log('assignment', {
              generation: written.contentGeneration,
              term: term.sequencer,
              living,
              partitions,
            });
          } catch (err: unknown) {
            if (!isPaxlockError(err, 'CAS_MISMATCH')) throw err;
            log('refused', { reason: err.message, term: term.sequencer });
            isDirty = true;
          }
        }
      }
      if (!isDirtyNow() && !isAborted()) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 1_000);
        });
        wake = null;
        isDirty = true; // re-read at least every second: events are the fast path, not the only one
      }
    }
  } finally {
    brokers.off('event', onChange);
    await brokers.close().catch(() => undefined);
    await assignment.close().catch(() => undefined);
  }
}

while (!isStopping()) {
  let term: Leadership;
  try {
    term = await election.campaign(id, { signal: stop.signal });
  } catch (err: unknown) {
    if (isStopping()) break;
    log('campaign-failed', { error: (err as Error).message });
    continue;
  }
  log('controller', { term: term.sequencer });
  try {
    await control(term);
  } catch (err: unknown) {
    log('control-failed', { error: (err as Error).message });
  }
  log('not-controller', {
    term: term.sequencer,
    reason: term.signal.aborted
      ? String((term.signal.reason as Error | undefined)?.message)
      : 'stopping or deposed',
  });
  await election.resign().catch(() => undefined);
}
await registration.close().catch(() => undefined);
await client.close();
log('stopped');
process.exit(0);
