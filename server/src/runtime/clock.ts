// The process's clock: monotonic milliseconds on the Unix-epoch scale. Monotonic because the
// core's leases are measured with it and must never jump backwards with a wall-clock step; on
// the epoch scale because the master stamps entries with it, and those stamps become the
// modification times users read. Nothing else in the server reads time.

import { performance } from 'node:perf_hooks';

export interface Clock {
  now(): number;
}

export const processClock: Clock = {
  // Whole milliseconds: entry stamps are integers, and sub-ms precision buys the leases nothing.
  now: () => Math.floor(performance.timeOrigin + performance.now()),
};
