// The only door from the wire (STYLE.md, Boundaries): a decoded frame is `unknown` until one of
// these returns a typed value. validateClientFrame is what a replica runs on every frame from a
// client; validateServerFrame is what the client runs on every frame from a replica. Neither
// throws on any input: a bad frame yields a stable ErrorCode and, where it could be read, the
// request id, so the replica can answer it and keep the connection.

import { ErrorCode, isErrorCode } from './errors.ts';
import { LIMITS } from './limits.ts';
import { isValidationError, validateCommand, validateQuery } from './validate-commands.ts';
import type { ClientFrame, Epoch, ServerFrame } from './protocol.ts';

export interface FrameError {
  readonly error: ErrorCode;
  readonly message: string;
  /** The request id, when the frame had a readable one. */
  readonly id: number | null;
}

export function isFrameError(value: ClientFrame | ServerFrame | FrameError): value is FrameError {
  return !('type' in value);
}

type Fields = Readonly<Record<string, unknown>>;

function asRecord(value: unknown): Fields | null {
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    value instanceof Uint8Array
  )
    return null;
  return value as Fields;
}

function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isPositiveId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;
}

function hasOnly(record: Fields, allowed: readonly string[]): string | null {
  for (const key of Object.keys(record)) if (!allowed.includes(key)) return key;
  return null;
}

export function validateClientFrame(raw: unknown): ClientFrame | FrameError {
  const record = asRecord(raw);
  if (record === null)
    return { error: ErrorCode.BAD_FRAME, message: 'frame is not an object', id: null };
  const id = record['id'];
  if (!isId(id))
    return {
      error: ErrorCode.BAD_FRAME,
      message: 'id must be a non-negative safe integer',
      id: null,
    };
  const bad = (message: string, error: ErrorCode = ErrorCode.BAD_FRAME): FrameError => ({
    error,
    message,
    id,
  });
  const type = record['type'];
  switch (type) {
    case 'command': {
      const extra = hasOnly(record, ['type', 'id', 'command']);
      if (extra !== null) return bad(`unknown field "${extra}"`);
      const command = validateCommand(record['command']);
      if (isValidationError(command)) return bad(command.message, command.error);
      // Only the master issues these two; a client must not be able to expire another session.
      if (command.type === 'ExpireSession' || command.type === 'LockDelayEnd') {
        return bad(`${command.type} is issued by the master only`, ErrorCode.BAD_REQUEST);
      }
      return { type, id, command };
    }
    case 'query': {
      const extra = hasOnly(record, ['type', 'id', 'query', 'maxStalenessMs']);
      if (extra !== null) return bad(`unknown field "${extra}"`);
      const query = validateQuery(record['query']);
      if (isValidationError(query)) return bad(query.message, query.error);
      const maxStalenessMs = record['maxStalenessMs'];
      if (maxStalenessMs === undefined) return { type, id, query };
      if (
        typeof maxStalenessMs !== 'number' ||
        !Number.isSafeInteger(maxStalenessMs) ||
        maxStalenessMs < 0 ||
        maxStalenessMs > LIMITS.staleReadMaxMs
      ) {
        return bad(`maxStalenessMs must be an integer from 0 to ${LIMITS.staleReadMaxMs}`);
      }
      return { type, id, query, maxStalenessMs };
    }
    case 'keep-alive': {
      const extra = hasOnly(record, ['type', 'id', 'session', 'eventSeqSeen']);
      if (extra !== null) return bad(`unknown field "${extra}"`);
      const session = record['session'];
      const eventSeqSeen = record['eventSeqSeen'];
      if (!isPositiveId(session)) return bad('session must be a positive safe integer');
      if (!isId(eventSeqSeen)) return bad('eventSeqSeen must be a non-negative safe integer');
      return { type, id, session, eventSeqSeen };
    }
    case 'status': {
      const extra = hasOnly(record, ['type', 'id', 'digest']);
      if (extra !== null) return bad(`unknown field "${extra}"`);
      const digest = record['digest'];
      if (digest !== undefined && typeof digest !== 'boolean')
        return bad('digest must be a boolean');
      return digest === undefined ? { type, id } : { type, id, digest };
    }
    default:
      return bad('unknown frame type');
  }
}

function isEpoch(value: unknown): value is Epoch {
  const r = asRecord(value);
  return r !== null && isId(r['round']) && isId(r['replica']);
}

function isTypedObject(value: unknown): boolean {
  const r = asRecord(value);
  return r !== null && typeof r['type'] === 'string';
}

function isAddressOrNull(value: unknown): value is string | null {
  return value === null || (typeof value === 'string' && value.length <= 300);
}

/**
 * Checks a frame from a replica. Results and events are checked for shape (a typed object);
 * the client reads their fields through its own typed accessors, which treat a missing field
 * as a protocol error.
 */
export function validateServerFrame(raw: unknown): ServerFrame | FrameError {
  const r = asRecord(raw);
  if (r === null)
    return { error: ErrorCode.BAD_FRAME, message: 'frame is not an object', id: null };
  const id = isId(r['id']) ? r['id'] : null;
  const bad = (message: string): FrameError => ({ error: ErrorCode.BAD_FRAME, message, id });
  const epoch = r['epoch'];
  switch (r['type']) {
    case 'result':
      if (id === null || !isEpoch(epoch) || !isId(r['slot']) || !isTypedObject(r['result']))
        return bad('malformed result');
      return raw as ServerFrame;
    case 'query-result':
      if (id === null || !isEpoch(epoch) || !isId(r['slot']) || !isTypedObject(r['result']))
        return bad('malformed query result');
      if (
        (r['stalenessMs'] !== undefined && !isId(r['stalenessMs'])) ||
        (r['replica'] !== undefined && !isPositiveId(r['replica']))
      ) {
        return bad('malformed query result');
      }
      return raw as ServerFrame;
    case 'keep-alive-ack':
      if (
        id === null ||
        !isEpoch(epoch) ||
        typeof r['leaseRemainingMs'] !== 'number' ||
        !isId(r['eventSeq']) ||
        typeof r['isEventGap'] !== 'boolean'
      ) {
        return bad('malformed keep-alive-ack');
      }
      return raw as ServerFrame;
    case 'status': {
      const s = asRecord(r['status']);
      if (
        id === null ||
        s === null ||
        !isPositiveId(s['id']) ||
        typeof s['cell'] !== 'string' ||
        !isEpoch(s['epoch']) ||
        !isAddressOrNull(s['master']) ||
        !isId(s['commit']) ||
        !isId(s['applied']) ||
        typeof s['isVoter'] !== 'boolean' ||
        !isId(s['diskId']) ||
        !['master', 'follower', 'candidate'].includes(s['role'] as string)
      ) {
        return bad('malformed status');
      }
      return raw as ServerFrame;
    }
    case 'redirect':
      if (id === null || !isAddressOrNull(r['master']) || !isEpoch(epoch))
        return bad('malformed redirect');
      return raw as ServerFrame;
    case 'error':
      if (!isErrorCode(r['code']) || typeof r['message'] !== 'string')
        return bad('malformed error');
      return raw as ServerFrame;
    case 'event':
      if (
        !isPositiveId(r['session']) ||
        !isPositiveId(r['eventSeq']) ||
        !isEpoch(epoch) ||
        !isTypedObject(r['event'])
      )
        return bad('malformed event');
      return raw as ServerFrame;
    case 'master-failover':
      if (!isEpoch(epoch)) return bad('malformed master-failover');
      return raw as ServerFrame;
    default:
      return bad('unknown frame type');
  }
}
