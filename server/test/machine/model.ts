// A reference model of the state machine: the same semantics as server/src/machine, written as
// plainly as possible over maps and arrays, with no SQL, no savepoints and no shared code beyond
// the validator, paths, checksum and sequencer encoding (tested on their own in shared/test).
// Every command checks all its preconditions before it changes anything, which is how the model
// gets "a failing command changes nothing" without transactions. model.test.ts runs random
// command sequences through both and demands the same results, events and lock/session tables.

import {
  assertNever,
  basename,
  checksum64,
  encodeSequencer,
  EventMask,
  isValidationError,
  LIMITS,
  parentOf,
  parsePath,
  validateCommand,
} from '@paxlock/shared';
import type {
  Acl,
  CommandResult,
  ErrorCode,
  LockInfo,
  LockMode,
  MachineCommand,
  MachineEvent,
  NodeStat,
  SessionInfo,
} from '@paxlock/shared';

interface Node {
  path: string;
  parent: string | undefined;
  isDirectory: boolean;
  isEphemeral: boolean;
  contents: Uint8Array;
  instance: number;
  contentGeneration: number;
  lockGeneration: number;
  aclGeneration: number;
  acl: Acl;
  createdMs: number;
  modifiedMs: number;
}
interface Handle {
  id: number;
  session: number;
  path: string;
  instance: number;
  eventMask: number;
  lockDelayMs: number;
}
interface Session {
  id: number;
  clientName: string;
  leaseMs: number;
  createdMs: number;
  lastSeq: number;
  lastResult: string | undefined;
  nonce: string | undefined;
}
interface Holder {
  handle: number;
  session: number;
  mode: LockMode;
  sinceMs: number;
}
interface Waiter extends Holder {
  id: number;
}

class Failure extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode) {
    super(code);
    this.code = code;
  }
}
function fail(code: ErrorCode): never {
  throw new Failure(code);
}

export class Model {
  readonly cell: string;
  readonly root: string;
  nowMs = 0;
  appliedIndex = 0;
  readonly nodes = new Map<string, Node>();
  readonly handles = new Map<number, Handle>();
  readonly sessions = new Map<number, Session>();
  readonly holders = new Map<string, Holder[]>();
  readonly waiters = new Map<string, Waiter[]>();
  readonly delays = new Map<string, number>();
  nextSession = 1;
  nextHandle = 1;
  nextInstance = 2;
  nextWaiter = 1;
  events: MachineEvent[] = [];

  constructor(cell: string) {
    this.cell = cell;
    this.root = `/ls/${cell}`;
    this.nodes.set(this.root, {
      path: this.root,
      parent: undefined,
      isDirectory: true,
      isEphemeral: false,
      contents: new Uint8Array(0),
      instance: 1,
      contentGeneration: 1,
      lockGeneration: 0,
      aclGeneration: 1,
      acl: { read: '', write: '', changeAcl: '' },
      createdMs: 0,
      modifiedMs: 0,
    });
  }

  apply(entry: { slot: number; stampMs: number; commands: readonly unknown[] }): {
    results: CommandResult[];
    events: MachineEvent[];
  } {
    if (entry.slot !== this.appliedIndex + 1) throw new Error('model: slot out of order');
    this.nowMs = Math.max(this.nowMs, entry.stampMs);
    const results: CommandResult[] = [];
    const events: MachineEvent[] = [];
    for (const raw of entry.commands) {
      this.events = [];
      results.push(this.#one(raw));
      events.push(...this.events);
    }
    this.appliedIndex = entry.slot;
    return { results, events };
  }

  #one(raw: unknown): CommandResult {
    const command = validateCommand(raw);
    if (isValidationError(command)) return { type: 'error', code: command.error, message: '' };
    if ('seq' in command) {
      const session = this.sessions.get(command.session);
      if (session === undefined) return { type: 'error', code: 'SESSION_EXPIRED', message: '' };
      if (command.seq < session.lastSeq) return { type: 'error', code: 'STALE_SEQ', message: '' };
      if (command.seq === session.lastSeq) return JSON.parse(session.lastResult!) as CommandResult;
    }
    try {
      const result = this.#execute(command);
      if ('seq' in command && command.type !== 'CloseSession') {
        const session = this.sessions.get(command.session)!;
        session.lastSeq = command.seq;
        session.lastResult = JSON.stringify(result);
      }
      return result;
    } catch (err: unknown) {
      if (err instanceof Failure) {
        this.events = [];
        return { type: 'error', code: err.code, message: '' };
      }
      throw err;
    }
  }

  #execute(command: MachineCommand): CommandResult {
    switch (command.type) {
      case 'CreateSession': {
        const nonce = command.nonce;
        const existing = [...this.sessions.values()].find(
          (s) => nonce !== undefined && s.nonce === nonce,
        );
        if (existing !== undefined) return { type: 'session-created', session: existing.id };
        const id = this.nextSession++;
        this.sessions.set(id, {
          id,
          clientName: command.clientName,
          leaseMs: command.leaseMs,
          createdMs: this.nowMs,
          lastSeq: 0,
          lastResult: undefined,
          nonce,
        });
        return { type: 'session-created', session: id };
      }
      case 'CloseSession':
        this.#endSession(command.session, false);
        return { type: 'session-closed' };
      case 'ExpireSession':
        this.#endSession(command.session, true);
        return { type: 'session-expired' };
      case 'Open':
        return this.#open(command);
      case 'Close': {
        const handle = this.#own(command.session, command.handle);
        this.#closeHandle(handle, false);
        return { type: 'closed' };
      }
      case 'SetContents': {
        const { handle, node } = this.#live(command.session, command.handle);
        if (node.isDirectory) fail('IS_A_DIRECTORY');
        if (command.ifGeneration !== undefined && command.ifGeneration !== node.contentGeneration)
          fail('CAS_MISMATCH');
        node.contents = command.contents;
        node.contentGeneration++;
        node.modifiedMs = this.nowMs;
        for (const watcher of this.#watchers(node, EventMask.contentsModified, handle.id)) {
          this.events.push({
            type: 'contents-modified',
            session: watcher.session,
            handle: watcher.id,
            path: node.path,
            contentGeneration: node.contentGeneration,
          });
        }
        this.#notifyParent(node, EventMask.childModified, 'child-modified');
        return {
          type: 'contents-set',
          contentGeneration: node.contentGeneration,
          checksum: checksum64(node.contents),
        };
      }
      case 'Delete': {
        const { handle, node } = this.#live(command.session, command.handle);
        if (node.parent === undefined) fail('BAD_REQUEST');
        if (node.isDirectory && this.#hasChild(node.path)) fail('NOT_EMPTY');
        this.#remove(node, handle.id);
        return { type: 'deleted' };
      }
      case 'SetACL': {
        const { node } = this.#live(command.session, command.handle);
        node.acl = { ...command.acl };
        node.aclGeneration++;
        return { type: 'acl-set', aclGeneration: node.aclGeneration };
      }
      case 'Acquire':
        return this.#acquire(command.session, command.handle, command.mode, command.wait);
      case 'Release': {
        const { handle } = this.#live(command.session, command.handle);
        if (!this.#isHolder(handle.id)) fail('LOCK_NOT_HELD');
        this.#dropLock(handle, false);
        return { type: 'released' };
      }
      case 'CancelWait': {
        const { handle } = this.#live(command.session, command.handle);
        if (!this.#isWaiter(handle.id)) fail('NOT_WAITING');
        this.#dropLock(handle, false);
        return { type: 'wait-cancelled' };
      }
      case 'LockDelayEnd': {
        const endsMs = this.delays.get(command.path);
        if (endsMs === undefined) return { type: 'lock-delay-ended', grantedCount: 0 };
        if (endsMs > this.nowMs) fail('LOCK_DELAYED');
        this.delays.delete(command.path);
        return { type: 'lock-delay-ended', grantedCount: this.#grantWaiters(command.path) };
      }
      default:
        return assertNever(command);
    }
  }

  // --- namespace

  #open(command: Extract<MachineCommand, { type: 'Open' }>): CommandResult {
    if (parsePath(command.path)?.cell !== this.cell) fail('BAD_PATH');
    const handleCount = [...this.handles.values()].filter(
      (h) => h.session === command.session,
    ).length;
    if (handleCount >= LIMITS.handlesPerSessionMax) fail('TOO_MANY');
    let node = this.nodes.get(command.path);
    const created = node === undefined;
    if (node !== undefined) {
      if (command.create === 'must') fail('EXISTS');
      if (command.directory && !node.isDirectory) fail('NOT_A_DIRECTORY');
      if (!command.directory && node.isDirectory) fail('IS_A_DIRECTORY');
    } else {
      if (command.create === 'never') fail('NOT_FOUND');
      const parentPath = parentOf(command.path)!;
      const parent = this.nodes.get(parentPath);
      if (parent === undefined) fail('NOT_FOUND');
      if (!parent.isDirectory) fail('NOT_A_DIRECTORY');
      node = {
        path: command.path,
        parent: parentPath,
        isDirectory: command.directory,
        isEphemeral: command.ephemeral,
        contents: command.contents ?? new Uint8Array(0),
        instance: this.nextInstance++,
        contentGeneration: 1,
        lockGeneration: 0,
        aclGeneration: 1,
        acl: { ...parent.acl },
        createdMs: this.nowMs,
        modifiedMs: this.nowMs,
      };
      this.nodes.set(node.path, node);
      this.#notifyParent(node, EventMask.childAdded, 'child-added');
    }
    const handle: Handle = {
      id: this.nextHandle++,
      session: command.session,
      path: node.path,
      instance: node.instance,
      eventMask: command.eventMask,
      lockDelayMs: command.lockDelayMs,
    };
    this.handles.set(handle.id, handle);
    return { type: 'opened', handle: handle.id, created, stat: this.stat(node) };
  }

  stat(node: Node): NodeStat {
    return {
      path: node.path,
      isDirectory: node.isDirectory,
      isEphemeral: node.isEphemeral,
      instance: node.instance,
      contentGeneration: node.contentGeneration,
      lockGeneration: node.lockGeneration,
      aclGeneration: node.aclGeneration,
      checksum: checksum64(node.contents),
      sizeBytes: node.contents.length,
      acl: { ...node.acl },
      createdMs: node.createdMs,
      modifiedMs: node.modifiedMs,
    };
  }

  #own(session: number, id: number): Handle {
    const handle = this.handles.get(id);
    if (handle?.session !== session) fail('BAD_HANDLE');
    return handle;
  }

  #live(session: number, id: number): { handle: Handle; node: Node } {
    const handle = this.#own(session, id);
    const node = this.nodes.get(handle.path);
    if (node?.instance !== handle.instance) fail('BAD_HANDLE');
    return { handle, node };
  }

  #liveHandles(node: Node): Handle[] {
    return [...this.handles.values()]
      .filter((h) => h.path === node.path && h.instance === node.instance)
      .sort((a, b) => a.id - b.id);
  }

  #watchers(node: Node, bit: number, except: number): Handle[] {
    return this.#liveHandles(node).filter((h) => (h.eventMask & bit) !== 0 && h.id !== except);
  }

  #notifyParent(
    node: Node,
    bit: number,
    type: 'child-added' | 'child-removed' | 'child-modified',
  ): void {
    const parent = this.nodes.get(node.parent!)!;
    for (const watcher of this.#watchers(parent, bit, 0)) {
      this.events.push({
        type,
        session: watcher.session,
        handle: watcher.id,
        path: parent.path,
        child: basename(node.path),
      });
    }
  }

  #hasChild(path: string): boolean {
    return [...this.nodes.values()].some((n) => n.parent === path);
  }

  #remove(node: Node, byHandle: number): void {
    for (const h of this.#liveHandles(node)) {
      if (h.id !== byHandle)
        this.events.push({
          type: 'handle-invalid',
          session: h.session,
          handle: h.id,
          path: node.path,
        });
    }
    let delayMs = 0;
    for (const holder of this.holders.get(node.path) ?? []) {
      if (holder.handle !== byHandle)
        delayMs = Math.max(delayMs, this.handles.get(holder.handle)!.lockDelayMs);
    }
    this.holders.delete(node.path);
    this.waiters.delete(node.path);
    if (delayMs > 0) this.#extendDelay(node.path, this.nowMs + delayMs);
    this.nodes.delete(node.path);
    this.#notifyParent(node, EventMask.childRemoved, 'child-removed');
    this.#removeIfUnneeded(this.nodes.get(node.parent!)!);
  }

  #removeIfUnneeded(node: Node): void {
    if (!node.isEphemeral) return;
    if (this.#liveHandles(node).length > 0) return;
    if (node.isDirectory && this.#hasChild(node.path)) return;
    this.#remove(node, 0);
  }

  #closeHandle(handle: Handle, isLost: boolean): void {
    this.#dropLock(handle, isLost);
    this.handles.delete(handle.id);
    const node = this.nodes.get(handle.path);
    if (node?.instance === handle.instance) this.#removeIfUnneeded(node);
  }

  #endSession(id: number, isLost: boolean): void {
    if (!this.sessions.has(id)) fail('SESSION_EXPIRED');
    const handles = [...this.handles.values()]
      .filter((h) => h.session === id)
      .sort((a, b) => a.id - b.id);
    const waited = new Set<string>();
    for (const handle of handles) {
      for (const [path, queue] of this.waiters) {
        const index = queue.findIndex((w) => w.handle === handle.id);
        if (index >= 0) {
          queue.splice(index, 1);
          waited.add(path);
        }
      }
    }
    for (const handle of handles) this.#closeHandle(handle, isLost);
    for (const path of [...waited].sort()) this.#grantWaiters(path);
    this.sessions.delete(id);
  }

  // --- locks

  #isHolder(handle: number): boolean {
    return [...this.holders.values()].some((list) => list.some((h) => h.handle === handle));
  }
  #isWaiter(handle: number): boolean {
    return [...this.waiters.values()].some((list) => list.some((w) => w.handle === handle));
  }
  #isDelayed(path: string): boolean {
    const endsMs = this.delays.get(path);
    return endsMs !== undefined && endsMs > this.nowMs;
  }
  #extendDelay(path: string, endsMs: number): void {
    this.delays.set(path, Math.max(this.delays.get(path) ?? 0, endsMs));
  }
  #holdersOf(path: string): Holder[] {
    return [...(this.holders.get(path) ?? [])].sort((a, b) => a.handle - b.handle);
  }

  #grant(node: Node, handle: { id: number; session: number }, mode: LockMode): string {
    const holders = this.holders.get(node.path) ?? [];
    if (holders.length === 0) node.lockGeneration++;
    holders.push({ handle: handle.id, session: handle.session, mode, sinceMs: this.nowMs });
    this.holders.set(node.path, holders);
    for (const watcher of this.#watchers(node, EventMask.lockAcquired, handle.id)) {
      this.events.push({
        type: 'lock-acquired',
        session: watcher.session,
        handle: watcher.id,
        path: node.path,
        mode,
      });
    }
    return encodeSequencer({
      path: node.path,
      mode,
      lockGeneration: node.lockGeneration,
      instance: node.instance,
    });
  }

  #grantWaiters(path: string): number {
    if (this.#isDelayed(path)) return 0;
    const queue = this.waiters.get(path) ?? [];
    const node = this.nodes.get(path);
    if (node === undefined) return 0;
    let granted = 0;
    while (queue.length > 0) {
      const head = queue[0]!;
      const holders = this.holders.get(path) ?? [];
      if (holders.some((h) => h.mode === 'exclusive')) break;
      if (head.mode === 'exclusive' && holders.length > 0) break;
      queue.shift();
      const sequencer = this.#grant(node, { id: head.handle, session: head.session }, head.mode);
      this.events.push({
        type: 'lock-granted',
        session: head.session,
        handle: head.handle,
        path,
        mode: head.mode,
        sequencer,
      });
      granted++;
    }
    return granted;
  }

  #acquire(session: number, id: number, mode: LockMode, wait: boolean): CommandResult {
    const { handle, node } = this.#live(session, id);
    if (this.#isHolder(handle.id) || this.#isWaiter(handle.id)) fail('LOCK_ALREADY_OWNED');
    const holders = this.#holdersOf(node.path);
    const isConflicting =
      holders.length > 0 && (mode === 'exclusive' || holders.some((h) => h.mode === 'exclusive'));
    const isQueueBusy = (this.waiters.get(node.path)?.length ?? 0) > 0;
    const isDelayed = this.#isDelayed(node.path);
    if (!isConflicting && !isQueueBusy && !isDelayed) {
      return { type: 'acquired', sequencer: this.#grant(node, handle, mode) };
    }
    if (!wait) fail(isConflicting || isQueueBusy ? 'LOCK_HELD' : 'LOCK_DELAYED');
    const queue = this.waiters.get(node.path) ?? [];
    queue.push({ id: this.nextWaiter++, handle: handle.id, session, mode, sinceMs: this.nowMs });
    this.waiters.set(node.path, queue);
    if (isConflicting) {
      for (const holder of holders) {
        if ((this.handles.get(holder.handle)!.eventMask & EventMask.conflictingLockRequest) === 0)
          continue;
        this.events.push({
          type: 'conflicting-lock-request',
          session: holder.session,
          handle: holder.handle,
          path: node.path,
          mode,
        });
      }
    }
    return { type: 'queued' };
  }

  #dropLock(handle: Handle, isLost: boolean): void {
    for (const [path, list] of this.holders) {
      const index = list.findIndex((h) => h.handle === handle.id);
      if (index < 0) continue;
      list.splice(index, 1);
      if (isLost && handle.lockDelayMs > 0)
        this.#extendDelay(path, this.nowMs + handle.lockDelayMs);
      this.#grantWaiters(path);
      return;
    }
    for (const [path, queue] of this.waiters) {
      const index = queue.findIndex((w) => w.handle === handle.id);
      if (index < 0) continue;
      queue.splice(index, 1);
      this.#grantWaiters(path);
      return;
    }
  }

  /** Handles holding some lock, by id; test generators use it to aim Release at holders. */
  holderHandles(): number[] {
    return [...this.holders.values()]
      .flatMap((list) => list.map((h) => h.handle))
      .sort((a, b) => a - b);
  }

  /** Handles waiting for some lock, by id. */
  waiterHandles(): number[] {
    return [...this.waiters.values()]
      .flatMap((list) => list.map((w) => w.handle))
      .sort((a, b) => a - b);
  }

  // --- the operator queries, for comparison with the machine's

  listSessions(): SessionInfo[] {
    return [...this.sessions.values()]
      .sort((a, b) => a.id - b.id)
      .map((s) => ({
        session: s.id,
        clientName: s.clientName,
        leaseMs: s.leaseMs,
        createdMs: s.createdMs,
        lastSeq: s.lastSeq,
        handleCount: [...this.handles.values()].filter((h) => h.session === s.id).length,
      }));
  }

  listLocks(): LockInfo[] {
    const paths = new Set<string>();
    for (const [path, list] of this.holders) if (list.length > 0) paths.add(path);
    for (const [path, list] of this.waiters) if (list.length > 0) paths.add(path);
    for (const path of this.delays.keys()) paths.add(path);
    return [...paths].sort().map((path) => {
      const node = this.nodes.get(path);
      const endsMs = this.delays.get(path);
      return {
        path,
        ...(node === undefined
          ? {}
          : { instance: node.instance, lockGeneration: node.lockGeneration }),
        holders: this.#holdersOf(path).map((h) => ({
          ...h,
          heldMs: Math.max(0, this.nowMs - h.sinceMs),
        })),
        waiters: (this.waiters.get(path) ?? []).map((w) => ({
          session: w.session,
          handle: w.handle,
          mode: w.mode,
          sinceMs: w.sinceMs,
        })),
        ...(endsMs === undefined || endsMs <= this.nowMs ? {} : { lockDelayEndsMs: endsMs }),
      };
    });
  }

  /** Every node's stat, sorted by path, for comparing the namespace. */
  listNodes(): NodeStat[] {
    return [...this.nodes.values()]
      .sort((a, b) => (a.path < b.path ? -1 : 1))
      .map((n) => this.stat(n));
  }
}
