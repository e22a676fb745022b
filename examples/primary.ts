// A service with one primary among N processes: coarse-grained leader election on paxlock.
//
//   pnpm exec tsx examples/primary.ts <name>      # run three of these, with different names
//
// Each process campaigns; the one elected serves as primary (here: it prints a heartbeat with
// its term's sequencer, the fencing token it would hand to anything it writes to). When its
// leadership signal fires (its session is in jeopardy, so another process may be elected
// soon), it stops serving at once and campaigns again. On Ctrl-C it resigns, so a standby takes
// over without waiting for the session to expire.

import { PaxlockClient } from '@paxlock/client';

const name = process.argv[2] ?? `p${process.pid}`;
const client = await PaxlockClient.connect({ name: `primary:${name}` });
const election = client.election('services/primary', { lockDelayMs: 2_000 });
await client.mkdir('services', { parents: true });

const stop = new AbortController();
const isStopping = (): boolean => stop.signal.aborted;
const shutdown = async (): Promise<void> => {
  if (isStopping()) return;
  stop.abort();
  await election.resign().catch(() => undefined);
  await client.close();
  process.exit(0);
};
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());

while (!isStopping()) {
  console.log(`[${name}] standby: campaigning`);
  let term;
  try {
    term = await election.campaign(name, { signal: stop.signal });
  } catch (err: unknown) {
    if (isStopping()) break;
    console.log(`[${name}] campaign failed: ${(err as Error).message}`);
    if (client.state === 'expired') break;
    continue;
  }
  console.log(`[${name}] primary, term ${term.sequencer}`);
  while (!term.signal.aborted && !isStopping()) {
    console.log(`[${name}] serving as primary (${term.sequencer})`);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 1_000);
      term.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }
  if (!isStopping()) {
    console.log(
      `[${name}] lost the primary role (${String((term.signal.reason as Error | undefined)?.message)})`,
    );
    await election.resign().catch(() => undefined);
  }
}
if (client.state === 'expired') {
  console.log(`[${name}] session expired; exiting`);
  process.exit(1);
}
