// The correctness workload (FoundationDB runs one beside the fault workloads): clients of a
// key-value register machine. Each client runs one operation at a time, closed loop:
//
// - a write is a put with a fresh (clientId, seq); it goes to whoever the client believes is
//   master, follows redirects, and after a time-out retries with the SAME (clientId, seq) at
//   another replica, so the cell must apply it once however many times it is proposed;
// - a read goes to the believed master, which answers from its applied state only while its
//   lease lets it (canServeReads), otherwise redirects.
//
// Values are the writer's identity "clientId:seq", so a read names the write it saw. The client
// owns no transport: it asks the cluster to send and to set timers through the hooks.

import { assertNever } from '@paxlock/shared';
import type { ReplicaId } from '../src/paxos/ports.ts';
import type { SimRandom } from './random.ts';

export type ClientOp =
  | {
      readonly kind: 'write';
      readonly id: number;
      readonly key: string;
      readonly seq: number;
      readonly invokedAt: number;
    }
  | {
      readonly kind: 'read';
      readonly id: number;
      readonly key: string;
      readonly invokedAt: number;
    };

export type ClientRequest =
  | {
      readonly type: 'write';
      readonly client: number;
      readonly opId: number;
      readonly clientId: string;
      readonly seq: number;
      readonly key: string;
    }
  | { readonly type: 'read'; readonly client: number; readonly opId: number; readonly key: string };

export type ClientReply =
  | {
      readonly type: 'write-ok';
      readonly opId: number;
      readonly effectSlot: number;
      readonly from: ReplicaId;
    }
  | {
      readonly type: 'read-ok';
      readonly opId: number;
      readonly value: string | null;
      readonly from: ReplicaId;
    }
  | {
      readonly type: 'redirect';
      readonly opId: number;
      readonly masterId: ReplicaId | null;
      readonly from: ReplicaId;
    };

export interface ClientHooks {
  send(to: ReplicaId, request: ClientRequest): void;
  /** Calls back onTimer(token) after `delayMs` of global time. */
  setTimer(delayMs: number, token: number): void;
  completed(op: ClientOp, reply: ClientReply, now: number): void;
}

export class SimClient {
  readonly index: number;
  readonly clientId: string;
  op: ClientOp | null = null;
  completedOps = 0;
  #seq = 0;
  #nextOpId = 1;
  #attempt = 0;
  #believedMaster: ReplicaId | null = null;
  /** Each timer carries the token it was set with; only the latest one counts. */
  #timerToken = 0;
  #timer: { readonly token: number; readonly kind: 'next' | 'timeout' | 'resend' } | null = null;
  #redirects = 0;
  readonly #random: SimRandom;
  readonly #replicas: readonly ReplicaId[];
  readonly #options: {
    readonly keys: number;
    readonly writeShare: number;
    readonly timeoutMs: number;
  };
  readonly #hooks: ClientHooks;

  constructor(options: {
    readonly index: number;
    readonly random: SimRandom;
    readonly replicas: readonly ReplicaId[];
    readonly keys: number;
    readonly writeShare: number;
    readonly timeoutMs: number;
    readonly hooks: ClientHooks;
  }) {
    this.index = options.index;
    this.clientId = `c${options.index}`;
    this.#random = options.random;
    this.#replicas = options.replicas;
    this.#options = options;
    this.#hooks = options.hooks;
  }

  /** Starts the next operation (called at start and a think time after each completion). */
  startNext(now: number): void {
    const key = `k${this.#random.int(this.#options.keys)}`;
    const id = this.#nextOpId++;
    if (this.#random.chance(this.#options.writeShare)) {
      this.#seq++;
      this.op = { kind: 'write', id, key, seq: this.#seq, invokedAt: now };
    } else {
      this.op = { kind: 'read', id, key, invokedAt: now };
    }
    this.#attempt = 0;
    this.#redirects = 0;
    this.#send();
  }

  onReply(reply: ClientReply, now: number): void {
    const op = this.op;
    if (op === null || reply.opId !== op.id) return; // A late answer to an earlier attempt or operation.
    switch (reply.type) {
      case 'write-ok':
      case 'read-ok':
        this.#believedMaster = reply.from;
        this.op = null;
        this.completedOps++;
        this.#hooks.completed(op, reply, now);
        this.#arm('next', this.#random.range(0, 20));
        return;
      case 'redirect':
        this.#redirects++;
        this.#believedMaster =
          reply.masterId !== null && reply.masterId !== reply.from
            ? reply.masterId
            : this.#otherReplica(reply.from);
        // Back off a little more each time, so a cell without a master is not flooded.
        this.#arm('resend', Math.min(5 * this.#redirects, 100));
        return;
      default:
        assertNever(reply);
    }
  }

  /** A timer fired; only the most recently armed one counts. */
  onTimer(token: number, now: number): void {
    const timer = this.#timer;
    if (timer === null || token !== timer.token) return;
    this.#timer = null;
    switch (timer.kind) {
      case 'next':
        this.startNext(now);
        return;
      case 'timeout':
        // No answer: the believed master is suspect, so try another replica, same (clientId, seq).
        if (this.#believedMaster !== null)
          this.#believedMaster = this.#otherReplica(this.#believedMaster);
        this.#send();
        return;
      case 'resend':
        this.#send();
        return;
      default:
        assertNever(timer.kind);
    }
  }

  #arm(kind: 'next' | 'timeout' | 'resend', delayMs: number): void {
    const token = ++this.#timerToken;
    this.#timer = { token, kind };
    this.#hooks.setTimer(delayMs, token);
  }

  #send(): void {
    const op = this.op;
    if (op === null) return;
    this.#attempt++;
    const to = this.#believedMaster ?? this.#random.pick(this.#replicas);
    this.#believedMaster = to;
    const request: ClientRequest =
      op.kind === 'write'
        ? {
            type: 'write',
            client: this.index,
            opId: op.id,
            clientId: this.clientId,
            seq: op.seq,
            key: op.key,
          }
        : { type: 'read', client: this.index, opId: op.id, key: op.key };
    this.#hooks.send(to, request);
    this.#arm('timeout', this.#options.timeoutMs);
  }

  get attempts(): number {
    return this.#attempt;
  }

  #otherReplica(not: ReplicaId): ReplicaId {
    const others = this.#replicas.filter((r) => r !== not);
    return this.#random.pick(others);
  }
}
