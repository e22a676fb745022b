// Every failure the client library reports is a PaxlockError with a stable code: the cell's
// ErrorCode (docs/errors.md), or one of the few codes that only the client can know.

import { ErrorCode } from '@paxlock/shared';

export const ClientErrorCode = {
  /** The lock can no longer be relied on: released, its node deleted, or the session in jeopardy or expired. */
  LOCK_LOST: 'LOCK_LOST',
  /** The client was closed by the application. */
  CLIENT_CLOSED: 'CLIENT_CLOSED',
  /** A sequencer string that is not well formed. */
  BAD_SEQUENCER: 'BAD_SEQUENCER',
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

export type PaxlockErrorCode = ErrorCode | ClientErrorCode;

export class PaxlockError extends Error {
  override name = 'PaxlockError';
  readonly code: PaxlockErrorCode;
  constructor(code: PaxlockErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** True for the failures a call retries (elsewhere, later) rather than reports. */
export function isRetryable(code: PaxlockErrorCode): boolean {
  return (
    code === ErrorCode.NO_MASTER ||
    code === ErrorCode.NOT_MASTER ||
    code === ErrorCode.NO_QUORUM ||
    code === ErrorCode.BUSY ||
    code === ErrorCode.TIMEOUT
  );
}

export function isPaxlockError(err: unknown, code?: PaxlockErrorCode): err is PaxlockError {
  return err instanceof PaxlockError && (code === undefined || err.code === code);
}
