// Proves the namespace: Open's create policies, node kinds, metadata (instance, generations,
// checksum, inherited ACLs, entry times), whole-file contents with compare-and-set and the
// 256 KiB limit, Delete rules, ephemeral clean-up on close, and the events each change causes.
import { describe, expect, test } from 'vitest';
import { checksum64, EventMask, EVENT_MASK_ALL, LIMITS } from '@paxlock/shared';
import { bytes, errorCode, Harness, ROOT } from './harness.ts';

describe('Open', () => {
  test('the cell root exists from the start as a permanent directory', () => {
    const h = new Harness();
    const s = h.session();
    const root = h.handle(s, ROOT, { create: 'never', directory: true });
    const stat = h.stat(s, root);
    expect(stat).toMatchObject({
      type: 'stat',
      stat: { path: ROOT, isDirectory: true, isEphemeral: false, instance: 1 },
    });
    expect(errorCode(h.open(s, ROOT, { create: 'must', directory: true }).result)).toBe('EXISTS');
  });

  test('create policies: never needs the node, must needs it absent, may takes either', () => {
    const h = new Harness();
    const s = h.session();
    expect(errorCode(h.open(s, `${ROOT}/a`, { create: 'never' }).result)).toBe('NOT_FOUND');
    const made = h.open(s, `${ROOT}/a`, { create: 'must' }).result;
    expect(made).toMatchObject({ type: 'opened', created: true });
    expect(errorCode(h.open(s, `${ROOT}/a`, { create: 'must' }).result)).toBe('EXISTS');
    expect(h.open(s, `${ROOT}/a`, { create: 'may' }).result).toMatchObject({
      type: 'opened',
      created: false,
    });
    expect(h.open(s, `${ROOT}/a`, { create: 'never' }).result).toMatchObject({
      type: 'opened',
      created: false,
    });
    expect(h.open(s, `${ROOT}/b`, { create: 'may' }).result).toMatchObject({
      type: 'opened',
      created: true,
    });
  });

  test('a node needs an existing directory as its parent', () => {
    const h = new Harness();
    const s = h.session();
    expect(errorCode(h.open(s, `${ROOT}/d/x`).result)).toBe('NOT_FOUND');
    h.handle(s, `${ROOT}/f`);
    expect(errorCode(h.open(s, `${ROOT}/f/x`).result)).toBe('NOT_A_DIRECTORY');
    h.handle(s, `${ROOT}/d`, { directory: true });
    expect(h.open(s, `${ROOT}/d/x`).result).toMatchObject({ type: 'opened', created: true });
  });

  test('the kind asked for must match the node found', () => {
    const h = new Harness();
    const s = h.session();
    h.handle(s, `${ROOT}/f`);
    h.handle(s, `${ROOT}/d`, { directory: true });
    expect(errorCode(h.open(s, `${ROOT}/f`, { directory: true }).result)).toBe('NOT_A_DIRECTORY');
    expect(errorCode(h.open(s, `${ROOT}/d`).result)).toBe('IS_A_DIRECTORY');
  });

  test('a path in another cell or a malformed path is BAD_PATH', () => {
    const h = new Harness();
    const s = h.session();
    expect(errorCode(h.open(s, '/ls/other/a').result)).toBe('BAD_PATH');
    expect(errorCode(h.open(s, `${ROOT}/a/../b`).result)).toBe('BAD_PATH');
    expect(errorCode(h.open(s, `${ROOT}/${'x'.repeat(LIMITS.pathMaxBytes)}`).result)).toBe(
      'BAD_PATH',
    );
    expect(errorCode(h.open(s, `${ROOT}/sp ace`).result)).toBe('BAD_PATH');
  });

  test('new nodes get a fresh instance, first generations, entry times and the parent ACLs', () => {
    const h = new Harness();
    const s = h.session();
    const root = h.handle(s, ROOT, { directory: true });
    h.send('SetACL', s, {
      handle: root,
      acl: { read: 'readers', write: 'writers', changeAcl: 'admins' },
    });
    h.nowMs = 5_000;
    const { result } = h.open(s, `${ROOT}/a`, { contents: bytes('hello') });
    expect(result).toMatchObject({
      type: 'opened',
      stat: {
        instance: 2,
        contentGeneration: 1,
        lockGeneration: 0,
        aclGeneration: 1,
        checksum: checksum64(bytes('hello')),
        sizeBytes: 5,
        acl: { read: 'readers', write: 'writers', changeAcl: 'admins' },
        createdMs: 5_000,
        modifiedMs: 5_000,
      },
    });
    const b = h.open(s, `${ROOT}/b`).result;
    expect(b).toMatchObject({ stat: { instance: 3 } });
  });

  test('initial contents apply only when the file is created', () => {
    const h = new Harness();
    const s = h.session();
    const a = h.handle(s, `${ROOT}/a`, { contents: bytes('one') });
    h.handle(s, `${ROOT}/a`, { contents: bytes('two') });
    expect(h.contents(s, a)).toBe('one');
  });

  test('the parent hears child-added, only if subscribed', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const watching = h.handle(t, ROOT, { directory: true, eventMask: EventMask.childAdded });
    h.handle(t, ROOT, { directory: true, eventMask: EventMask.childRemoved });
    const { events } = h.open(s, `${ROOT}/new`);
    expect(events).toEqual([
      { type: 'child-added', session: t, handle: watching, path: ROOT, child: 'new' },
    ]);
  });

  test('a session may not open more than the handle limit', () => {
    const h = new Harness();
    const s = h.session();
    const commands: unknown[] = [];
    for (let i = 0; i < LIMITS.handlesPerSessionMax; i++)
      commands.push(h.openCommand(s, `${ROOT}/f`));
    const { results } = h.entry(...commands);
    expect(results.every((result) => result.type === 'opened')).toBe(true);
    expect(errorCode(h.open(s, `${ROOT}/f`).result)).toBe('TOO_MANY');
  });
});

describe('contents', () => {
  test('SetContents replaces the whole file and bumps the generation and checksum', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`, { contents: bytes('old contents') });
    h.nowMs = 2_000;
    expect(h.setContents(s, f, 'new')).toEqual({
      type: 'contents-set',
      contentGeneration: 2,
      checksum: checksum64(bytes('new')),
    });
    expect(h.contents(s, f)).toBe('new');
    expect(h.stat(s, f)).toMatchObject({
      stat: { contentGeneration: 2, sizeBytes: 3, modifiedMs: 2_000, createdMs: 1_000 },
    });
  });

  test('compare-and-set applies only at the expected generation', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    expect(h.setContents(s, f, 'a', 1)).toMatchObject({ contentGeneration: 2 });
    expect(errorCode(h.setContents(s, f, 'b', 1))).toBe('CAS_MISMATCH');
    expect(h.contents(s, f)).toBe('a');
    expect(h.stat(s, f)).toMatchObject({ stat: { contentGeneration: 2 } });
    expect(h.setContents(s, f, 'b', 2)).toMatchObject({ contentGeneration: 3 });
    expect(h.contents(s, f)).toBe('b');
  });

  test('contents of exactly 256 KiB are kept; one byte more is TOO_LARGE', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    const full = new Uint8Array(LIMITS.fileContentsMaxBytes).fill(7);
    expect(h.send('SetContents', s, { handle: f, contents: full }).result).toMatchObject({
      type: 'contents-set',
    });
    const over = new Uint8Array(LIMITS.fileContentsMaxBytes + 1);
    expect(errorCode(h.send('SetContents', s, { handle: f, contents: over }).result)).toBe(
      'TOO_LARGE',
    );
    expect(errorCode(h.open(s, `${ROOT}/g`, { contents: over }).result)).toBe('TOO_LARGE');
    expect(h.stat(s, f)).toMatchObject({
      stat: { sizeBytes: LIMITS.fileContentsMaxBytes, contentGeneration: 2 },
    });
  });

  test('a directory has no contents', () => {
    const h = new Harness();
    const s = h.session();
    const d = h.handle(s, `${ROOT}/d`, { directory: true });
    expect(errorCode(h.setContents(s, d, 'x'))).toBe('IS_A_DIRECTORY');
    expect(errorCode(h.query({ type: 'GetContentsAndStat', session: s, handle: d }))).toBe(
      'IS_A_DIRECTORY',
    );
  });

  test('watchers hear contents-modified and the parent child-modified; the writer hears nothing', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const writer = h.handle(s, `${ROOT}/f`, { eventMask: EVENT_MASK_ALL });
    const reader = h.handle(t, `${ROOT}/f`, { eventMask: EventMask.contentsModified });
    h.handle(t, `${ROOT}/f`, { eventMask: EventMask.childModified });
    const dir = h.handle(t, ROOT, { directory: true, eventMask: EventMask.childModified });
    const { events } = h.send('SetContents', s, { handle: writer, contents: bytes('x') });
    expect(events).toEqual([
      {
        type: 'contents-modified',
        session: t,
        handle: reader,
        path: `${ROOT}/f`,
        contentGeneration: 2,
      },
      { type: 'child-modified', session: t, handle: dir, path: ROOT, child: 'f' },
    ]);
  });

  test('SetACL replaces the ACL names and bumps the ACL generation', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    expect(
      h.send('SetACL', s, { handle: f, acl: { read: 'r', write: 'w', changeAcl: 'c' } }).result,
    ).toEqual({
      type: 'acl-set',
      aclGeneration: 2,
    });
    expect(h.stat(s, f)).toMatchObject({
      stat: { aclGeneration: 2, acl: { read: 'r', write: 'w', changeAcl: 'c' } },
    });
  });
});

describe('Delete', () => {
  test('deletes a file; other handles on it die with handle-invalid; the parent hears child-removed', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    const other = h.handle(t, `${ROOT}/f`);
    const dir = h.handle(t, ROOT, { directory: true, eventMask: EventMask.childRemoved });
    const { result, events } = h.send('Delete', s, { handle: f });
    expect(result).toEqual({ type: 'deleted' });
    expect(events).toEqual([
      { type: 'handle-invalid', session: t, handle: other, path: `${ROOT}/f` },
      { type: 'child-removed', session: t, handle: dir, path: ROOT, child: 'f' },
    ]);
    expect(errorCode(h.stat(t, other))).toBe('BAD_HANDLE');
    expect(errorCode(h.setContents(s, f, 'x'))).toBe('BAD_HANDLE');
    expect(h.dir(t, dir)).toEqual([]);
    // A dead handle still closes cleanly.
    expect(h.send('Close', t, { handle: other }).result).toEqual({ type: 'closed' });
  });

  test('a non-empty directory cannot be deleted; an empty one can', () => {
    const h = new Harness();
    const s = h.session();
    const d = h.handle(s, `${ROOT}/d`, { directory: true });
    const f = h.handle(s, `${ROOT}/d/f`);
    expect(errorCode(h.send('Delete', s, { handle: d }).result)).toBe('NOT_EMPTY');
    h.send('Delete', s, { handle: f });
    expect(h.send('Delete', s, { handle: d }).result).toEqual({ type: 'deleted' });
  });

  test('the cell root cannot be deleted', () => {
    const h = new Harness();
    const s = h.session();
    const root = h.handle(s, ROOT, { directory: true });
    expect(errorCode(h.send('Delete', s, { handle: root }).result)).toBe('BAD_REQUEST');
  });

  test('a handle on a deleted and re-created node stays invalid; the new node has a new instance', () => {
    const h = new Harness();
    const s = h.session();
    const old = h.handle(s, `${ROOT}/f`);
    const deleter = h.handle(s, `${ROOT}/f`);
    h.send('Delete', s, { handle: deleter });
    const fresh = h.open(s, `${ROOT}/f`).result;
    expect(fresh).toMatchObject({ created: true, stat: { instance: 3 } });
    expect(errorCode(h.setContents(s, old, 'x'))).toBe('BAD_HANDLE');
    expect(errorCode(h.stat(s, old))).toBe('BAD_HANDLE');
  });
});

describe('ephemeral nodes', () => {
  test('an ephemeral file goes when its last handle closes', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const dir = h.handle(t, ROOT, { directory: true, eventMask: EventMask.childRemoved });
    const a = h.handle(s, `${ROOT}/e`, { ephemeral: true });
    const b = h.handle(t, `${ROOT}/e`);
    h.send('Close', s, { handle: a });
    expect(h.dir(t, dir)).toEqual(['e']);
    const { events } = h.send('Close', t, { handle: b });
    expect(events).toEqual([
      { type: 'child-removed', session: t, handle: dir, path: ROOT, child: 'e' },
    ]);
    expect(h.dir(t, dir)).toEqual([]);
  });

  test('an ephemeral directory goes only when unopened and empty, and removal cascades up', () => {
    const h = new Harness();
    const s = h.session();
    const root = h.handle(s, ROOT, { directory: true });
    const d = h.handle(s, `${ROOT}/d`, { directory: true, ephemeral: true });
    const f = h.handle(s, `${ROOT}/d/f`, { ephemeral: true });
    h.send('Close', s, { handle: d });
    expect(h.dir(s, root)).toEqual(['d']);
    h.send('Close', s, { handle: f });
    expect(h.dir(s, root)).toEqual([]);
  });

  test('a permanent file is kept when its handles close', () => {
    const h = new Harness();
    const s = h.session();
    const root = h.handle(s, ROOT, { directory: true });
    const f = h.handle(s, `${ROOT}/p`);
    h.send('Close', s, { handle: f });
    expect(h.dir(s, root)).toEqual(['p']);
  });

  test('ephemeral files go when their session expires, and the parent hears it', () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const dir = h.handle(t, ROOT, { directory: true, eventMask: EventMask.childRemoved });
    h.handle(s, `${ROOT}/e1`, { ephemeral: true });
    h.handle(s, `${ROOT}/e2`, { ephemeral: true });
    h.handle(s, `${ROOT}/keep`);
    const { result, events } = h.run({ type: 'ExpireSession', session: s });
    expect(result).toEqual({ type: 'session-expired' });
    expect(events).toEqual([
      { type: 'child-removed', session: t, handle: dir, path: ROOT, child: 'e1' },
      { type: 'child-removed', session: t, handle: dir, path: ROOT, child: 'e2' },
    ]);
    expect(h.dir(t, dir)).toEqual(['keep']);
  });

  test("Close of an unknown handle or another session's handle is BAD_HANDLE", () => {
    const h = new Harness();
    const s = h.session();
    const t = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    expect(errorCode(h.send('Close', t, { handle: f }).result)).toBe('BAD_HANDLE');
    expect(errorCode(h.send('Close', s, { handle: 99 }).result)).toBe('BAD_HANDLE');
    expect(h.send('Close', s, { handle: f }).result).toEqual({ type: 'closed' });
    expect(errorCode(h.send('Close', s, { handle: f }).result)).toBe('BAD_HANDLE');
  });
});

describe('ReadDir', () => {
  test('lists children by name with their kinds', () => {
    const h = new Harness();
    const s = h.session();
    const root = h.handle(s, ROOT, { directory: true });
    h.handle(s, `${ROOT}/b`);
    h.handle(s, `${ROOT}/a`, { directory: true });
    h.handle(s, `${ROOT}/a/deep`);
    h.handle(s, `${ROOT}/c`, { ephemeral: true });
    expect(h.query({ type: 'ReadDir', session: s, handle: root })).toEqual({
      type: 'dir',
      entries: [
        { name: 'a', isDirectory: true, isEphemeral: false },
        { name: 'b', isDirectory: false, isEphemeral: false },
        { name: 'c', isDirectory: false, isEphemeral: true },
      ],
    });
    const f = h.handle(s, `${ROOT}/b`);
    expect(errorCode(h.query({ type: 'ReadDir', session: s, handle: f }))).toBe('NOT_A_DIRECTORY');
  });
});

describe('ReadPath, StatPath and ListPath', () => {
  test('read, stat and list by name with no session, with the same answers as through a handle', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    h.send('SetContents', s, { handle: f, contents: bytes('by name') });
    h.handle(s, `${ROOT}/d`, { directory: true });
    const read = h.query({ type: 'ReadPath', path: `${ROOT}/f` });
    expect(read).toEqual(h.query({ type: 'GetContentsAndStat', session: s, handle: f }));
    expect(read.type === 'contents-and-stat' && Buffer.from(read.contents).toString()).toBe('by name');
    expect(h.query({ type: 'StatPath', path: `${ROOT}/f` })).toEqual(h.query({ type: 'GetStat', session: s, handle: f }));
    expect(h.query({ type: 'ListPath', path: ROOT })).toMatchObject({ type: 'dir', entries: [{ name: 'd' }, { name: 'f' }] });
    expect(errorCode(h.query({ type: 'ReadPath', path: `${ROOT}/missing` }))).toBe('NOT_FOUND');
    expect(errorCode(h.query({ type: 'ReadPath', path: `${ROOT}/d` }))).toBe('IS_A_DIRECTORY');
    expect(errorCode(h.query({ type: 'ListPath', path: `${ROOT}/f` }))).toBe('NOT_A_DIRECTORY');
    expect(errorCode(h.query({ type: 'StatPath', path: '/ls/othercell/f' }))).toBe('NOT_FOUND');
  });
});
