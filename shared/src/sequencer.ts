// Sequencers (Burrows 2006, section 2.4): an opaque byte string a lock holder passes to the
// servers it talks to, which ask the cell (CheckSequencer) whether it is still current. It names
// the lock's node path, the mode it was taken in, the lock generation (which grows each time the
// lock goes from free to held) and the node's instance number (which grows each time a node of
// that name is created), so a lock that was released and re-taken, or a node that was deleted
// and re-created, makes old sequencers stale.
//
// Format: `S1:<x|s>:<lockGeneration>:<instance>:<path>` with canonical decimal numbers (no
// leading zeros), so encode(parse(s)) === s for every string parse accepts. The path is last so
// that no character of it needs escaping. Callers should treat the string as opaque.

import { LIMITS } from './limits.ts';
import { isValidPath } from './paths.ts';

export type LockMode = 'exclusive' | 'shared';

export interface Sequencer {
  readonly path: string;
  readonly mode: LockMode;
  readonly lockGeneration: number;
  readonly instance: number;
}

const VERSION = 'S1';
const numberPattern = /^(0|[1-9][0-9]{0,15})$/;

export function encodeSequencer(sequencer: Sequencer): string {
  const mode = sequencer.mode === 'exclusive' ? 'x' : 's';
  return `${VERSION}:${mode}:${sequencer.lockGeneration}:${sequencer.instance}:${sequencer.path}`;
}

function parseCount(text: string | undefined): number | undefined {
  if (text === undefined || !numberPattern.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= 1 ? value : undefined;
}

/** The sequencer a string encodes, or undefined if it is not a well-formed sequencer. */
export function parseSequencer(text: string): Sequencer | undefined {
  if (text.length > LIMITS.sequencerMaxBytes) return undefined;
  const parts = text.split(':');
  if (parts.length < 5 || parts[0] !== VERSION) return undefined;
  const modeText = parts[1];
  const mode: LockMode | undefined =
    modeText === 'x' ? 'exclusive' : modeText === 's' ? 'shared' : undefined;
  const lockGeneration = parseCount(parts[2]);
  const instance = parseCount(parts[3]);
  const path = parts.slice(4).join(':');
  if (mode === undefined || lockGeneration === undefined || instance === undefined)
    return undefined;
  if (!isValidPath(path)) return undefined;
  return { path, mode, lockGeneration, instance };
}
