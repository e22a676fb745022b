// How the CLI prints things for people: tables padded to their widest cell, stat as `key: value`
// lines, events as `<type> <path> key=value` lines, times as ISO strings, durations in short
// units. The --json forms are built in cli.ts straight from the library's objects; nothing here
// is meant to be parsed.

import type { DirEntry, LockInfo, NodeStat, ReplicaStatus, SessionInfo } from '@paxlock/shared';
import type { HandleEvent } from '../files.ts';

/** Rows of cells as columns padded to the widest cell, two spaces apart; the last not padded. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A master-stamped time (ms since the epoch) as an ISO string. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** A duration in the largest unit that keeps it readable: 850ms, 12.3s, 4m05s, 2h10m. */
export function duration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const s = Math.floor(ms / 1_000);
  if (s < 3_600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3_600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/** A dir entry's name as `ls` shows it: directories end in `/`. */
export function entryName(entry: DirEntry): string {
  return entry.isDirectory ? `${entry.name}/` : entry.name;
}

/** The kind column of `ls -l`: d directory, f file; e for an ephemeral node. */
function kindOf(stat: NodeStat): string {
  return `${stat.isDirectory ? 'd' : 'f'}${stat.isEphemeral ? 'e' : '-'}`;
}

/** One `ls -l` row: kind, size, content and lock generation, modified time, name. */
export function longRow(stat: NodeStat, name: string): string[] {
  return [
    kindOf(stat),
    String(stat.sizeBytes),
    `gen=${stat.contentGeneration}`,
    `lockgen=${stat.lockGeneration}`,
    isoTime(stat.modifiedMs),
    name,
  ];
}

/** `stat` as `key: value` lines, in the order a person reads them. */
export function statLines(stat: NodeStat): string {
  return table([
    ['path:', stat.path],
    [
      'type:',
      `${stat.isDirectory ? 'directory' : 'file'}${stat.isEphemeral ? ' (ephemeral)' : ''}`,
    ],
    ['size:', `${stat.sizeBytes} bytes`],
    ['instance:', String(stat.instance)],
    ['content-generation:', String(stat.contentGeneration)],
    ['lock-generation:', String(stat.lockGeneration)],
    ['acl-generation:', String(stat.aclGeneration)],
    ['checksum:', stat.checksum],
    ['acl:', `read=${stat.acl.read} write=${stat.acl.write} change-acl=${stat.acl.changeAcl}`],
    ['created:', isoTime(stat.createdMs)],
    ['modified:', isoTime(stat.modifiedMs)],
  ]);
}

/** A handle event without the session and handle it was addressed to (the CLI's own). */
export function eventRecord(event: HandleEvent): Record<string, unknown> {
  if (event.type === 'reread') return { ...event };
  const { session: _session, handle: _handle, ...rest } = event;
  return rest;
}

/** A handle event as one `<type> <path> key=value ...` line. */
export function eventLine(event: HandleEvent): string {
  const { type, path, ...rest } = eventRecord(event);
  const fields = Object.entries(rest).map(([key, value]) => `${key}=${String(value)}`);
  return [String(type), String(path), ...fields].join(' ');
}

export function sessionsTable(sessions: readonly SessionInfo[], nowMs: number): string {
  return table([
    ['SESSION', 'NAME', 'LEASE', 'AGE', 'HANDLES', 'LAST-SEQ'],
    ...sessions.map((s) => [
      String(s.session),
      s.clientName,
      duration(s.leaseMs),
      duration(Math.max(0, nowMs - s.createdMs)),
      String(s.handleCount),
      String(s.lastSeq),
    ]),
  ]);
}

export function locksTable(locks: readonly LockInfo[]): string {
  const rows = [['PATH', 'MODE', 'HOLDERS', 'HELD-SINCE', 'HELD', 'WAITERS']];
  for (const lock of locks) {
    const first = lock.holders[0];
    const waiters =
      lock.waiters.length === 0
        ? '-'
        : lock.waiters.map((w) => `s${w.session}/h${w.handle}:${w.mode}`).join(',');
    const delayed =
      lock.lockDelayEndsMs === undefined
        ? ''
        : ` (lock-delay until ${isoTime(lock.lockDelayEndsMs)})`;
    rows.push([
      lock.path,
      first?.mode ?? '-',
      lock.holders.length === 0
        ? '-'
        : lock.holders.map((h) => `s${h.session}/h${h.handle}`).join(','),
      first === undefined ? '-' : isoTime(first.sinceMs),
      first === undefined ? '-' : duration(first.heldMs),
      `${waiters}${delayed}`,
    ]);
  }
  return table(rows);
}

/** A replica's line in `status`; unreachable replicas carry the error instead. */
export type StatusRow =
  | ({ readonly address: string; readonly reachable: true } & ReplicaStatus)
  | { readonly address: string; readonly reachable: false; readonly error: string };

export function statusTable(rows: readonly StatusRow[]): string {
  return table([
    ['ID', 'ROLE', 'SEAT', 'ADDRESS', 'EPOCH', 'COMMIT', 'APPLIED', 'LEASE', 'DIGEST'],
    ...rows.map((r) =>
      r.reachable
        ? [
            String(r.id),
            r.role,
            // A replacement disk is a learner until the master admits it; its disk id tells it apart.
            `${r.isVoter ? 'voter' : 'learner'}${r.diskId === 0 ? '' : ` disk ${r.diskId.toString(16)}`}`,
            r.address,
            `${r.epoch.round}.${r.epoch.replica}`,
            String(r.commit),
            String(r.applied),
            r.role === 'master' ? duration(r.leaseRemainingMs) : '-',
            r.digest === null ? '-' : `${r.digest}@${r.digestSlot}`,
          ]
        : ['-', 'unreachable', '-', r.address, '-', '-', '-', '-', r.error],
    ),
  ]);
}
