// The only door from the wire into the core: `unknown` (a decoded peer frame) in, a typed,
// in-range Message out, or null to drop it. Every field is checked for type and range, arrays
// and strings are bounded, and the result is rebuilt from the checked fields only, so nothing
// the sender added rides along (STYLE.md, Boundaries: network bytes are unknown until checked).
// A malformed message never reaches a handler, so it cannot change the replica's state.

import type { Ballot } from './ballot.ts';
import type { AcceptedEntry, ChosenEntry, Command, Message, SlotValue } from './messages.ts';

/** Limits on what a peer may send. Generous for real traffic, small enough to bound memory. */
export const MESSAGE_LIMITS = {
  /** Entries in one promise or catch-up (a promise reports a whole unchosen tail). */
  maxEntries: 100_000,
  /** Commands in one batch. */
  maxCommands: 100_000,
  /** Bytes in one command payload. */
  maxPayloadBytes: 4 * 1024 * 1024,
  /** Characters in a client id. */
  maxClientIdLength: 256,
  /** Replica ids in ballots (0 only in the zero ballot). */
  maxReplicaId: 255,
  /** Disk ids: 0 for a founding disk, else 48 random bits. */
  maxDiskId: 2 ** 48 - 1,
} as const;

type Fields = Record<string, unknown>;

function isRecord(raw: unknown): raw is Fields {
  return typeof raw === 'object' && raw !== null && !Array.isArray(raw);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isSlot(v: unknown): v is number {
  return isCount(v) && v >= 1;
}

function isReplicaId(v: unknown): v is number {
  return isSlot(v) && v <= MESSAGE_LIMITS.maxReplicaId;
}

function isDiskId(v: unknown): v is number {
  return isCount(v) && v <= MESSAGE_LIMITS.maxDiskId;
}

/**
 * A vote's disk id, or null if malformed. Absent means disk 0: replicas older than seats sent
 * none and were all on their founding disks, so a rolling upgrade across this change works.
 */
function toDiskId(v: unknown): number | null {
  if (v === undefined) return 0;
  return isDiskId(v) ? v : null;
}

function toBallot(raw: unknown): Ballot | null {
  if (!isRecord(raw)) return null;
  const { round, replica } = raw;
  if (!isCount(round) || !isCount(replica) || replica > MESSAGE_LIMITS.maxReplicaId) return null;
  return { round, replica };
}

function toCommand(raw: unknown): Command | null {
  if (!isRecord(raw)) return null;
  const { clientId, seq, payload } = raw;
  if (
    typeof clientId !== 'string' ||
    clientId.length === 0 ||
    clientId.length > MESSAGE_LIMITS.maxClientIdLength
  ) {
    return null;
  }
  if (!isCount(seq)) return null;
  if (!(payload instanceof Uint8Array) || payload.length > MESSAGE_LIMITS.maxPayloadBytes)
    return null;
  return { clientId, seq, payload };
}

export function validateSlotValue(raw: unknown): SlotValue | null {
  if (!isRecord(raw)) return null;
  const { type, stampMs } = raw;
  if (typeof stampMs !== 'number' || !Number.isFinite(stampMs)) return null;
  if (type === 'noop') return { type, stampMs };
  if (type === 'admit') {
    const { replica, diskId } = raw;
    if (!isReplicaId(replica) || !isDiskId(diskId)) return null;
    return { type, stampMs, replica, diskId };
  }
  if (type !== 'batch') return null;
  const commands = raw['commands'];
  if (!Array.isArray(commands) || commands.length > MESSAGE_LIMITS.maxCommands) return null;
  const checked: Command[] = [];
  for (const c of commands as unknown[]) {
    const command = toCommand(c);
    if (command === null) return null;
    checked.push(command);
  }
  return { type, stampMs, commands: checked };
}

function toEntries<T>(raw: unknown, one: (item: Fields) => T | null): T[] | null {
  if (!Array.isArray(raw) || raw.length > MESSAGE_LIMITS.maxEntries) return null;
  const out: T[] = [];
  for (const item of raw as unknown[]) {
    if (!isRecord(item)) return null;
    const entry = one(item);
    if (entry === null) return null;
    out.push(entry);
  }
  return out;
}

function toAccepted(item: Fields): AcceptedEntry | null {
  const ballot = toBallot(item['ballot']);
  const value = validateSlotValue(item['value']);
  const slot = item['slot'];
  if (!isSlot(slot) || ballot === null || value === null) return null;
  return { slot, ballot, value };
}

function toChosen(item: Fields): ChosenEntry | null {
  const value = validateSlotValue(item['value']);
  const slot = item['slot'];
  if (!isSlot(slot) || value === null) return null;
  return { slot, value };
}

/** A typed, in-range Message, or null if `raw` is not one. */
export function validateMessage(raw: unknown): Message | null {
  if (!isRecord(raw)) return null;
  const type = raw['type'];
  if (typeof type !== 'string') return null;
  switch (type) {
    case 'prepare': {
      const ballot = toBallot(raw['ballot']);
      const slotFirst = raw['slotFirst'];
      if (ballot === null || !isSlot(slotFirst)) return null;
      return { type, ballot, slotFirst };
    }
    case 'promise': {
      const ballot = toBallot(raw['ballot']);
      const { slotFirst, commit } = raw;
      const diskId = toDiskId(raw['diskId']);
      const accepted = toEntries(raw['accepted'], toAccepted);
      const chosen = toEntries(raw['chosen'], toChosen);
      if (
        ballot === null ||
        !isSlot(slotFirst) ||
        !isCount(commit) ||
        diskId === null ||
        accepted === null ||
        chosen === null
      )
        return null;
      return { type, ballot, slotFirst, accepted, chosen, commit, diskId };
    }
    case 'reject': {
      const ballot = toBallot(raw['ballot']);
      const promised = toBallot(raw['promised']);
      const reason = raw['reason'];
      if (ballot === null || promised === null) return null;
      if (reason !== 'stale-ballot' && reason !== 'lease-held' && reason !== 'restart-wait')
        return null;
      return { type, ballot, promised, reason };
    }
    case 'accept': {
      const ballot = toBallot(raw['ballot']);
      const value = validateSlotValue(raw['value']);
      const { slot, commit, round } = raw;
      if (ballot === null || value === null || !isSlot(slot) || !isCount(commit) || !isCount(round))
        return null;
      return { type, ballot, slot, value, commit, round };
    }
    case 'accepted': {
      const ballot = toBallot(raw['ballot']);
      const { slot, round } = raw;
      const diskId = toDiskId(raw['diskId']);
      if (ballot === null || !isSlot(slot) || !isCount(round) || diskId === null) return null;
      return { type, ballot, slot, round, diskId };
    }
    case 'heartbeat': {
      const ballot = toBallot(raw['ballot']);
      const { commit, round } = raw;
      if (ballot === null || !isCount(commit) || !isCount(round)) return null;
      return { type, ballot, commit, round };
    }
    case 'heartbeat-ack': {
      const ballot = toBallot(raw['ballot']);
      const { commit, round } = raw;
      const diskId = toDiskId(raw['diskId']);
      if (ballot === null || !isCount(commit) || !isCount(round) || diskId === null) return null;
      const { restartWaitMs } = raw;
      if (restartWaitMs === undefined) return { type, ballot, commit, round, diskId };
      if (!isCount(restartWaitMs)) return null;
      return { type, ballot, commit, round, diskId, restartWaitMs };
    }
    case 'resign': {
      const ballot = toBallot(raw['ballot']);
      const { successor } = raw;
      if (ballot === null || !isReplicaId(successor)) return null;
      return { type, ballot, successor };
    }
    case 'withdraw': {
      const ballot = toBallot(raw['ballot']);
      return ballot === null ? null : { type, ballot };
    }
    case 'catch-up-request': {
      const { slotFirst, slotLast } = raw;
      if (!isSlot(slotFirst) || !isSlot(slotLast) || slotLast < slotFirst) return null;
      return { type, slotFirst, slotLast };
    }
    case 'catch-up': {
      const entries = toEntries(raw['entries'], toChosen);
      const { commit, compactedBelow } = raw;
      if (entries === null || !isCount(commit) || !isSlot(compactedBelow)) return null;
      return { type, entries, commit, compactedBelow };
    }
    default:
      return null;
  }
}
