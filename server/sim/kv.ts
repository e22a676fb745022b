// The simulator's state machine: a small key-value register machine, standing in for the SQLite
// machine of a later issue. It keeps what the checkers need to judge the client history: every
// key's value and the slot that wrote it, and, per client, the last command's sequence number and
// the slot it took effect in — the exactly-once record (DESIGN.md: every request carries
// (session, seq) so a retry after fail-over is not applied twice).
//
// A command's payload is JSON encoded with TextEncoder (the simulator needs no codec). A command
// takes effect only if its seq is above the client's last; the same seq again answers from the
// record; a lower seq is a stale retry and has no effect. `hash` folds every applied slot's value
// into a running digest, so two replicas agree on the applied prefix exactly when their hashes at
// the same slot agree.

import { assert } from '@paxlock/shared';
import type { ChosenEntry, Command, SlotValue } from '../src/paxos/messages.ts';

export interface KvPut {
  readonly op: 'put';
  readonly key: string;
  readonly value: string;
}

/** What applying one command did. `effectSlot` is the slot it took effect in (-1 if stale). */
export interface KvResult {
  readonly clientId: string;
  readonly seq: number;
  readonly status: 'applied' | 'duplicate' | 'stale';
  readonly effectSlot: number;
}

export interface KvCell {
  readonly value: string;
  readonly slot: number;
}

export interface KvSnapshot {
  readonly applied: number;
  readonly hash: number;
  readonly kv: readonly (readonly [string, KvCell])[];
  readonly clients: readonly (readonly [
    string,
    { readonly seq: number; readonly effectSlot: number },
  ])[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodePut(put: KvPut): Uint8Array {
  return encoder.encode(JSON.stringify(put));
}

export function decodePut(payload: Uint8Array): KvPut {
  const raw: unknown = JSON.parse(decoder.decode(payload));
  assert(typeof raw === 'object' && raw !== null, 'kv: command is not an object');
  const o = raw as Record<string, unknown>;
  const key = o['key'];
  const value = o['value'];
  assert(
    o['op'] === 'put' && typeof key === 'string' && typeof value === 'string',
    'kv: malformed put',
  );
  return { op: 'put', key, value };
}

export class KvMachine {
  applied = 0;
  hash = 0;
  readonly kv = new Map<string, KvCell>();
  readonly clients = new Map<string, { seq: number; effectSlot: number }>();

  /** Applies one chosen entry; the caller guarantees slot order. Returns one result per command. */
  applyEntry(entry: ChosenEntry): KvResult[] {
    assert(entry.slot === this.applied + 1, `kv: slot ${entry.slot} applied after ${this.applied}`);
    this.applied = entry.slot;
    this.hash = foldHash(this.hash, entry.slot, valueDigest(entry.value));
    if (entry.value.type !== 'batch') return [];
    return entry.value.commands.map((command) => this.#applyCommand(command, entry.slot));
  }

  #applyCommand(command: Command, slot: number): KvResult {
    const last = this.clients.get(command.clientId);
    if (last !== undefined && command.seq === last.seq) {
      return {
        clientId: command.clientId,
        seq: command.seq,
        status: 'duplicate',
        effectSlot: last.effectSlot,
      };
    }
    if (last !== undefined && command.seq < last.seq) {
      return { clientId: command.clientId, seq: command.seq, status: 'stale', effectSlot: -1 };
    }
    const put = decodePut(command.payload);
    this.kv.set(put.key, { value: put.value, slot });
    this.clients.set(command.clientId, { seq: command.seq, effectSlot: slot });
    return { clientId: command.clientId, seq: command.seq, status: 'applied', effectSlot: slot };
  }

  snapshot(): KvSnapshot {
    return {
      applied: this.applied,
      hash: this.hash,
      kv: [...this.kv.entries()].map(([k, cell]) => [k, { ...cell }] as const),
      clients: [...this.clients.entries()].map(([k, c]) => [k, { ...c }] as const),
    };
  }

  static restore(snapshot: KvSnapshot | null): KvMachine {
    const machine = new KvMachine();
    if (snapshot === null) return machine;
    machine.applied = snapshot.applied;
    machine.hash = snapshot.hash;
    for (const [k, cell] of snapshot.kv) machine.kv.set(k, { ...cell });
    for (const [k, c] of snapshot.clients) machine.clients.set(k, { ...c });
    return machine;
  }
}

/** Order-sensitive running digest of the applied history (32-bit, FNV-style mixing). */
export function foldHash(hash: number, slot: number, digest: number): number {
  let h = Math.imul(hash ^ slot, 0x01000193) >>> 0;
  h = Math.imul(h ^ digest, 0x01000193) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

/** A content digest of a slot value: equal values give equal digests. */
export function valueDigest(value: SlotValue): number {
  let h = 0x811c9dc5;
  const mix = (n: number): void => {
    h = Math.imul(h ^ (n & 0xffffffff), 0x01000193) >>> 0;
  };
  mix(value.type === 'noop' ? 1 : value.type === 'batch' ? 2 : 3);
  if (value.type === 'admit') {
    mix(value.replica);
    mix(value.diskId & 0xffffffff);
    mix(Math.floor(value.diskId / 4294967296));
  }
  const stamp = Math.round(value.stampMs * 1024);
  mix(stamp);
  mix(Math.floor(stamp / 4294967296));
  if (value.type === 'batch') {
    for (const command of value.commands) {
      for (let i = 0; i < command.clientId.length; i++) mix(command.clientId.charCodeAt(i));
      mix(command.seq);
      for (const byte of command.payload) mix(byte);
      mix(0xfe);
    }
  }
  return h;
}

/** A short human-readable form of a slot value, for traces and violation reports. */
export function describeValue(value: SlotValue): string {
  if (value.type === 'noop') return `noop@${value.stampMs.toFixed(0)}`;
  if (value.type === 'admit') return `admit r${value.replica} disk ${value.diskId}`;
  return `batch[${value.commands.map((c) => `${c.clientId}#${c.seq}`).join(',')}]`;
}
