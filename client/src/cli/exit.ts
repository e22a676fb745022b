// The CLI's exit codes and its one-line error reports. Scripts branch on the exit code, so each
// code stands for one kind of outcome, whatever the command: the cell's ErrorCode (and the
// client's own codes) map onto a handful of them here, in one place, and the `--help` epilogue
// prints the same table.

import { ErrorCode } from '@paxlock/shared';
import { ClientErrorCode, PaxlockError, type PaxlockErrorCode } from '../errors.ts';

export const ExitCode = {
  OK: 0,
  /** Any failure not listed below (IS_A_DIRECTORY, SESSION_EXPIRED, ...). */
  FAILED: 1,
  NOT_FOUND: 2,
  /** A condition did not hold: CAS_MISMATCH, EXISTS, NOT_EMPTY, LOCK_HELD, LOCK_DELAYED. */
  CONFLICT: 3,
  TIMEOUT: 4,
  /** No master, no quorum, no replica reachable. */
  UNAVAILABLE: 5,
  /** `lock` and `elect`: the lock or the leadership was lost while held. */
  LOST: 6,
  /** Bad usage or bad input (sysexits EX_USAGE): flags, names, a value over its limit. */
  USAGE: 64,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code for a failure with this code. */
export function exitCodeOf(code: PaxlockErrorCode): ExitCode {
  switch (code) {
    case ErrorCode.NOT_FOUND:
      return ExitCode.NOT_FOUND;
    case ErrorCode.CAS_MISMATCH:
    case ErrorCode.EXISTS:
    case ErrorCode.NOT_EMPTY:
    case ErrorCode.LOCK_HELD:
    case ErrorCode.LOCK_DELAYED:
      return ExitCode.CONFLICT;
    case ErrorCode.TIMEOUT:
      return ExitCode.TIMEOUT;
    case ErrorCode.NO_MASTER:
    case ErrorCode.NOT_MASTER:
    case ErrorCode.NO_QUORUM:
    case ErrorCode.BUSY:
      return ExitCode.UNAVAILABLE;
    case ClientErrorCode.LOCK_LOST:
      return ExitCode.LOST;
    case ErrorCode.BAD_PATH:
    case ErrorCode.BAD_REQUEST:
    case ErrorCode.TOO_LARGE:
    case ClientErrorCode.BAD_SEQUENCER:
      return ExitCode.USAGE;
    case ErrorCode.NOT_A_DIRECTORY:
    case ErrorCode.IS_A_DIRECTORY:
    case ErrorCode.LOCK_NOT_HELD:
    case ErrorCode.LOCK_ALREADY_OWNED:
    case ErrorCode.NOT_WAITING:
    case ErrorCode.BAD_HANDLE:
    case ErrorCode.SESSION_EXPIRED:
    case ErrorCode.STALE_SEQ:
    case ErrorCode.TOO_MANY:
    case ErrorCode.PERMISSION_DENIED:
    case ErrorCode.BAD_FRAME:
    case ErrorCode.FRAME_TOO_LARGE:
    case ClientErrorCode.CLIENT_CLOSED:
      return ExitCode.FAILED;
  }
}

/** The `--help` epilogue: the exit codes, as scripts should read them. */
export const EXIT_CODES_HELP = [
  'Exit codes:',
  '  0   ok',
  '  1   other failure (IS_A_DIRECTORY, NOT_A_DIRECTORY, SESSION_EXPIRED, ...)',
  '  2   not found (NOT_FOUND)',
  '  3   conflict (CAS_MISMATCH, EXISTS, NOT_EMPTY, LOCK_HELD, LOCK_DELAYED)',
  '  4   timeout (TIMEOUT: --timeout ran out)',
  '  5   cell unavailable (NO_MASTER, NO_QUORUM, no replica reachable)',
  '  6   lock or leadership lost while held (LOCK_LOST)',
  '  64  bad usage or input (unknown flag, BAD_PATH, BAD_REQUEST, TOO_LARGE)',
  '  lock -- CMD exits with the status of CMD (128+N if CMD was killed by signal N);',
  '  127 if CMD could not be found, 126 if it could not be run.',
].join('\n');

/** A usage error found by the CLI itself (before or without asking the cell). */
export function usageError(message: string): PaxlockError {
  return new PaxlockError(ErrorCode.BAD_REQUEST, message);
}

/**
 * The one line reported for a failure: `paxlock: <what>: <CODE>: <message>`. The library's
 * messages often start with their own `<verb> <path>: `; when `what` already names that path the
 * prefix only repeats it, so it is dropped.
 */
export function errorLine(what: string, err: unknown): { line: string; exitCode: ExitCode } {
  if (err instanceof PaxlockError) {
    let message = err.message;
    const prefix = /^[a-z][a-z ]* (\/ls\/\S*): /.exec(message);
    if (prefix?.[1] !== undefined && what.includes(prefix[1]))
      message = message.slice(prefix[0].length);
    return {
      line: `paxlock: ${what}: ${err.code}: ${oneLine(message)}`,
      exitCode: exitCodeOf(err.code),
    };
  }
  // Not a PaxlockError: a local failure (a file, the terminal) or a bug. Still one line: the
  // message says what happened; a stack trace would say nothing more to an operator.
  const message = err instanceof Error ? err.message : String(err);
  return { line: `paxlock: ${what}: ${oneLine(message)}`, exitCode: ExitCode.FAILED };
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
