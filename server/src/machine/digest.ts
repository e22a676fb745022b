// The state digest (Chandra, Griesemer, Redstone: Paxos Made Live, section 5.1): a checksum of
// the whole replicated state at an applied index, equal on every replica that applied the same
// log, so that replicas can compare digests through the log and catch silent divergence.
//
// It covers every row of every table in schema.ts's DIGEST_TABLES, in primary-key order, every
// column in declaration order, including the `machine` row (cell, applied index, entry time and
// all id counters), file contents byte for byte, and the sessions' reply records. Each value is
// fed with a type tag and a length prefix, so distinct states cannot collide by concatenation.
// It is FNV-1a 64 (shared/checksum.ts): good at catching accidents, not proof against attackers.

import type Database from 'better-sqlite3';
import { assert, Fnv1a64 } from '@paxlock/shared';
import { DIGEST_TABLES } from './schema.ts';

const TAG_NULL = 0;
const TAG_INTEGER = 1;
const TAG_TEXT = 2;
const TAG_BLOB = 3;
const TAG_ROW = 4;

export type DigestStatements = readonly Database.Statement<[], unknown[]>[];

export function prepareDigest(db: Database.Database): DigestStatements {
  return DIGEST_TABLES.map(({ table, orderBy }) =>
    db.prepare<[], unknown[]>(`SELECT * FROM ${table} ORDER BY ${orderBy}`).raw(true),
  );
}

export function computeDigest(statements: DigestStatements): string {
  const hash = new Fnv1a64();
  statements.forEach((statement, index) => {
    hash.updateString(DIGEST_TABLES[index]?.table ?? '');
    for (const row of statement.iterate()) {
      hash.updateByte(TAG_ROW);
      for (const value of row) {
        if (value === null) {
          hash.updateByte(TAG_NULL);
        } else if (typeof value === 'number') {
          assert(Number.isSafeInteger(value) && value >= 0, `digest: unexpected number ${value}`);
          hash.updateByte(TAG_INTEGER).updateUint(value);
        } else if (typeof value === 'string') {
          hash.updateByte(TAG_TEXT).updateString(value);
        } else {
          assert(value instanceof Uint8Array, 'digest: unexpected column type');
          hash.updateByte(TAG_BLOB).updateBytes(value);
        }
      }
    }
  });
  return hash.hex();
}
