// One run of one CLI command: its options, its deadline, Ctrl-C, its session, its output, and
// how it ends. Every command goes through `invoke`, which guarantees the CLI's promises:
//
// - The session is closed (CloseSession) before the process exits, whatever happened, so no
//   session or lock is left behind to time out.
// - A failure is one line on stderr (`paxlock: <what>: <CODE>: <message>`) and an exit code from
//   exit.ts; never a stack trace.
// - The command finishes within its --timeout: calls are bounded by it and cancelled by a signal
//   that fires when it runs out; a backstop exits even if something still hangs.
// - Ctrl-C (SIGINT) and SIGTERM cancel the command, close the session and exit 128+N; a second
//   one exits at once. Long-running commands (watch, elect, lock) take the signal over.

import { constants } from 'node:os';
import { hostname } from 'node:os';
import { ErrorCode } from '@paxlock/shared';
import { defaultCell, parseCellList, PaxlockClient } from '../client.ts';
import { PaxlockError } from '../errors.ts';
import { errorLine, ExitCode, usageError } from './exit.ts';

/** The default bound on a whole command (connect, calls, close). */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** How long closing the session may take at the end (it expires on its own otherwise). */
const CLOSE_TIMEOUT_MS = 2_000;

/** The options every command takes. */
export interface GlobalOptions {
  readonly cell?: string | undefined;
  readonly json?: boolean | undefined;
  readonly timeout?: string | undefined;
}

/**
 * Parses a duration: `250ms`, `10s`, `1.5s`, `2m`; a bare number is seconds. Throws a usage
 * error (exit 64) otherwise.
 */
export function parseDurationMs(text: string, what = '--timeout'): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (match?.[1] === undefined)
    throw usageError(
      `${what} "${text}" is not a duration (like 500ms, 10s, 2m; a bare number is seconds)`,
    );
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  return Math.round(unit === 'ms' ? value : unit === 's' ? value * 1_000 : value * 60_000);
}

export type InterruptSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';
const INTERRUPT_SIGNALS: readonly InterruptSignal[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** The exit status of a process ended by `signal`, as shells report it. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + ((constants.signals[signal] as number | undefined) ?? 0);
}

export class Invocation {
  /** What the command is doing, for error lines: `cat /ls/local/x`. Commands refine it. */
  what: string;
  readonly command: string;
  readonly cell: readonly string[];
  readonly isJson: boolean;
  /** The --timeout given, if any (lock and elect treat its absence as "wait as long as it takes"). */
  readonly explicitTimeoutMs: number | undefined;
  /** The bound on each call: --timeout, else the default. */
  readonly timeoutMs: number;
  readonly #deadline = new AbortController();
  readonly #interrupt = new AbortController();
  readonly #signal: AbortSignal;
  #timers: NodeJS.Timeout[] = [];
  #client: PaxlockClient | null = null;
  #onInterrupt: ((signal: InterruptSignal) => void) | null = null;
  #interruptCount = 0;
  #isDeadlineStarted = false;

  constructor(command: string, subject: string | undefined, options: GlobalOptions) {
    this.command = command;
    this.what = subject === undefined ? command : `${command} ${subject}`;
    this.isJson = options.json === true;
    this.cell = options.cell === undefined ? defaultCell() : parseCellList(options.cell);
    this.explicitTimeoutMs =
      options.timeout === undefined ? undefined : parseDurationMs(options.timeout);
    if (this.explicitTimeoutMs === 0 && command !== 'lock')
      throw usageError('--timeout 0 means "do not wait", which only `lock` can do');
    // (lock --timeout 0 still gets the default time to connect; it just does not wait.)
    this.timeoutMs =
      this.explicitTimeoutMs === undefined || this.explicitTimeoutMs === 0
        ? DEFAULT_TIMEOUT_MS
        : this.explicitTimeoutMs;
    this.#signal = AbortSignal.any([this.#deadline.signal, this.#interrupt.signal]);
    for (const name of INTERRUPT_SIGNALS) process.on(name, this.#handleSignal);
  }

  /** Fires when the deadline runs out or the user interrupts. Pass it to every call. */
  get signal(): AbortSignal {
    return this.#signal;
  }

  /** The signal that interrupted the command, if one did. */
  get interruptedBy(): InterruptSignal | null {
    const reason: unknown = this.#interrupt.signal.reason;
    return this.#interrupt.signal.aborted ? (reason as Interrupted).signalName : null;
  }

  /** Call options bounded by the deadline. */
  get call(): { signal: AbortSignal; timeoutMs: number } {
    return { signal: this.#signal, timeoutMs: this.timeoutMs };
  }

  /**
   * Starts the deadline: after `ms` the signal fires with TIMEOUT, and a little later the
   * process exits whatever still runs.
   */
  startDeadline(ms: number): void {
    if (this.#isDeadlineStarted) return;
    this.#isDeadlineStarted = true;
    this.#timers.push(
      setTimeout(() => {
        this.#deadline.abort(
          new PaxlockError(ErrorCode.TIMEOUT, `not done within the --timeout of ${ms} ms`),
        );
      }, ms),
    );
    const backstop = setTimeout(
      () => {
        process.stderr.write(`paxlock: ${this.what}: TIMEOUT: not done within ${ms} ms\n`);
        process.exit(ExitCode.TIMEOUT);
      },
      ms + CLOSE_TIMEOUT_MS + 1_000,
    );
    backstop.unref();
    this.#timers.push(backstop);
  }

  /** Stops the deadline: the command is past its bounded part (a lock is held, say). */
  stopDeadline(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers = [];
  }

  /** Takes SIGINT/SIGTERM/SIGHUP over from the default (cancel and exit 128+N). */
  onInterrupt(handler: ((signal: InterruptSignal) => void) | null): void {
    this.#onInterrupt = handler;
  }

  /**
   * Connects with a session named for the command (closed by `invoke` at the end), starting the
   * deadline if the command has not already. Read-only commands pass `session: false`: they
   * read by name, so they need no session and write nothing to the log.
   */
  async connect(options: { readonly session?: boolean } = {}): Promise<PaxlockClient> {
    this.startDeadline(this.timeoutMs);
    // Looking for a master stops a little before the deadline, so that an unavailable cell is
    // reported as such (NO_QUORUM, NO_MASTER: exit 5) rather than as a TIMEOUT.
    const connecting = PaxlockClient.connect({
      cell: this.cell,
      name: `paxlock ${this.command} (${hostname()}:${process.pid})`,
      findMasterTimeoutMs: Math.max(1, this.timeoutMs - Math.min(1_000, this.timeoutMs / 5)),
      callTimeoutMs: this.timeoutMs,
      requestTimeoutMs: Math.min(3_000, this.timeoutMs),
      signal: this.#signal,
      ...(options.session === false ? { session: false } : {}),
    });
    let client: PaxlockClient;
    try {
      client = await connecting;
    } catch (err: unknown) {
      // The deadline ran out before any master answered: from here the cell is unavailable.
      if (this.#deadline.signal.aborted && !this.#interrupt.signal.aborted)
        throw new PaxlockError(
          ErrorCode.NO_MASTER,
          `no master answered within the --timeout of ${this.timeoutMs} ms`,
        );
      throw err;
    }
    this.#client = client;
    return client;
  }

  /** Closes the session if there is one; bounded, and never throws. */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    if (client !== null) await client.close({ timeoutMs: CLOSE_TIMEOUT_MS }).catch(() => undefined);
  }

  /** Removes the signal handlers and timers so that nothing keeps the process alive. */
  dispose(): void {
    this.stopDeadline();
    for (const name of INTERRUPT_SIGNALS) process.off(name, this.#handleSignal);
  }

  readonly #handleSignal = (signal: NodeJS.Signals): void => {
    const name = signal as InterruptSignal;
    this.#interruptCount++;
    if (this.#interruptCount > 1 && this.#onInterrupt === null) {
      // A second Ctrl-C: the user does not want to wait for a clean close.
      process.exit(signalExitCode(name));
    }
    if (this.#onInterrupt !== null) {
      this.#onInterrupt(name);
      return;
    }
    this.#interrupt.abort(new Interrupted(name));
  };
}

class Interrupted extends Error {
  override name = 'Interrupted';
  readonly signalName: InterruptSignal;
  constructor(signalName: InterruptSignal) {
    super(`interrupted by ${signalName}`);
    this.signalName = signalName;
  }
}

/** Writes to stdout and resolves once the bytes are handed to the OS. */
export async function writeOut(data: string | Uint8Array): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    process.stdout.write(data, (err) => {
      if (err === null || err === undefined) resolve();
      else reject(err);
    });
  });
}

/** Prints a value as JSON (indented; `compact` for one line per value, as streams want). */
export async function writeJson(value: unknown, compact = false): Promise<void> {
  await writeOut(`${JSON.stringify(value, null, compact ? undefined : 2)}\n`);
}

/**
 * Runs one command and exits the process with its code: the body returns the exit code, or
 * throws a failure that is reported as one line. The session is closed first, in every case.
 */
export async function invoke(
  command: string,
  subject: string | undefined,
  options: GlobalOptions,
  body: (run: Invocation) => Promise<number>,
): Promise<never> {
  let run: Invocation | null = null;
  let exitCode: number;
  try {
    run = new Invocation(command, subject, options);
    exitCode = await body(run);
  } catch (err: unknown) {
    const interrupted = run?.interruptedBy ?? null;
    if (interrupted !== null) {
      exitCode = signalExitCode(interrupted);
    } else {
      const report = errorLine(
        run?.what ?? (subject === undefined ? command : `${command} ${subject}`),
        err,
      );
      process.stderr.write(`${report.line}\n`);
      exitCode = report.exitCode;
    }
  }
  await run?.close();
  run?.dispose();
  // stdout may be a pipe still draining; exit only once it has taken everything.
  await writeOut('').catch(() => undefined);
  process.exit(exitCode);
}
