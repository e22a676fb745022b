// The guard on --bootstrap (bootstrap-guard.ts): the decision from what peers said, the reading of
// a peer's GET /health (every byte from the network checked), and the asking itself against real
// HTTP servers on 127.0.0.1: one that answers, one that answers nonsense, one that never answers,
// and an address where nothing listens.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { askPeer, askPeers, foundingVerdict, historyOfHealth, type PeerHistory } from '../../src/runtime/bootstrap-guard.ts';

const NOW = 1_800_000_000_000;
const answered = (replica: number, bootedAtMs: number | null): PeerHistory => ({ replica, answered: true, bootedAtMs });
const silent = (replica: number): PeerHistory => ({ replica, answered: false, reason: 'connect ECONNREFUSED' });

describe('foundingVerdict', () => {
  it('founds a new cell when no peer answers, or none has a history, or every history is young', () => {
    expect(foundingVerdict([silent(2), silent(3), silent(4), silent(5)], NOW, 30_000)).toMatchObject({ isFounding: true, oldest: null, answered: 0, asked: 4 });
    expect(foundingVerdict([answered(2, null), answered(3, null), silent(4)], NOW, 30_000)).toMatchObject({ isFounding: true, oldest: null, answered: 2 });
    // The late starter of a cell being founded: its peers began seconds ago.
    const young = foundingVerdict([answered(2, NOW - 4_000), answered(3, NOW - 30_000), answered(4, null)], NOW, 30_000);
    expect(young).toMatchObject({ isFounding: true, oldest: { replica: 3, ageMs: 30_000 } });
  });

  it('starts a replacement disk when any peer has held the history longer than the window', () => {
    const running = foundingVerdict([answered(2, null), answered(3, NOW - 4_000), answered(4, NOW - 30_001), silent(5)], NOW, 30_000);
    expect(running).toEqual({ isFounding: false, oldest: { replica: 4, bootedAtMs: NOW - 30_001, ageMs: 30_001 }, answered: 3, asked: 4 });
    // A history of unknown start (a paxos.db from before the time was kept) is older than any window.
    expect(foundingVerdict([answered(2, 0)], NOW, 30_000).isFounding).toBe(false);
    // Window 0: any history at all means a running cell.
    expect(foundingVerdict([answered(2, NOW - 1)], NOW, 0).isFounding).toBe(false);
    expect(foundingVerdict([answered(2, NOW)], NOW, 0).isFounding).toBe(true);
  });
});

describe('historyOfHealth', () => {
  const health = { health: true, id: 2, role: 'follower', masterId: 1, commit: 12, applied: 12 };

  it('reads bootedAtMs, and infers a history for a replica too old to report it', () => {
    expect(historyOfHealth({ ...health, bootedAtMs: NOW })).toBe(NOW);
    expect(historyOfHealth({ ...health, bootedAtMs: null })).toBeNull();
    expect(historyOfHealth(health)).toBe(0); // older replica: a chosen slot is a history
    expect(historyOfHealth({ ...health, commit: 0, masterId: 1 })).toBe(0); // a known master is one too
    expect(historyOfHealth({ ...health, commit: 0, masterId: null })).toBeNull();
  });

  it('refuses what is not a paxlock health answer', () => {
    for (const body of [null, 7, 'ok', [health], {}, { ...health, id: '2' }, { ...health, commit: undefined }, { ...health, bootedAtMs: -1 }, { ...health, bootedAtMs: 1.5 }, { ...health, bootedAtMs: '1' }, { ...health, bootedAtMs: 2 ** 60 }]) {
      expect(historyOfHealth(body)).toBeUndefined();
    }
  });
});

describe('askPeer', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
    const server = createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  }

  it('reads a real /health answer, whatever its status code', async () => {
    let askedPath = '';
    const client = await serve((req, res) => {
      askedPath = req.url ?? '';
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ health: false, id: 3, masterId: null, commit: 40, bootedAtMs: NOW - 5 }));
    });
    expect(await askPeer({ id: 3, peer: '127.0.0.1:1', client }, 1_000)).toEqual({ replica: 3, answered: true, bootedAtMs: NOW - 5 });
    expect(askedPath).toBe('/health');
  });

  it('counts nonsense, silence and a closed port as no answer, each with its reason', async () => {
    const junk = await serve((_req, res) => res.end('<html>not json'));
    const stranger = await serve((_req, res) => res.end(JSON.stringify({ ok: true })));
    const huge = await serve((_req, res) => res.end(Buffer.alloc(100_000, 32)));
    const mute = await serve(() => {
      // never answers
    });
    // A port that was listening and is closed again: nothing listens there now.
    const closed = await serve(() => undefined);
    await new Promise((resolve) => servers.pop()!.close(resolve));
    const results = await askPeers(
      [
        { id: 1, peer: '', client: '127.0.0.1:9' },
        { id: 2, peer: '', client: junk },
        { id: 3, peer: '', client: stranger },
        { id: 4, peer: '', client: huge },
        { id: 5, peer: '', client: mute },
        { id: 6, peer: '', client: closed },
      ],
      1,
      300,
    );
    expect(results.map((r) => r.replica)).toEqual([2, 3, 4, 5, 6]); // never itself
    expect(results.every((r) => !r.answered)).toBe(true);
    const reasons = results.map((r) => (r.answered ? '' : r.reason));
    expect(reasons[0]).toBe('answer is not JSON');
    expect(reasons[1]).toBe('not a paxlock health answer');
    expect(reasons[2]).toBe('answer too large');
    expect(reasons[3]).toBe('no answer within 300 ms');
    expect(reasons[4]).toMatch(/ECONNREFUSED/);
  });
});
