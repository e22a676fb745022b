// Writing a state snapshot to disk so that a crash leaves either the old file or the whole new
// one: where a replica restores a backup before it starts (restore.ts), and the durable rename
// where it installs a snapshot received from a peer (node.ts).

import { closeSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { StateMachine } from '../machine/machine.ts';

/** Writes `bytes` (a StateMachine snapshot) as a standalone database at `path`, fsynced. */
export function writeStateFile(bytes: Uint8Array, path: string): void {
  rmSync(path, { force: true });
  StateMachine.restoreToFile(bytes, path);
  fsyncPath(path);
}

/** Renames `from` to `to` and fsyncs the directory, so that the rename survives a crash. */
export function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncPath(dirname(to));
}

/** fsyncs a file or a directory. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
