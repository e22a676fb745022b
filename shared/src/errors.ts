// The stable error codes of paxlock (STYLE.md, Errors): every expected failure, from the wire
// validator, the cell or the state machine, is one of these codes plus a human message. Codes
// never change meaning once shipped; docs/errors.md lists each with who returns it. A const
// object plus a literal union, not an enum (erasableSyntaxOnly).

export const ErrorCode = {
  NOT_FOUND: 'NOT_FOUND',
  EXISTS: 'EXISTS',
  NOT_EMPTY: 'NOT_EMPTY',
  NOT_A_DIRECTORY: 'NOT_A_DIRECTORY',
  IS_A_DIRECTORY: 'IS_A_DIRECTORY',
  CAS_MISMATCH: 'CAS_MISMATCH',
  LOCK_HELD: 'LOCK_HELD',
  LOCK_DELAYED: 'LOCK_DELAYED',
  LOCK_NOT_HELD: 'LOCK_NOT_HELD',
  LOCK_ALREADY_OWNED: 'LOCK_ALREADY_OWNED',
  NOT_WAITING: 'NOT_WAITING',
  BAD_HANDLE: 'BAD_HANDLE',
  SESSION_EXPIRED: 'SESSION_EXPIRED',
  STALE_SEQ: 'STALE_SEQ',
  TOO_LARGE: 'TOO_LARGE',
  TOO_MANY: 'TOO_MANY',
  BAD_PATH: 'BAD_PATH',
  BAD_REQUEST: 'BAD_REQUEST',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  NOT_MASTER: 'NOT_MASTER',
  NO_MASTER: 'NO_MASTER',
  NO_QUORUM: 'NO_QUORUM',
  BUSY: 'BUSY',
  TIMEOUT: 'TIMEOUT',
  BAD_FRAME: 'BAD_FRAME',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** One line per code: what it means to the caller. docs/errors.md expands on each. */
export const ERROR_MEANINGS: Readonly<Record<ErrorCode, string>> = {
  NOT_FOUND: 'The named node (or its parent) does not exist.',
  EXISTS: 'A node of that name already exists and the create policy was "must".',
  NOT_EMPTY: 'The directory has children, so it cannot be deleted.',
  NOT_A_DIRECTORY:
    'A directory was expected (as a parent, or asked for by Open) but a file was found.',
  IS_A_DIRECTORY:
    'A file was expected (for contents, or asked for by Open) but a directory was found.',
  CAS_MISMATCH: "SetContents' ifGeneration is not the file's current content generation.",
  LOCK_HELD:
    'The lock is held in a conflicting mode (or others are queued) and the request did not wait.',
  LOCK_DELAYED:
    'The lock is in lock-delay after its holder was lost; it cannot be taken until the delay ends.',
  LOCK_NOT_HELD: 'Release on a handle that does not hold the lock.',
  LOCK_ALREADY_OWNED:
    'Acquire on a handle that already holds the lock or is already queued for it.',
  NOT_WAITING: 'CancelWait on a handle that is not queued for the lock.',
  BAD_HANDLE:
    "The handle does not exist, is not the session's, or its node was deleted (or re-created).",
  SESSION_EXPIRED: 'The session does not exist: it expired, was closed, or never existed.',
  STALE_SEQ: "A retried request older than the session's last one; its reply is no longer kept.",
  TOO_LARGE: 'File contents (or another bounded value) exceed their limit in limits.ts.',
  TOO_MANY:
    'A count limit in limits.ts (handles per session, commands per entry) would be exceeded.',
  BAD_PATH:
    'The name breaks the path rules (characters, lengths, empty or dot components, wrong cell).',
  BAD_REQUEST:
    'The request is malformed: unknown type, missing or mistyped field, value out of range.',
  PERMISSION_DENIED: 'Reserved for ACL enforcement (a later issue); not returned yet.',
  NOT_MASTER: 'This replica is not the master; the reply names the master if it knows one.',
  NO_MASTER: 'No master is known yet (an election is in progress); retry later.',
  NO_QUORUM: 'The master could not reach a majority of replicas in time.',
  BUSY: 'The master has too many requests in flight; retry after a short wait.',
  TIMEOUT: 'The request was not answered in time; it may or may not have been applied.',
  BAD_FRAME: 'A network frame could not be decoded or failed validation.',
  FRAME_TOO_LARGE: 'A network frame exceeds the frame size limit.',
};

const errorCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && errorCodes.has(value);
}
