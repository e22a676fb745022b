// A master that answers BUSY (it holds its limit of unanswered requests) is still the master:
// the client backs off and asks it again on the same connection, without a new search for the
// master, and the call succeeds once the master takes it. A fake replica on a real socket.
import { WebSocketServer } from 'ws';
import { afterEach, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '@paxlock/shared';
import { PaxlockClient } from '../src/index.ts';
import { freeBasePort } from '../../test/ports.ts';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      async (s) =>
        new Promise<void>((resolve) => {
          for (const client of s.clients) client.terminate();
          s.close(() => {
            resolve();
          });
        }),
    ),
  );
});

it('retries a BUSY answer with backoff on the same connection until the master takes the request', async () => {
  const port = (await freeBasePort(1)) + 1;
  const address = `127.0.0.1:${String(port)}`;
  const epoch = { round: 1, replica: 1 };
  let connections = 0;
  let queries = 0;
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  servers.push(server);
  await new Promise<void>((resolve) => server.once('listening', resolve));
  server.on('connection', (socket) => {
    connections++;
    socket.on('message', (data: Buffer) => {
      const decoded = decodeFrame(data);
      if (!decoded.ok) return;
      const frame = decoded.value as { type: string; id: number };
      if (frame.type === 'status') {
        const status = { id: 1, cell: 'local', role: 'master', epoch, masterId: 1, master: address, commit: 1, applied: 1, leaseRemainingMs: 1_000, isVoter: true, diskId: 0, digest: null, digestSlot: 0 };
        socket.send(encodeFrame({ type: 'status', id: frame.id, status }));
      } else if (frame.type === 'query') {
        queries++;
        socket.send(
          encodeFrame(
            queries <= 2
              ? { type: 'error', id: frame.id, code: 'BUSY', message: 'busy: 2 requests in flight at the master; retry shortly' }
              : { type: 'query-result', id: frame.id, epoch, slot: 1, result: { type: 'sessions', sessions: [] } },
          ),
        );
      }
    });
  });

  const client = await PaxlockClient.connect({ cell: [address], name: 'busy', session: false });
  const opened = connections; // the search for the master and the connection to it
  expect(await client.listSessions()).toEqual([]);
  expect(queries).toBe(3);
  expect(connections).toBe(opened); // no reconnection, no new search
  await client.close();
});
