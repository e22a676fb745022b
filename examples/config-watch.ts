// Watching a small config file for changes.
//
//   pnpm exec tsx examples/config-watch.ts [path]        # default: config/app.json
//   pnpm paxlock put config/app.json '{"color":"blue"}'  # in another terminal
//
// The watcher reads the file, then waits for contents-modified events on its handle. When the
// library cannot vouch that no event was lost (a master fail-over, or a gap in the session's
// event numbers) it delivers a `reread` event, and the watcher simply reads the file again: no
// change is ever missed, at worst one is seen twice.

import { PaxlockClient } from '@paxlock/client';

const path = process.argv[2] ?? 'config/app.json';
const client = await PaxlockClient.connect({ name: `config-watch:${process.pid}` });
await client
  .mkdir(path.split('/').slice(0, -1).join('/') || '/', { parents: true })
  .catch(() => undefined);
const handle = await client.open(path, { create: true, events: ['contents-modified'] });

const stop = new AbortController();
process.on('SIGINT', () => {
  stop.abort();
});
process.on('SIGTERM', () => {
  stop.abort();
});

let lastGeneration = 0;
const show = async (): Promise<void> => {
  const { contents, stat } = await handle.readWithStat();
  if (stat.contentGeneration === lastGeneration) return;
  lastGeneration = stat.contentGeneration;
  console.log(
    `config ${handle.path} generation ${stat.contentGeneration}: ${contents.toString('utf8')}`,
  );
};

await show();
for await (const event of handle.events({ signal: stop.signal })) {
  if (event.type === 'contents-modified' || event.type === 'reread') await show();
  if (event.type === 'handle-invalid') {
    console.log(`config ${handle.path} was deleted`);
    break;
  }
}
await client.close();
