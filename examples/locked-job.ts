// A job that must never run twice at once: it runs under a paxlock lock.
//
//   pnpm exec tsx examples/locked-job.ts [job-name] [steps]
//
// Start it in two terminals at once: the second waits until the first is done. The job works in
// steps and checks its lock's signal between them: if the session goes into jeopardy (the cell is
// unreachable for longer than the lease) the signal fires and the job stops at once, because
// another runner may soon be granted the lock. Each step hands the lock's sequencer to the
// "resource" it changes (here a file in the cell, written only if the sequencer is still
// current), which is how a resource server fences off a holder that lost its lock.

import { PaxlockClient } from '@paxlock/client';

const job = process.argv[2] ?? 'nightly-report';
const steps = Number(process.argv[3] ?? '5');

const log = (line: string): void => {
  console.log(`${new Date().toISOString()} [${process.pid}] ${line}`);
};

const client = await PaxlockClient.connect({ name: `locked-job:${process.pid}` });
try {
  await client.mkdir('jobs', { parents: true });
  const result = await client.withLock(
    `jobs/${job}.lock`,
    async (signal, lock) => {
      log(`running ${job} holding ${lock.sequencer}`);
      for (let step = 1; step <= steps; step++) {
        signal.throwIfAborted();
        // The resource checks the sequencer before accepting the change.
        if (!(await client.checkSequencer(lock.sequencer))) throw new Error('lock lost');
        await client.writeFile(`jobs/${job}.progress`, `step ${step}/${steps} by ${process.pid}`);
        log(`step ${step}/${steps}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      return `${job} done`;
    },
    { lockDelayMs: 5_000 },
  );
  log(result);
} finally {
  await client.close();
}
