// The CLI's commands over the public client library (client.ts, files.ts, locks.ts,
// election.ts): each takes its parsed arguments and the Invocation, prints its result (as text,
// or JSON with --json) and returns the exit code. Failures are thrown as PaxlockErrors; invoke()
// turns them into one line and an exit code.

import { createHash } from 'node:crypto';
import { link, lstat, open, rename, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ErrorCode, LIMITS, type DirEntry, type NodeStat } from '@paxlock/shared';
import { Connection } from '../connection.ts';
import type { PaxlockClient, ReadOptions } from '../client.ts';
import { ClientErrorCode, PaxlockError } from '../errors.ts';
import type { Handle, OpenOptions } from '../files.ts';
import type { LeaderInfo } from '../election.ts';
import type { Lock } from '../locks.ts';
import { runChild } from './child.ts';
import { errorLine, ExitCode, usageError } from './exit.ts';
import {
  entryName,
  eventLine,
  eventRecord,
  locksTable,
  longRow,
  sessionsTable,
  statLines,
  statusTable,
  table,
  type StatusRow,
} from './format.ts';
import { writeJson, writeOut, type Invocation } from './invocation.ts';

function isCode(err: unknown, code: string): err is PaxlockError {
  return err instanceof PaxlockError && err.code === code;
}

/** Resolves `path` against the cell root and names it in the command's error lines. */
function resolvePath(run: Invocation, client: PaxlockClient, path: string): string {
  const full = client.resolve(path);
  run.what = `${run.command} ${full}`;
  return full;
}

/** Opens an existing node, file or directory, with `options` (events, say). */
async function openAny(client: PaxlockClient, path: string, options: OpenOptions): Promise<Handle> {
  try {
    return await client.open(path, { ...options, create: false, directory: false });
  } catch (err: unknown) {
    if (!isCode(err, ErrorCode.IS_A_DIRECTORY)) throw err;
    return client.open(path, { ...options, create: false, directory: true });
  }
}

/**
 * Runs `create`, which creates the node `full`; if its parent is missing, creates the parent
 * directories (as `mkdir -p`) and runs it again. For lock and election nodes, whose names say
 * what they are for (`jobs/nightly`), not where a directory was made ready for them.
 */
async function withParents<T>(
  client: PaxlockClient,
  full: string,
  run: Invocation,
  create: () => Promise<T>,
): Promise<T> {
  try {
    return await create();
  } catch (err: unknown) {
    const parent = full.slice(0, full.lastIndexOf('/'));
    if (!isCode(err, ErrorCode.NOT_FOUND) || parent === client.resolve('/')) throw err;
    await client.mkdir(parent, { ...run.call, parents: true });
    return create();
  }
}

// --- ls ----------------------------------------------------------------------------------------

export interface LsArgs {
  readonly path: string;
  readonly long: boolean;
  readonly recursive: boolean;
  /** --stale: read from any replica within this many ms. */
  readonly stale?: number | undefined;
}

/** The read options of a read command: the call's bounds, and --stale if given. */
function readOptions(run: Invocation, stale: number | undefined): ReadOptions {
  return stale === undefined
    ? run.call
    : { ...run.call, consistency: 'stale', maxStalenessMs: stale };
}

interface Listed {
  readonly path: string;
  readonly name: string;
  readonly isDirectory: boolean;
  readonly isEphemeral: boolean;
  readonly stat?: NodeStat;
}

export async function ls(run: Invocation, args: LsArgs): Promise<number> {
  const client = await run.connect({ session: false });
  const full = resolvePath(run, client, args.path);
  const read = readOptions(run, args.stale);
  const listed: Listed[] = [];
  const visit = async (dir: string): Promise<void> => {
    const entries: readonly DirEntry[] = await client.readdir(dir, read);
    for (const entry of entries) {
      const path = `${dir}/${entry.name}`;
      const stat = args.long ? await client.stat(path, read) : undefined;
      listed.push({
        path,
        name: args.recursive ? `${path}${entry.isDirectory ? '/' : ''}` : entryName(entry),
        isDirectory: entry.isDirectory,
        isEphemeral: entry.isEphemeral,
        ...(stat === undefined ? {} : { stat }),
      });
      if (args.recursive && entry.isDirectory) await visit(path);
    }
  };
  try {
    await visit(full);
  } catch (err: unknown) {
    // `ls FILE` lists the file itself, as ls(1) does.
    if (!isCode(err, ErrorCode.NOT_A_DIRECTORY) || listed.length > 0) throw err;
    const stat = await client.stat(full, read);
    listed.push({
      path: full,
      name: full,
      isDirectory: false,
      isEphemeral: stat.isEphemeral,
      ...(args.long ? { stat } : {}),
    });
  }
  if (run.isJson) {
    await writeJson(
      listed.map(({ name: _name, ...rest }) => ({
        ...rest,
        name: rest.path.slice(rest.path.lastIndexOf('/') + 1),
      })),
    );
  } else if (listed.length > 0) {
    const text = args.long
      ? table(listed.map((e) => (e.stat === undefined ? [e.name] : longRow(e.stat, e.name))))
      : listed.map((e) => e.name).join('\n');
    await writeOut(`${text}\n`);
  }
  return ExitCode.OK;
}

// --- cat, put ----------------------------------------------------------------------------------

export async function cat(
  run: Invocation,
  args: { readonly path: string; readonly stale?: number | undefined },
): Promise<number> {
  const client = await run.connect({ session: false });
  const full = resolvePath(run, client, args.path);
  const {
    contents,
    stat: got,
    slot,
    stalenessMs,
    replica,
  } = await client.read(full, readOptions(run, args.stale));
  if (run.isJson)
    await writeJson({
      path: full,
      contentsBase64: contents.toString('base64'),
      stat: got,
      ...(args.stale === undefined ? {} : { slot, stalenessMs, replica }),
    });
  else await writeOut(contents);
  return ExitCode.OK;
}

async function readStdin(maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const bytes = chunk as Buffer;
    chunks.push(bytes);
    size += bytes.length;
    // Stop reading well past the limit: the size is all the error needs.
    if (size > maxBytes * 4) break;
  }
  return Buffer.concat(chunks);
}

export interface PutArgs {
  readonly path: string;
  readonly value?: string | undefined;
  readonly ifGeneration?: number | undefined;
}

export async function put(run: Invocation, args: PutArgs): Promise<number> {
  if (
    args.ifGeneration !== undefined &&
    (!Number.isSafeInteger(args.ifGeneration) || args.ifGeneration < 0)
  )
    throw usageError(
      `--if-generation must be a whole number (0: create only), not ${args.ifGeneration}`,
    );
  // The input is read before connecting: a slow producer holds no session, and a value over the
  // limit is refused without asking the cell.
  const data =
    args.value === undefined
      ? await readStdin(LIMITS.fileContentsMaxBytes)
      : Buffer.from(args.value, 'utf8');
  if (data.length > LIMITS.fileContentsMaxBytes)
    throw new PaxlockError(
      ErrorCode.TOO_LARGE,
      `${data.length > LIMITS.fileContentsMaxBytes * 4 ? 'over ' : ''}${data.length} bytes; a file holds at most ${LIMITS.fileContentsMaxBytes} bytes`,
    );
  const client = await run.connect();
  const full = resolvePath(run, client, args.path);
  const written = await client.writeFile(full, data, {
    ...run.call,
    ...(args.ifGeneration === undefined ? {} : { ifGeneration: args.ifGeneration }),
  });
  if (run.isJson) await writeJson({ path: full, ...written });
  return ExitCode.OK;
}

// --- rm, mkdir, stat ---------------------------------------------------------------------------

export async function rm(
  run: Invocation,
  args: { readonly path: string; readonly recursive: boolean },
): Promise<number> {
  const client = await run.connect();
  const full = resolvePath(run, client, args.path);
  if (full === client.resolve('/'))
    throw usageError('refusing to remove the cell root (remove what is below it instead)');
  await client.remove(full, { ...run.call, recursive: args.recursive });
  return ExitCode.OK;
}

export async function mkdir(
  run: Invocation,
  args: { readonly path: string; readonly parents: boolean },
): Promise<number> {
  const client = await run.connect();
  const full = resolvePath(run, client, args.path);
  await client.mkdir(full, { ...run.call, parents: args.parents });
  return ExitCode.OK;
}

export async function stat(
  run: Invocation,
  args: { readonly path: string; readonly stale?: number | undefined },
): Promise<number> {
  const client = await run.connect({ session: false });
  const full = resolvePath(run, client, args.path);
  const got = await client.stat(full, readOptions(run, args.stale));
  if (run.isJson) await writeJson(got);
  else await writeOut(`${statLines(got)}\n`);
  return ExitCode.OK;
}

// --- watch -------------------------------------------------------------------------------------

export async function watch(run: Invocation, args: { readonly path: string }): Promise<number> {
  const client = await run.connect();
  const full = resolvePath(run, client, args.path);
  const handle = await openAny(client, full, { ...run.call, events: 'all' });
  // From here on the watch runs until Ctrl-C (or SIGTERM), the node is deleted, or the session
  // ends; the deadline only bounded getting here.
  run.stopDeadline();
  const stop = new AbortController();
  run.onInterrupt(() => {
    stop.abort();
  });
  let ended: PaxlockError | null = null;
  handle.once('invalid', (err) => {
    ended = err;
  });
  if (process.stderr.isTTY) process.stderr.write(`paxlock: watching ${full} (Ctrl-C to stop)\n`);
  for await (const event of handle.events({ signal: stop.signal })) {
    if (run.isJson) await writeJson(eventRecord(event), true);
    else await writeOut(`${eventLine(event)}\n`);
  }
  run.onInterrupt(null);
  const why = ended as PaxlockError | null;
  // The node was deleted (a handle-invalid line was printed): the watch is over, and fine.
  if (why !== null && why.code !== ErrorCode.BAD_HANDLE) throw why;
  await handle.close(run.call).catch(() => undefined);
  return ExitCode.OK;
}

// --- lock --------------------------------------------------------------------------------------

export interface LockArgs {
  readonly path: string;
  readonly command: readonly string[];
  readonly shared: boolean;
  readonly killAfterMs: number;
}

export async function lock(run: Invocation, args: LockArgs): Promise<number> {
  if (args.command.length === 0)
    throw usageError('lock needs a command to run: paxlock lock PATH -- CMD [ARG...]');
  const client = await run.connect();
  const full = resolvePath(run, client, args.path);
  const handle = await withParents(client, full, run, async () =>
    client.open(full, { ...run.call, create: true }),
  );
  const mode = args.shared ? 'shared' : 'exclusive';
  // Without --timeout, wait for the lock as long as it takes (Ctrl-C stops waiting).
  if (run.explicitTimeoutMs === undefined) run.stopDeadline();
  let held: Lock | null;
  if (run.explicitTimeoutMs === 0) {
    held = await handle.tryAcquire({ signal: run.signal, mode });
    if (held === null) throw new PaxlockError(ErrorCode.LOCK_HELD, `${full} is held`);
  } else {
    held = await handle.acquire({ signal: run.signal, mode });
  }
  run.stopDeadline();
  const outcome = await runChild(run, {
    argv: args.command,
    env: {
      ...process.env,
      PAXLOCK_SEQUENCER: held.sequencer,
      PAXLOCK_LOCK: full,
      PAXLOCK_CELL: run.cell.join(','),
    },
    lost: held.signal,
    onLost: (reason) => {
      process.stderr.write(`${errorLine(run.what, reason).line}; stopping the command\n`);
    },
    killAfterMs: args.killAfterMs,
  });
  if (outcome.spawnError !== undefined)
    process.stderr.write(`paxlock: ${run.what}: ${outcome.spawnError}\n`);
  // Release before exiting so that the next waiter is granted the lock at once. With the session
  // in jeopardy there is nobody to tell: closing the session (bounded) is all that is left.
  if (client.state === 'connected') {
    await held.release({ timeoutMs: run.timeoutMs }).catch(() => undefined);
    await handle.close({ timeoutMs: run.timeoutMs }).catch(() => undefined);
  }
  return outcome.isLost ? ExitCode.LOST : outcome.status;
}

// --- elect -------------------------------------------------------------------------------------

export interface ElectArgs {
  readonly path: string;
  readonly value?: string | undefined;
  readonly observe: boolean;
}

function leaderRecord(path: string, leader: LeaderInfo | null): Record<string, unknown> {
  return leader === null
    ? { type: 'no-leader', path }
    : {
        type: 'leader',
        path,
        value: leader.value,
        sequencer: leader.sequencer,
        session: leader.session,
        name: leader.name,
      };
}

async function printLeader(
  run: Invocation,
  path: string,
  leader: LeaderInfo | null,
): Promise<void> {
  if (run.isJson) await writeJson(leaderRecord(path, leader), true);
  else await writeOut(leader === null ? `no-leader ${path}\n` : `leader ${path} ${leader.value}\n`);
}

export async function elect(run: Invocation, args: ElectArgs): Promise<number> {
  if (!args.observe && args.value === undefined)
    throw usageError('elect needs a VALUE to campaign with (or --observe to watch the leader)');
  const client = await run.connect();
  const full = resolvePath(run, client, args.path);
  const election = client.election(full);
  // Without --timeout, campaign as long as it takes; the deadline only bounded connecting.
  if (run.explicitTimeoutMs === undefined) run.stopDeadline();
  const stop = new AbortController();
  if (args.observe) {
    run.stopDeadline();
    run.onInterrupt(() => {
      stop.abort();
    });
    for await (const leader of election.observe({ signal: stop.signal }))
      await printLeader(run, full, leader);
    run.onInterrupt(null);
    if (!stop.signal.aborted) client.checkUsable();
    return ExitCode.OK;
  }
  const value = args.value ?? '';
  const leadership = await withParents(client, full, run, async () =>
    election.campaign(value, { signal: run.signal }),
  );
  run.stopDeadline();
  run.onInterrupt(() => {
    stop.abort();
  });
  await printLeader(run, full, {
    value,
    sequencer: leadership.sequencer,
    session: client.session,
    name: client.clientName,
  });
  // Lead until told to stop, or until leadership can no longer be relied on.
  await new Promise<void>((resolve) => {
    const done = (): void => {
      resolve();
    };
    stop.signal.addEventListener('abort', done, { once: true });
    leadership.signal.addEventListener('abort', done, { once: true });
  });
  run.onInterrupt(null);
  if (!stop.signal.aborted) {
    const reason: unknown = leadership.signal.reason;
    const message = reason instanceof Error ? reason.message : 'leadership lost';
    throw new PaxlockError(ClientErrorCode.LOCK_LOST, `no longer the leader: ${message}`);
  }
  // Resign (not just disconnect) so the next campaigner takes over at once, with no lock-delay.
  await leadership.resign({ timeoutMs: run.timeoutMs });
  return ExitCode.OK;
}

// --- sessions, locks, status -------------------------------------------------------------------

export async function sessions(run: Invocation): Promise<number> {
  const client = await run.connect({ session: false });
  const list = await client.listSessions(run.call);
  if (run.isJson) await writeJson(list);
  else await writeOut(`${sessionsTable(list, Date.now())}\n`);
  return ExitCode.OK;
}

export async function locks(
  run: Invocation,
  args: { readonly path?: string | undefined },
): Promise<number> {
  const client = await run.connect({ session: false });
  const full = args.path === undefined ? undefined : resolvePath(run, client, args.path);
  const list = await client.listLocks(full, run.call);
  if (run.isJson) await writeJson(list);
  else await writeOut(`${locksTable(list)}\n`);
  return ExitCode.OK;
}

/** Asks one replica for its own status (no session: works with no master too). */
async function replicaStatus(address: string, timeoutMs: number): Promise<StatusRow> {
  try {
    const connection = await Connection.open(address, timeoutMs);
    try {
      const reply = await connection.request({ type: 'status', digest: true }, timeoutMs);
      if (reply.type !== 'status')
        return { address, reachable: false, error: `unexpected reply ${reply.type}` };
      return { address, reachable: true, ...reply.status };
    } finally {
      connection.close();
    }
  } catch (err: unknown) {
    if (!(err instanceof PaxlockError)) throw err;
    return { address, reachable: false, error: `${err.code}: ${err.message}` };
  }
}

export async function status(run: Invocation): Promise<number> {
  run.startDeadline(run.timeoutMs);
  // A replica that does not answer in a few seconds is as good as unreachable (frozen, say):
  // status reports it as such rather than making the whole table wait on it.
  const perReplicaMs =
    run.explicitTimeoutMs === undefined ? 3_000 : Math.max(100, run.explicitTimeoutMs - 500);
  const rows = await Promise.all(
    run.cell.map(async (address) => replicaStatus(address, perReplicaMs)),
  );
  if (run.isJson) {
    await writeJson(
      rows.map((row) => {
        if (!row.reachable)
          return { id: null, role: 'unreachable', address: row.address, error: row.error };
        const { reachable: _reachable, address, id, role, ...rest } = row;
        return { id, role, address, ...rest };
      }),
    );
  } else {
    await writeOut(`${statusTable(rows)}\n`);
  }
  if (!rows.some((row) => row.reachable)) {
    run.what = `status ${run.cell.join(',')}`;
    throw new PaxlockError(ErrorCode.NO_QUORUM, 'no replica answered');
  }
  return ExitCode.OK;
}

// --- backup ------------------------------------------------------------------------------------

export interface BackupArgs {
  readonly file: string;
  /** Replace FILE if it exists. */
  readonly force: boolean;
}

/** The first bytes of every SQLite database file. */
const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/** What a replica's `GET /backup` answered with 200: the image's headers, its body unread. */
interface BackupResponse {
  readonly response: Response;
  readonly cell: string;
  readonly slot: number;
  readonly sha256: string;
}

/** What a replica's `GET /health` said about where the master is, or why it said nothing. */
type HealthProbe =
  | { readonly isAnswered: true; readonly master: string | null }
  | { readonly isAnswered: false; readonly why: string };

/**
 * `GET /health` of one replica, bounded by `ms`: whether it answers at all (a frozen or dead
 * replica does not), and the master it knows (its client address; its own if it is master).
 * 200 and 503 both carry the JSON body; anything else, or a body that is not one, is no answer.
 */
async function probeHealth(address: string, ms: number, signal: AbortSignal): Promise<HealthProbe> {
  const attempt = AbortSignal.any([signal, AbortSignal.timeout(ms)]);
  try {
    const response = await fetch(`http://${address}/health`, { signal: attempt, redirect: 'manual' });
    const text = await response.text();
    if (text.length > 64 * 1024) return { isAnswered: false, why: 'an oversized /health answer' };
    const body: unknown = JSON.parse(text);
    if (typeof body !== 'object' || body === null) return { isAnswered: false, why: 'not a paxlock replica' };
    const { id, master } = body as Record<string, unknown>;
    if (typeof id !== 'number' || !(master === null || typeof master === 'string'))
      return { isAnswered: false, why: 'not a paxlock replica' };
    return { isAnswered: true, master };
  } catch (err: unknown) {
    if (err instanceof SyntaxError) return { isAnswered: false, why: 'not a paxlock replica' };
    return { isAnswered: false, why: fetchFailure(err) };
  }
}

/**
 * Finds the master and asks it for `GET /backup`. Each replica gets a few seconds to answer
 * `GET /health`, so one that is frozen does not use up the whole --timeout; the master that
 * answered its own health probe then gets the rest of the deadline to start sending, since it
 * copies and hashes the state before its first byte (seconds for a state of hundreds of MB: a
 * per-replica bound there failed such backups as "no answer"). A follower's redirect (the master
 * moved meanwhile) is followed.
 */
async function fetchBackup(run: Invocation): Promise<BackupResponse> {
  const perReplicaMs = Math.min(3_000, run.timeoutMs);
  const failures: string[] = [];
  const tried = new Set<string>();
  for (const address of run.cell) {
    const probe = await probeHealth(address, perReplicaMs, run.signal);
    if (!probe.isAnswered) {
      failures.push(`${address}: ${probe.why}`);
      continue;
    }
    const master = probe.master;
    if (master === null) {
      failures.push(`${address}: no master known`);
      continue;
    }
    if (tried.has(master)) continue;
    tried.add(master);
    if (master !== address) {
      const masterProbe = await probeHealth(master, perReplicaMs, run.signal);
      if (!masterProbe.isAnswered) {
        failures.push(`${master} (the master ${address} named): ${masterProbe.why}`);
        continue;
      }
    }
    let response: Response;
    try {
      response = await fetch(`http://${master}/backup`, { signal: run.signal });
    } catch (err: unknown) {
      if (run.signal.aborted) {
        if (run.interruptedBy === null)
          throw new PaxlockError(
            ErrorCode.TIMEOUT,
            `the master (${master}) did not start sending the backup within the --timeout of ${run.timeoutMs} ms; it copies and hashes the state first, so a large state needs a larger --timeout`,
          );
        break;
      }
      failures.push(`${master}: ${fetchFailure(err)}`);
      continue;
    }
    if (response.status !== 200) {
      // The reason is a one-line text body (503: no master known); read a little of it, bounded.
      const reason = await response.text().then(
        (text) => text.trim().split('\n')[0]?.slice(0, 200) ?? '',
        () => '',
      );
      failures.push(`${master}: ${response.status}${reason === '' ? '' : ` ${reason}`}`);
      continue;
    }
    const cell = response.headers.get('x-paxlock-cell');
    const slot = response.headers.get('x-paxlock-slot');
    const sha256 = response.headers.get('x-paxlock-sha256');
    if (
      cell === null ||
      slot === null ||
      !/^\d+$/.test(slot) ||
      sha256 === null ||
      !/^[0-9a-f]{64}$/.test(sha256)
    ) {
      await response.body?.cancel();
      throw new Error(
        `${response.url} answered 200 without well-formed x-paxlock-cell, x-paxlock-slot and x-paxlock-sha256 headers: not a paxlock backup`,
      );
    }
    return { response, cell, slot: Number(slot), sha256 };
  }
  if (run.signal.aborted && run.interruptedBy === null)
    failures.push(`no answer within the --timeout of ${run.timeoutMs} ms`);
  throw new PaxlockError(
    ErrorCode.NO_MASTER,
    `no replica answered with a backup (the cell has no master?): ${failures.join('; ')}`,
  );
}

/** Why a fetch failed, in a few words: fetch's own message is only "fetch failed". */
function fetchFailure(err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError') return 'no answer in time';
  const cause: unknown = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error) return 'code' in cause ? String(cause.code) : cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** fsyncs a directory, so that a rename into it survives a crash. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err: unknown) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}

function errnoOf(err: unknown): unknown {
  return err instanceof Error && 'code' in err ? err.code : undefined;
}

/**
 * Moves `from` to `to` unless `to` exists, atomically: a hard link cannot replace a file.
 * 'no-links' where the file system has none (the caller renames instead).
 */
async function linkNoClobber(from: string, to: string): Promise<'linked' | 'exists' | 'no-links'> {
  try {
    await link(from, to);
  } catch (err: unknown) {
    const code = errnoOf(err);
    if (code === 'EEXIST') return 'exists';
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') return 'no-links';
    throw err;
  }
  await unlink(from);
  return 'linked';
}

/**
 * `backup FILE`: the master's state database, as of one applied slot, written durably to FILE.
 * The body streams to FILE.tmp-<pid> through the hash; only if the hash matches the master's is
 * the file fsynced and moved to FILE (a hard link without --force, which cannot replace a file
 * that appeared meanwhile; a rename with it, or on a file system without hard links), and the
 * directory fsynced. Any failure removes the temporary file: FILE is either the whole, checked
 * backup or untouched.
 */
export async function backup(run: Invocation, args: BackupArgs): Promise<number> {
  // (yargs hands `-` over as an empty string.)
  if (args.file === '-' || args.file === '')
    throw usageError('backup writes a binary SQLite image: name a FILE (not - for stdout)');
  const file = resolve(args.file);
  const alreadyThere = (): PaxlockError =>
    new PaxlockError(ErrorCode.EXISTS, `${file} exists (--force to replace it)`);
  // Checked before asking the cell too, so a refused backup costs the master nothing.
  if (!args.force && (await exists(file))) throw alreadyThere();
  run.startDeadline(run.timeoutMs);
  // The temporary file first: a directory that cannot take it fails before the master is asked.
  const temporary = `${file}.tmp-${process.pid}`;
  let isMoved = false;
  const handle = await open(temporary, 'wx');
  try {
    const { response, cell, slot, sha256 } = await fetchBackup(run);
    const hash = createHash('sha256');
    let sizeBytes = 0;
    let head = Buffer.alloc(0);
    try {
      if (response.body === null) throw new Error(`${response.url} answered 200 with no body`);
      // (fetch's body is typed as a stream of `any`; it yields Uint8Arrays.)
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        sizeBytes += chunk.length;
        if (head.length < SQLITE_HEADER.length) head = Buffer.concat([head, chunk]);
        for (let offset = 0; offset < chunk.length;)
          offset += (await handle.write(chunk, offset)).bytesWritten;
      }
    } catch (err: unknown) {
      // The deadline ran out (or the connection broke) while the image was on its way.
      if (run.signal.aborted && run.interruptedBy === null)
        throw new PaxlockError(
          ErrorCode.TIMEOUT,
          `the backup was not received within the --timeout of ${run.timeoutMs} ms (${sizeBytes} bytes so far; a larger --timeout?)`,
        );
      throw err;
    }
    const actual = hash.digest('hex');
    if (actual !== sha256)
      throw new Error(
        `the backup's sha256 is ${actual}, not ${sha256} as the master said: the image was damaged on the way; nothing written`,
      );
    if (!head.subarray(0, SQLITE_HEADER.length).equals(SQLITE_HEADER))
      throw new Error('the backup is not an SQLite database; nothing written');
    await handle.sync();
    await handle.close();
    if (args.force) {
      await rename(temporary, file);
    } else {
      const linked = await linkNoClobber(temporary, file);
      if (linked === 'exists') throw alreadyThere();
      if (linked === 'no-links') {
        if (await exists(file)) throw alreadyThere();
        await rename(temporary, file);
      }
    }
    isMoved = true;
    await syncDirectory(dirname(file));
    if (run.isJson) await writeJson({ cell, slot, bytes: sizeBytes, sha256, file });
    else
      await writeOut(
        `backup of cell ${cell} at slot ${slot}: ${sizeBytes} bytes, sha256 ${sha256}, written to ${file}\n`,
      );
    return ExitCode.OK;
  } finally {
    await handle.close().catch(() => undefined);
    if (!isMoved) await unlink(temporary).catch(() => undefined);
  }
}
