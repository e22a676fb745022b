// The peer transport delivers validated messages between configured replicas over real
// loopback sockets, refuses links from unknown or misconfigured peers, closes a link that
// sends garbage, drops (never queues) while a link is down, and redials after a peer restarts.
import pino from 'pino';
import { WebSocket } from 'ws';
import { encodeFrame } from '@paxlock/shared';
import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../src/paxos/messages.ts';
import type { ReplicaAddress } from '../../src/runtime/config.ts';
import { checkHello, PeerTransport } from '../../src/runtime/peers.ts';
import { freeBasePort } from '../../../test/ports.ts';

const logger = pino({ level: 'silent' });

async function addresses(n: number): Promise<ReplicaAddress[]> {
  const base = await freeBasePort(n);
  return Array.from({ length: n }, (_, i) => ({ id: i + 1, peer: `127.0.0.1:${String(base + 1 + i)}`, client: `127.0.0.1:${String(base + 101 + i)}` }));
}

/** A stand-in for the core's validator: accepts heartbeats only. */
function validateHeartbeat(raw: unknown): Message | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const m = raw as Record<string, unknown>;
  if (m['type'] !== 'heartbeat' || typeof m['commit'] !== 'number') return null;
  return raw as Message;
}

function heartbeat(commit: number): Message {
  return { type: 'heartbeat', ballot: { round: 1, replica: 1 }, commit, round: commit };
}

/** Resolves once `check` holds, polling the event loop (no fixed sleeps). */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('PeerTransport', () => {
  const open: PeerTransport[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((t) => t.close()));
  });

  function transport(replicas: ReplicaAddress[], id: number, inbox: [number, Message][]): PeerTransport {
    const self = replicas.find((r) => r.id === id)!;
    const t = new PeerTransport({
      cell: 'test',
      self,
      replicas,
      logger,
      validate: validateHeartbeat,
      onMessage: (from, message) => inbox.push([from, message]),
      backoffInitialMs: 10,
      backoffMaxMs: 50,
    });
    open.push(t);
    return t;
  }

  it('delivers messages between replicas in order', async () => {
    const replicas = await addresses(3);
    const inboxes: [number, Message][][] = [[], [], []];
    const ts = replicas.map((r, i) => transport(replicas, r.id, inboxes[i]!));
    await Promise.all(ts.map((t) => t.start()));
    await until(() => ts[0]!.isConnected(2) && ts[0]!.isConnected(3), 'links up');
    for (let i = 1; i <= 5; i++) ts[0]!.send({ to: 2, message: heartbeat(i) });
    ts[0]!.send({ to: 3, message: heartbeat(9) });
    await until(() => inboxes[1]!.length === 5 && inboxes[2]!.length === 1, 'delivery');
    expect(inboxes[1]!.map(([from, m]) => [from, m.type === 'heartbeat' ? m.commit : -1])).toEqual([
      [1, 1], [1, 2], [1, 3], [1, 4], [1, 5],
    ]);
    expect(inboxes[2]![0]![0]).toBe(1);
  });

  it('delivers a batch frame as its messages, in order, dropping only the invalid one', async () => {
    const replicas = await addresses(2);
    const inbox: [number, Message][] = [];
    const a = transport(replicas, 1, []);
    const b = transport(replicas, 2, inbox);
    await Promise.all([a.start(), b.start()]);
    await until(() => a.isConnected(2), 'link up');
    a.sendBatch(2, [heartbeat(1), { type: 'bogus' } as unknown as Message, heartbeat(2), heartbeat(3)]);
    await until(() => inbox.length === 3, 'the batch');
    expect(inbox.map(([, m]) => (m.type === 'heartbeat' ? m.commit : -1))).toEqual([1, 2, 3]);
    expect(b.stats.invalid).toBe(1);
  });

  it('drops invalid messages from a configured peer without delivering them', async () => {
    const replicas = await addresses(2);
    const inbox: [number, Message][] = [];
    const a = transport(replicas, 1, []);
    const b = transport(replicas, 2, inbox);
    await Promise.all([a.start(), b.start()]);
    await until(() => a.isConnected(2), 'link up');
    a.sendFrame(2, { type: 'paxos', message: { type: 'bogus' } as unknown as Message });
    a.send({ to: 2, message: heartbeat(7) });
    await until(() => inbox.length === 1, 'the valid message');
    expect(b.stats.invalid).toBe(1);
  });

  it('a fresh replica takes the history of the first master it hears from, then refuses peers of another', async () => {
    const replicas = await addresses(3);
    const inbox: [number, Message][] = [];
    let adopted: number | null = null;
    const make = (id: number, incarnation: () => number | null, onIncarnation?: (n: number) => void): PeerTransport => {
      const t = new PeerTransport({
        cell: 'test',
        self: replicas.find((r) => r.id === id)!,
        replicas,
        logger,
        validate: validateHeartbeat,
        onMessage: (from, message) => {
          if (id === 3) inbox.push([from, message]);
        },
        incarnation,
        ...(onIncarnation === undefined ? {} : { onIncarnation }),
        backoffInitialMs: 10,
        backoffMaxMs: 50,
      });
      open.push(t);
      return t;
    };
    const a = make(1, () => 7); // restored from one backup
    const b = make(2, () => 9); // from another
    const c = make(3, () => adopted, (n) => {
      adopted = n;
    });
    await Promise.all([a.start(), b.start(), c.start()]);
    await until(() => a.isConnected(3) && b.isConnected(3), 'both links to the fresh replica up');
    a.send({ to: 3, message: heartbeat(1) }); // a master's heartbeat: the fresh replica joins history 7
    await until(() => inbox.length === 1, 'the heartbeat');
    expect(adopted).toBe(7);
    await until(() => c.stats.refused >= 1, "the other history's next hello refused");
    b.send({ to: 3, message: heartbeat(2) });
    a.send({ to: 3, message: heartbeat(3) });
    await until(() => inbox.length === 2, "history 7's next heartbeat");
    expect(inbox.map(([from]) => from)).toEqual([1, 1]);
  });

  it('refuses a hello from an unknown replica, another cell, or for another replica', () => {
    const replicas: ReplicaAddress[] = [
      { id: 1, peer: '127.0.0.1:1', client: '127.0.0.1:2' },
      { id: 2, peer: '127.0.0.1:3', client: '127.0.0.1:4' },
    ];
    const expect1 = { cell: 'c', self: 1, replicas, remoteAddress: '127.0.0.1' };
    expect(checkHello({ type: 'hello', version: 1, cell: 'c', from: 2, to: 1 }, expect1)).toEqual({ ok: true, from: 2, incarnation: null });
    expect(checkHello({ type: 'hello', version: 1, cell: 'c', from: 9, to: 1 }, expect1).ok).toBe(false);
    expect(checkHello({ type: 'hello', version: 1, cell: 'x', from: 2, to: 1 }, expect1).ok).toBe(false);
    expect(checkHello({ type: 'hello', version: 1, cell: 'c', from: 2, to: 2 }, expect1).ok).toBe(false);
    expect(checkHello({ type: 'hello', version: 1, cell: 'c', from: 1, to: 1 }, expect1).ok).toBe(false);
    expect(checkHello({ type: 'hello', version: 2, cell: 'c', from: 2, to: 1 }, expect1).ok).toBe(false);
    expect(checkHello({ type: 'hello', version: 1, cell: 'c', from: 2, to: 1 }, { ...expect1, remoteAddress: '10.0.0.9' }).ok).toBe(false);
    expect(checkHello('garbage', expect1).ok).toBe(false);
    expect(checkHello(undefined, expect1).ok).toBe(false);
  });

  it('refuses a peer of another history of the cell (restored from another backup, or not restored), lets a fresh one in', () => {
    const expect1 = { cell: 'c', self: 1, replicas: [{ id: 1, peer: '127.0.0.1:1', client: '127.0.0.1:2' }, { id: 2, peer: '127.0.0.1:3', client: '127.0.0.1:4' }], remoteAddress: '127.0.0.1' };
    const hello = (incarnation: unknown): unknown => ({ type: 'hello', version: 1, cell: 'c', from: 2, to: 1, incarnation });
    expect(checkHello(hello(7), { ...expect1, incarnation: 7 })).toEqual({ ok: true, from: 2, incarnation: 7 });
    const other = checkHello(hello(8), { ...expect1, incarnation: 7 });
    expect(other.ok).toBe(false);
    expect(!other.ok && other.reason).toMatch(/another history of cell c \(incarnation 8, here 7\)/);
    expect(checkHello(hello(0), { ...expect1, incarnation: 7 }).ok).toBe(false); // the original history against a restored one
    expect(checkHello(hello(null), { ...expect1, incarnation: 7 })).toEqual({ ok: true, from: 2, incarnation: null }); // a fresh peer
    expect(checkHello(hello(7), { ...expect1, incarnation: null })).toEqual({ ok: true, from: 2, incarnation: 7 }); // we are fresh
    expect(checkHello(hello(-1), { ...expect1, incarnation: null }).ok).toBe(false);
    expect(checkHello(hello('7'), { ...expect1, incarnation: null }).ok).toBe(false);
  });

  it('closes a socket whose first frame is not a valid hello, and keeps serving others', async () => {
    const replicas = await addresses(2);
    const inbox: [number, Message][] = [];
    const b = transport(replicas, 2, inbox);
    await b.start();
    const rogue = new WebSocket(`ws://${replicas[1]!.peer}/peer`);
    const closed = new Promise<number>((resolve) => rogue.on('close', (code) => resolve(code)));
    rogue.on('open', () => rogue.send(encodeFrame({ type: 'hello', version: 1, cell: 'test', from: 7, to: 2 })));
    expect(await closed).toBe(4403);
    const junk = new WebSocket(`ws://${replicas[1]!.peer}/peer`);
    const junkClosed = new Promise<number>((resolve) => junk.on('close', (code) => resolve(code)));
    junk.on('open', () => junk.send(Buffer.from([0xc1, 0xff, 0x00])));
    expect(await junkClosed).toBe(4403);
    expect(b.stats.refused).toBe(2);

    const a = transport(replicas, 1, []);
    await a.start();
    await until(() => a.isConnected(2), 'link up');
    a.send({ to: 2, message: heartbeat(1) });
    await until(() => inbox.length === 1, 'delivery after refusals');
  });

  it('drops while a peer is down and redials when it comes back', async () => {
    const replicas = await addresses(2);
    const a = transport(replicas, 1, []);
    await a.start();
    a.send({ to: 2, message: heartbeat(1) });
    expect(a.stats.dropped).toBe(1);
    const inbox: [number, Message][] = [];
    const b = transport(replicas, 2, inbox);
    await b.start();
    await until(() => a.isConnected(2), 'redial');
    a.send({ to: 2, message: heartbeat(2) });
    await until(() => inbox.length === 1, 'delivery after redial');
    expect(inbox[0]![1]).toMatchObject({ commit: 2 });
  });
});
