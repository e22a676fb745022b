// The guard on --bootstrap (and --restore): a founding disk of a NEW cell, or a replacement disk
// of a running one? (docs/cell.md, "Disks and seats".)
//
// A fresh data directory started with --bootstrap claims disk 0: it votes at once, as every
// founding disk of a new cell must. Left in a service file, the same flag would make a replaced
// disk claim the seat of the disk it replaces and vote as that disk, which can undo a chosen
// value (docs/consensus.md, "Replacing a disk"). The process alone cannot tell the two apart, but
// its peers can: before it claims disk 0, a fresh replica asks every peer's GET /health when
// that peer's acceptor state began (`bootedAtMs`, the wall clock at its first persist). If any
// peer's history began more than `windowMs` ago, this is a running cell, and the directory
// starts as a replacement disk: a learner until the master admits it, which it does by itself
// once the learner has caught up. A cell being founded has no history older than a few seconds
// (its replicas start together), so its late starters still claim disk 0.
//
// What it cannot see: peers that do not answer (all down, or cut off) say nothing, and the claim
// is then honoured, as before; and a disk replaced within `windowMs` of the cell's first start.

import { request } from 'node:http';
import type { ReplicaAddress } from './config.ts';

/** What one peer said about its history, or why it said nothing. */
export type PeerHistory =
  | { readonly replica: number; readonly answered: true; readonly bootedAtMs: number | null }
  | { readonly replica: number; readonly answered: false; readonly reason: string };

export interface FoundingVerdict {
  /** True: claim disk 0 (a founding disk); false: start as a replacement disk. */
  readonly isFounding: boolean;
  /** The peer whose history is the oldest, if any peer has one. */
  readonly oldest: { readonly replica: number; readonly bootedAtMs: number; readonly ageMs: number } | null;
  readonly answered: number;
  readonly asked: number;
}

/** Default `windowMs`: a new cell's replicas all start within this long of each other. */
export const BOOTSTRAP_WINDOW_MS = 30_000;

/**
 * The decision, pure: founding unless some peer's history began more than `windowMs` before
 * `nowMs`. A history of unknown start (bootedAtMs 0) is older than any window.
 */
export function foundingVerdict(peers: readonly PeerHistory[], nowMs: number, windowMs: number): FoundingVerdict {
  let oldest: FoundingVerdict['oldest'] = null;
  let answered = 0;
  for (const peer of peers) {
    if (!peer.answered) continue;
    answered++;
    if (peer.bootedAtMs === null) continue;
    const ageMs = nowMs - peer.bootedAtMs;
    if (oldest === null || ageMs > oldest.ageMs) oldest = { replica: peer.replica, bootedAtMs: peer.bootedAtMs, ageMs };
  }
  return { isFounding: oldest === null || oldest.ageMs <= windowMs, oldest, answered, asked: peers.length };
}

/**
 * A peer's GET /health body, as far as the guard needs it: when its history began (null: it has
 * none yet), or undefined if the body is not a paxlock health answer. A replica older than this
 * field reports none: a known master or a chosen slot there means a history of unknown start (0).
 */
export function historyOfHealth(body: unknown): number | null | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const fields = body as Record<string, unknown>;
  if (typeof fields['id'] !== 'number' || typeof fields['commit'] !== 'number') return undefined;
  const bootedAtMs = fields['bootedAtMs'];
  if (bootedAtMs === null) return null;
  if (typeof bootedAtMs === 'number') return Number.isSafeInteger(bootedAtMs) && bootedAtMs >= 0 ? bootedAtMs : undefined;
  if (bootedAtMs !== undefined) return undefined;
  const masterId = fields['masterId'];
  return fields['commit'] > 0 || (masterId !== null && masterId !== undefined) ? 0 : null;
}

const MAX_HEALTH_BYTES = 64 * 1024;

/** GET /health of one peer (its client address), bounded in time and size. */
export function askPeer(peer: ReplicaAddress, timeoutMs: number): Promise<PeerHistory> {
  const split = peer.client.lastIndexOf(':');
  const host = peer.client.slice(0, split);
  const port = Number(peer.client.slice(split + 1));
  return new Promise((resolve) => {
    let isDone = false;
    const finish = (history: PeerHistory): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      req.destroy();
      resolve(history);
    };
    const req = request({ host, port, path: '/health', method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_HEALTH_BYTES) finish({ replica: peer.id, answered: false, reason: 'answer too large' });
        else chunks.push(chunk);
      });
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          finish({ replica: peer.id, answered: false, reason: 'answer is not JSON' });
          return;
        }
        const bootedAtMs = historyOfHealth(body);
        if (bootedAtMs === undefined) finish({ replica: peer.id, answered: false, reason: 'not a paxlock health answer' });
        else finish({ replica: peer.id, answered: true, bootedAtMs });
      });
      res.on('error', (err) => {
        finish({ replica: peer.id, answered: false, reason: err.message });
      });
    });
    const timer = setTimeout(() => {
      finish({ replica: peer.id, answered: false, reason: `no answer within ${String(timeoutMs)} ms` });
    }, timeoutMs);
    req.on('error', (err) => {
      finish({ replica: peer.id, answered: false, reason: err.message });
    });
    req.end();
  });
}

/** Asks every peer but `self` at once; resolves when all have answered or timed out. */
export async function askPeers(replicas: readonly ReplicaAddress[], self: number, timeoutMs: number): Promise<PeerHistory[]> {
  return Promise.all(replicas.filter((r) => r.id !== self).map((r) => askPeer(r, timeoutMs)));
}
