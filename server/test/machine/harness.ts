// A small driver for state-machine tests: an in-memory machine on cell `c`, a slot counter, a
// clock the test moves, and per-session request seqs, so a test reads as the commands it sends.
import { expect } from 'vitest';
import type {
  CommandResult,
  CreatePolicy,
  LockMode,
  MachineEvent,
  QueryResult,
} from '@paxlock/shared';
import { StateMachine, type ApplyOutcome } from '../../src/machine/index.ts';

export const CELL = 'c';
export const ROOT = '/ls/c';

export interface OpenOptions {
  create?: CreatePolicy;
  ephemeral?: boolean;
  directory?: boolean;
  contents?: Uint8Array;
  eventMask?: number;
  lockDelayMs?: number;
}

export class Harness {
  readonly machine: StateMachine;
  nowMs = 1_000;
  readonly #seqs = new Map<number, number>();

  constructor(machine?: StateMachine) {
    this.machine = machine ?? StateMachine.createInMemory({ cell: CELL });
  }

  /** Applies one entry of raw commands at the current time, then checks every invariant. */
  entry(...commands: unknown[]): ApplyOutcome {
    const outcome = this.machine.apply({
      slot: this.machine.appliedIndex + 1,
      stampMs: this.nowMs,
      commands,
    });
    this.machine.checkInvariants();
    return outcome;
  }

  /** Applies one command in its own entry and returns its result and the entry's events. */
  run(command: unknown): { result: CommandResult; events: readonly MachineEvent[] } {
    const { results, events } = this.entry(command);
    const result = results[0];
    expect(result).toBeDefined();
    return { result: result!, events };
  }

  nextSeq(session: number): number {
    const seq = (this.#seqs.get(session) ?? 0) + 1;
    this.#seqs.set(session, seq);
    return seq;
  }

  session(clientName = 'client', leaseMs = 12_000): number {
    const { result } = this.run({ type: 'CreateSession', clientName, leaseMs });
    expect(result.type).toBe('session-created');
    return result.type === 'session-created' ? result.session : 0;
  }

  openCommand(session: number, path: string, options: OpenOptions = {}): Record<string, unknown> {
    return {
      type: 'Open',
      session,
      seq: this.nextSeq(session),
      path,
      create: options.create ?? 'may',
      ephemeral: options.ephemeral ?? false,
      directory: options.directory ?? false,
      eventMask: options.eventMask ?? 0,
      lockDelayMs: options.lockDelayMs ?? 0,
      ...(options.contents === undefined ? {} : { contents: options.contents }),
    };
  }

  open(
    session: number,
    path: string,
    options: OpenOptions = {},
  ): { result: CommandResult; events: readonly MachineEvent[] } {
    return this.run(this.openCommand(session, path, options));
  }

  /** Opens and returns the handle, failing the test if the open failed. */
  handle(session: number, path: string, options: OpenOptions = {}): number {
    const { result } = this.open(session, path, options);
    if (result.type !== 'opened') throw new Error(`open ${path} failed: ${JSON.stringify(result)}`);
    return result.handle;
  }

  /** Sends a session command of the given type with a fresh seq. */
  send(
    type: string,
    session: number,
    fields: Record<string, unknown> = {},
  ): { result: CommandResult; events: readonly MachineEvent[] } {
    return this.run({ type, session, seq: this.nextSeq(session), ...fields });
  }

  setContents(session: number, handle: number, text: string, ifGeneration?: number): CommandResult {
    return this.send('SetContents', session, {
      handle,
      contents: bytes(text),
      ...(ifGeneration === undefined ? {} : { ifGeneration }),
    }).result;
  }

  acquire(
    session: number,
    handle: number,
    mode: LockMode = 'exclusive',
    wait = false,
  ): { result: CommandResult; events: readonly MachineEvent[] } {
    return this.send('Acquire', session, { handle, mode, wait });
  }

  query(query: unknown): QueryResult {
    return this.machine.query(query);
  }

  contents(session: number, handle: number): string {
    const result = this.query({ type: 'GetContentsAndStat', session, handle });
    if (result.type !== 'contents-and-stat') throw new Error(JSON.stringify(result));
    return new TextDecoder().decode(result.contents);
  }

  stat(session: number, handle: number): QueryResult {
    return this.query({ type: 'GetStat', session, handle });
  }

  dir(session: number, handle: number): string[] {
    const result = this.query({ type: 'ReadDir', session, handle });
    if (result.type !== 'dir') throw new Error(JSON.stringify(result));
    return result.entries.map((entry) => entry.name);
  }

  locks(path?: string): QueryResult {
    return this.query(path === undefined ? { type: 'ListLocks' } : { type: 'ListLocks', path });
  }
}

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function errorCode(result: CommandResult | QueryResult): string | undefined {
  return result.type === 'error' ? result.code : undefined;
}
