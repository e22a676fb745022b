// The write-path trace (`paxlock-server --trace-file PATH`): a timestamp for each stage a write
// passes through in this replica, so the latency of one write can be taken apart across the five
// processes (scripts/trace-writes.ts does it). Stamps are process.hrtime in nanoseconds, the
// system's monotonic clock, which all processes on one machine share. Marks are buffered and
// appended to the file every 250 ms and at stop, never on the write path itself; off by default.

import { appendFileSync } from 'node:fs';

export type TraceStage =
  | 'client-frame' // a client frame arrived (the command's first sight at the master)
  | 'turn' // a core turn starts
  | 'peers-out' // a frame to a peer is written to its socket
  | 'peer-in' // a peer message arrived
  | 'persist-start' // paxos.db transaction begins (fsync when it holds accepts or a promise)
  | 'persist-end'
  | 'apply-start' // a chosen slot is applied to the state machine
  | 'apply-end'
  | 'replies-out'; // replies written to client sockets

export class WriteTrace {
  readonly #path: string;
  readonly #replica: number;
  #buffer: string[] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(path: string, replica: number) {
    this.#path = path;
    this.#replica = replica;
    this.#timer = setInterval(() => {
      this.flush();
    }, 250);
    this.#timer.unref();
  }

  /** Records `stage` now; `detail` is free text without newlines (message types, counts). */
  mark(stage: TraceStage, detail = ''): void {
    const line = `${process.hrtime.bigint().toString()} ${this.#replica.toString()} ${stage}`;
    this.#buffer.push(detail === '' ? line : `${line} ${detail}`);
  }

  flush(): void {
    if (this.#buffer.length === 0) return;
    const lines = this.#buffer;
    this.#buffer = [];
    appendFileSync(this.#path, `${lines.join('\n')}\n`);
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
