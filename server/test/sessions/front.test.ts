// The client front end cuts off a connection that stopped reading once what waits to be sent to
// it passes the limit, and keeps serving the others: a stuck reader cannot grow the replica's
// memory without bound. Real sockets on 127.0.0.1.
import { get, type ClientRequest } from 'node:http';
import { Readable } from 'node:stream';
import pino from 'pino';
import { WebSocket } from 'ws';
import { afterEach, expect, it } from 'vitest';
import { encodeFrame, decodeFrame, type ClientFrame } from '@paxlock/shared';
import { Front, type FrontConnection } from '../../src/sessions/front.ts';
import { freeBasePort } from '../../../test/ports.ts';

const fronts: Front[] = [];
afterEach(async () => {
  await Promise.all(fronts.splice(0).map(async (f) => f.close()));
});

async function open(address: string): Promise<WebSocket> {
  const socket = new WebSocket(`ws://${address}/`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => {
      resolve();
    });
    socket.once('error', reject);
  });
  return socket;
}

it('cuts off a client that stopped reading once its unsent frames pass the limit, and serves the others', async () => {
  const address = `127.0.0.1:${String((await freeBasePort(1)) + 1)}`;
  const closed: number[] = [];
  let onClosed = (): void => undefined;
  const cutOff = new Promise<void>((resolve) => {
    onClosed = resolve;
  });
  let frames = 0;
  const front = new Front({
    address,
    logger: pino({ level: 'silent' }),
    sendBufferMaxBytes: 1024 * 1024,
    handler: {
      onFrame: (connection: FrontConnection, frame: ClientFrame) => {
        frames++;
        const big = { type: 'error', id: frame.type === 'status' ? frame.id : 0, code: 'BAD_REQUEST', message: 'x'.repeat(200_000) } as const;
        // A burst of large replies, as a client that floods reads and never reads the answers gets.
        const count = frame.type === 'status' && frame.id === 1 ? 400 : 1;
        for (let i = 0; i < count && connection.isOpen; i++) connection.send(big);
      },
      onClose: (connection) => {
        closed.push(connection.id);
        onClosed();
      },
    },
  });
  fronts.push(front);
  await front.start();

  const stuck = await open(address);
  // Stop reading: the kernel buffers fill, then the front end's own queue grows past 1 MiB.
  (stuck as unknown as { _socket: { pause(): void } })._socket.pause();
  stuck.send(encodeFrame({ type: 'status', id: 1 }));
  const stuckClosed = new Promise<void>((resolve) => {
    stuck.once('close', () => {
      resolve();
    });
  });
  // The other client is served: it asks once and reads its one answer.
  const other = await open(address);
  const answer = new Promise<unknown>((resolve) => {
    other.once('message', (data: Buffer) => {
      resolve(decodeFrame(data));
    });
  });
  other.send(encodeFrame({ type: 'status', id: 2 }));
  expect(await answer).toMatchObject({ ok: true, value: { type: 'error', id: 2 } });

  // Cut off: the server terminated it (the paused client learns of it once it reads again).
  await cutOff;
  expect(front.stats.closedForSlowness).toBe(1);
  expect(closed).toEqual([1]);
  expect(frames).toBe(2);
  (stuck as unknown as { _socket: { resume(): void } })._socket.resume();
  await stuckClosed;
  other.close();
});

it('answers plain HTTP: GET /metrics, /health and /backup from the handler (bytes and headers as given), 405 for other methods, 426 elsewhere', async () => {
  const address = `127.0.0.1:${String((await freeBasePort(1)) + 1)}`;
  const image = Uint8Array.from({ length: 70_000 }, (_, i) => i % 251);
  let isHealthy = true;
  const front = new Front({
    address,
    logger: pino({ level: 'silent' }),
    handler: {
      onFrame: () => undefined,
      onClose: () => undefined,
      metrics: () => 'paxlock_up 1\n',
      health: () => ({ status: isHealthy ? 200 : 503, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ health: isHealthy }) }),
      backup: () => ({ status: 200, headers: { 'content-type': 'application/vnd.sqlite3', 'x-paxlock-slot': '42' }, body: image }),
    },
  });
  fronts.push(front);
  await front.start();
  const get = async (path: string, method = 'GET'): Promise<Response> => fetch(`http://${address}${path}`, { method });

  const metrics = await get('/metrics');
  expect([metrics.status, await metrics.text()]).toEqual([200, 'paxlock_up 1\n']);
  const backup = await get('/backup?x=1');
  expect(backup.status).toBe(200);
  expect(backup.headers.get('x-paxlock-slot')).toBe('42');
  expect(backup.headers.get('content-type')).toBe('application/vnd.sqlite3');
  expect(new Uint8Array(await backup.arrayBuffer())).toEqual(image);
  expect((await get('/health')).status).toBe(200);
  isHealthy = false;
  const unhealthy = await get('/health');
  expect([unhealthy.status, await unhealthy.json()]).toEqual([503, { health: false }]);
  for (const path of ['/metrics', '/health', '/backup']) expect((await get(path, 'POST')).status).toBe(405);
  expect((await get('/elsewhere')).status).toBe(426);
});

it('streams an answer given later as a Readable (GET /backup), and destroys it when the client goes away mid-body', async () => {
  const address = `127.0.0.1:${String((await freeBasePort(1)) + 1)}`;
  const image = Buffer.from(Uint8Array.from({ length: 300_000 }, (_, i) => i % 253));
  let endless: Readable | null = null;
  let answers = 0;
  const front = new Front({
    address,
    logger: pino({ level: 'silent' }),
    handler: {
      onFrame: () => undefined,
      onClose: () => undefined,
      backup: async () => {
        // Answered a few turns later, as a copy of the state database is.
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (answers++ === 0) return { status: 200, headers: { 'content-length': String(image.byteLength) }, body: Readable.from([image.subarray(0, 100_000), image.subarray(100_000)]) };
        // A body that never ends, a chunk a turn: only the client hanging up stops it.
        endless = new Readable({
          read() {
            setImmediate(() => this.push(Buffer.alloc(64 * 1024, 1)));
          },
        });
        return { status: 200, body: endless };
      },
    },
  });
  fronts.push(front);
  await front.start();

  // node:http, not fetch: fetch's pool may hold a kept-alive socket to an earlier test's front
  // end on the same port.
  const whole = await new Promise<{ status: number | undefined; body: Buffer }>((resolve, reject) => {
    get(`http://${address}/backup`, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        resolve({ status: response.statusCode, body: Buffer.concat(chunks) });
      });
    }).on('error', reject);
  });
  expect(whole.status).toBe(200);
  expect(whole.body.equals(image)).toBe(true);

  const firstBytes = await new Promise<ClientRequest>((resolve, reject) => {
    const request = get(`http://${address}/backup`, (response) => {
      response.once('data', () => {
        resolve(request);
      });
    }).on('error', reject);
  });
  expect(endless).not.toBeNull();
  const stream = endless as unknown as Readable;
  const closed = new Promise<void>((resolve) => stream.once('close', resolve));
  firstBytes.destroy(); // the client hangs up mid-body
  await closed; // its owner cleans up on 'close' (node.ts removes the copy)
  expect(stream.destroyed).toBe(true);
});
