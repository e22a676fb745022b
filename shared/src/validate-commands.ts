// The only door from `unknown` to a MachineCommand or Query (STYLE.md, Boundaries). Commands
// reach the state machine as decoded log payloads, queries as decoded frames; both are checked
// here field by field: type, range, size and path syntax. Unknown fields are rejected, so the
// log never carries data the machine ignores. A failure is a stable ErrorCode and a message,
// never an exception. Whether a path belongs to this cell is the machine's check, not this one.

import { ErrorCode } from './errors.ts';
import { LIMITS } from './limits.ts';
import { componentError, pathError } from './paths.ts';
import { EVENT_MASK_ALL } from './commands.ts';
import type { Acl, CreatePolicy, LockMode, MachineCommand, Query } from './commands.ts';

export interface ValidationError {
  readonly error: ErrorCode;
  readonly message: string;
}

export function isValidationError(
  value: MachineCommand | Query | ValidationError,
): value is ValidationError {
  return 'error' in value;
}

/** Thrown only inside this module and caught at its two entry points: a structured early exit. */
class Invalid extends Error {
  readonly error: ErrorCode;

  constructor(error: ErrorCode, message: string) {
    super(message);
    this.error = error;
  }
}

type Fields = Readonly<Record<string, unknown>>;

function fields(value: unknown, allowed: readonly string[]): Fields {
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    value instanceof Uint8Array
  ) {
    throw new Invalid(ErrorCode.BAD_REQUEST, 'not an object');
  }
  const record = value as Fields;
  for (const key of Object.keys(record)) {
    if (!allowed.includes(key)) throw new Invalid(ErrorCode.BAD_REQUEST, `unknown field "${key}"`);
  }
  return record;
}

function id(record: Fields, key: string): number {
  const value = record[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new Invalid(ErrorCode.BAD_REQUEST, `${key} must be a positive safe integer`);
  }
  return value;
}

function integerIn(record: Fields, key: string, min: number, max: number): number {
  const value = record[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Invalid(ErrorCode.BAD_REQUEST, `${key} must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function bool(record: Fields, key: string): boolean {
  const value = record[key];
  if (typeof value !== 'boolean')
    throw new Invalid(ErrorCode.BAD_REQUEST, `${key} must be a boolean`);
  return value;
}

function path(record: Fields, key: string): string {
  const value = record[key];
  if (typeof value !== 'string')
    throw new Invalid(ErrorCode.BAD_REQUEST, `${key} must be a string`);
  const error = pathError(value);
  if (error !== undefined) throw new Invalid(ErrorCode.BAD_PATH, `${key}: ${error}`);
  return value;
}

function contents(record: Fields, key: string): Uint8Array {
  const value = record[key];
  if (!(value instanceof Uint8Array))
    throw new Invalid(ErrorCode.BAD_REQUEST, `${key} must be bytes`);
  if (value.length > LIMITS.fileContentsMaxBytes) {
    throw new Invalid(
      ErrorCode.TOO_LARGE,
      `${key} is ${value.length} bytes, over ${LIMITS.fileContentsMaxBytes}`,
    );
  }
  return value;
}

function oneOf<T extends string>(record: Fields, key: string, options: readonly T[]): T {
  const value = record[key];
  const match = options.find((option) => option === value);
  if (match === undefined)
    throw new Invalid(ErrorCode.BAD_REQUEST, `${key} must be one of ${options.join(', ')}`);
  return match;
}

function aclName(record: Fields, key: string): string {
  const value = record[key];
  if (typeof value !== 'string')
    throw new Invalid(ErrorCode.BAD_REQUEST, `acl.${key} must be a string`);
  if (value !== '') {
    const error = componentError(value);
    if (error !== undefined) throw new Invalid(ErrorCode.BAD_REQUEST, `acl.${key}: ${error}`);
  }
  return value;
}

function acl(record: Fields, key: string): Acl {
  const inner = fields(record[key], ['read', 'write', 'changeAcl']);
  return {
    read: aclName(inner, 'read'),
    write: aclName(inner, 'write'),
    changeAcl: aclName(inner, 'changeAcl'),
  };
}

const noncePattern = new RegExp(`^[A-Za-z0-9_-]{1,${LIMITS.sessionNonceMaxChars}}$`);
const createPolicies: readonly CreatePolicy[] = ['never', 'may', 'must'];
const lockModes: readonly LockMode[] = ['exclusive', 'shared'];
const sessionFields = ['type', 'session', 'seq'] as const;
const handleFields = [...sessionFields, 'handle'] as const;

function typeOf(value: unknown): unknown {
  return typeof value === 'object' && value !== null ? (value as Fields)['type'] : undefined;
}

function commandOf(value: unknown): MachineCommand {
  const type = typeOf(value);
  switch (type) {
    case 'CreateSession': {
      const r = fields(value, ['type', 'clientName', 'leaseMs', 'nonce']);
      const clientName = r['clientName'];
      if (typeof clientName !== 'string')
        throw new Invalid(ErrorCode.BAD_REQUEST, 'clientName must be a string');
      if (clientName.length > LIMITS.clientNameMaxChars) {
        throw new Invalid(
          ErrorCode.TOO_LARGE,
          `clientName longer than ${LIMITS.clientNameMaxChars}`,
        );
      }
      const leaseMs = integerIn(r, 'leaseMs', LIMITS.sessionLeaseMinMs, LIMITS.sessionLeaseMaxMs);
      const nonce = r['nonce'];
      if (nonce === undefined) return { type, clientName, leaseMs };
      if (typeof nonce !== 'string' || !noncePattern.test(nonce)) {
        throw new Invalid(
          ErrorCode.BAD_REQUEST,
          `nonce must be 1 to ${LIMITS.sessionNonceMaxChars} characters of [A-Za-z0-9_-]`,
        );
      }
      return { type, clientName, leaseMs, nonce };
    }
    case 'CloseSession': {
      const r = fields(value, sessionFields);
      return { type, session: id(r, 'session'), seq: id(r, 'seq') };
    }
    case 'ExpireSession': {
      const r = fields(value, ['type', 'session']);
      return { type, session: id(r, 'session') };
    }
    case 'Open': {
      const r = fields(value, [
        ...sessionFields,
        'path',
        'create',
        'ephemeral',
        'directory',
        'contents',
        'eventMask',
        'lockDelayMs',
      ]);
      const base = {
        type,
        session: id(r, 'session'),
        seq: id(r, 'seq'),
        path: path(r, 'path'),
        create: oneOf(r, 'create', createPolicies),
        ephemeral: bool(r, 'ephemeral'),
        directory: bool(r, 'directory'),
        eventMask: integerIn(r, 'eventMask', 0, EVENT_MASK_ALL),
        lockDelayMs: integerIn(r, 'lockDelayMs', 0, LIMITS.lockDelayMaxMs),
      } as const;
      if (r['contents'] === undefined) return base;
      if (base.directory) throw new Invalid(ErrorCode.BAD_REQUEST, 'a directory has no contents');
      return { ...base, contents: contents(r, 'contents') };
    }
    case 'Close':
    case 'Delete':
    case 'Release':
    case 'CancelWait': {
      const r = fields(value, handleFields);
      return { type, session: id(r, 'session'), seq: id(r, 'seq'), handle: id(r, 'handle') };
    }
    case 'SetContents': {
      const r = fields(value, [...handleFields, 'contents', 'ifGeneration']);
      const base = {
        type,
        session: id(r, 'session'),
        seq: id(r, 'seq'),
        handle: id(r, 'handle'),
        contents: contents(r, 'contents'),
      } as const;
      if (r['ifGeneration'] === undefined) return base;
      return { ...base, ifGeneration: id(r, 'ifGeneration') };
    }
    case 'SetACL': {
      const r = fields(value, [...handleFields, 'acl']);
      return {
        type,
        session: id(r, 'session'),
        seq: id(r, 'seq'),
        handle: id(r, 'handle'),
        acl: acl(r, 'acl'),
      };
    }
    case 'Acquire': {
      const r = fields(value, [...handleFields, 'mode', 'wait']);
      return {
        type,
        session: id(r, 'session'),
        seq: id(r, 'seq'),
        handle: id(r, 'handle'),
        mode: oneOf(r, 'mode', lockModes),
        wait: bool(r, 'wait'),
      };
    }
    case 'LockDelayEnd': {
      const r = fields(value, ['type', 'path']);
      return { type, path: path(r, 'path') };
    }
    default:
      throw new Invalid(ErrorCode.BAD_REQUEST, 'unknown command type');
  }
}

function queryOf(value: unknown): Query {
  const type = typeOf(value);
  switch (type) {
    case 'GetContentsAndStat':
    case 'GetStat':
    case 'ReadDir': {
      const r = fields(value, ['type', 'session', 'handle']);
      return { type, session: id(r, 'session'), handle: id(r, 'handle') };
    }
    case 'ReadPath':
    case 'StatPath':
    case 'ListPath': {
      const r = fields(value, ['type', 'path']);
      return { type, path: path(r, 'path') };
    }
    case 'CheckSequencer': {
      const r = fields(value, ['type', 'sequencer']);
      const sequencer = r['sequencer'];
      if (typeof sequencer !== 'string' || sequencer.length > LIMITS.sequencerMaxBytes) {
        throw new Invalid(
          ErrorCode.BAD_REQUEST,
          `sequencer must be a string of at most ${LIMITS.sequencerMaxBytes}`,
        );
      }
      return { type, sequencer };
    }
    case 'ListSessions':
      fields(value, ['type']);
      return { type };
    case 'ListLocks': {
      const r = fields(value, ['type', 'path', 'nowMs']);
      const query: { type: 'ListLocks'; path?: string; nowMs?: number } = { type };
      if (r['path'] !== undefined) query.path = path(r, 'path');
      if (r['nowMs'] !== undefined) query.nowMs = integerIn(r, 'nowMs', 0, Number.MAX_SAFE_INTEGER);
      return query;
    }
    default:
      throw new Invalid(ErrorCode.BAD_REQUEST, 'unknown query type');
  }
}

function guarded<T>(parse: (value: unknown) => T, value: unknown): T | ValidationError {
  try {
    return parse(value);
  } catch (err: unknown) {
    if (err instanceof Invalid) return { error: err.error, message: err.message };
    throw err;
  }
}

/** A typed command, or why the value is not one. Never throws on any input. */
export function validateCommand(value: unknown): MachineCommand | ValidationError {
  return guarded(commandOf, value);
}

/** A typed query, or why the value is not one. Never throws on any input. */
export function validateQuery(value: unknown): Query | ValidationError {
  return guarded(queryOf, value);
}
