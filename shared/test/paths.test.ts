// Proves the Chubby name rules: what is accepted, what is rejected and why, and that the
// parent/basename/join helpers agree with each other on every valid name (fast-check).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  basename,
  cellOf,
  cellRoot,
  isAncestor,
  isCellRoot,
  isValidPath,
  joinPath,
  LIMITS,
  parentOf,
  parsePath,
  pathError,
} from '../src/index.ts';

const componentChar = fc.constantFrom(...'abcXYZ019._+=@,-'.split(''));
const component = fc
  .array(componentChar, { minLength: 1, maxLength: 12 })
  .map((chars) => chars.join(''))
  .filter((c) => c !== '.' && c !== '..');
const validPath = fc
  .tuple(component, fc.array(component, { maxLength: 6 }))
  .map(([cell, parts]) => ['/ls', cell, ...parts].join('/'));

describe('paths', () => {
  test('accepts cell roots and nested names', () => {
    expect(isValidPath('/ls/cell')).toBe(true);
    expect(isValidPath('/ls/cell/a/b.c/d-e_f')).toBe(true);
    expect(isCellRoot('/ls/cell')).toBe(true);
    expect(isCellRoot('/ls/cell/a')).toBe(false);
  });

  test.each([
    ['', 'does not start'],
    ['/ls', 'does not start'],
    ['/ls/', 'empty component'],
    ['/ls/cell/', 'empty component'],
    ['/ls/cell//a', 'empty component'],
    ['/ls/cell/./a', 'not allowed'],
    ['/ls/cell/..', 'not allowed'],
    ['/ls/cell/a b', 'character'],
    ['/ls/cell/é', 'character'],
    ['/ls/cell/a\u0000', 'character'],
    ['/foo/cell/a', 'does not start'],
    ['ls/cell/a', 'does not start'],
  ])('rejects %j (%s)', (path, why) => {
    expect(pathError(path)).toContain(why);
  });

  test('rejects over-long components, names and depths', () => {
    expect(pathError(`/ls/c/${'a'.repeat(LIMITS.componentMaxBytes)}`)).toBeUndefined();
    expect(pathError(`/ls/c/${'a'.repeat(LIMITS.componentMaxBytes + 1)}`)).toContain(
      'component longer',
    );
    expect(pathError(`/ls/c/${'a/'.repeat(600)}a`)).toContain('name longer');
    expect(pathError(`/ls/c${'/a'.repeat(LIMITS.pathDepthMax)}`)).toBeUndefined();
    expect(pathError(`/ls/c${'/a'.repeat(LIMITS.pathDepthMax + 1)}`)).toContain('deeper');
  });

  test('parent and basename of a cell root and of a child', () => {
    expect(parentOf('/ls/cell')).toBeUndefined();
    expect(parentOf('/ls/cell/a/b')).toBe('/ls/cell/a');
    expect(basename('/ls/cell/a/b')).toBe('b');
    expect(cellOf('/ls/cell/a/b')).toBe('cell');
    expect(cellRoot('cell')).toBe('/ls/cell');
    expect(parsePath('/ls/cell/a/b')).toEqual({ cell: 'cell', components: ['a', 'b'] });
    expect(parsePath('/ls/cell//b')).toBeUndefined();
    expect(isAncestor('/ls/cell/a', '/ls/cell/a/b')).toBe(true);
    expect(isAncestor('/ls/cell/a', '/ls/cell/ab')).toBe(false);
  });

  test('property: join(parent, basename) rebuilds every valid non-root name', () => {
    fc.assert(
      fc.property(validPath, (path) => {
        expect(isValidPath(path)).toBe(true);
        const parent = parentOf(path);
        if (parent === undefined) {
          expect(isCellRoot(path)).toBe(true);
          return;
        }
        expect(isValidPath(parent)).toBe(true);
        expect(joinPath(parent, basename(path))).toBe(path);
        expect(isAncestor(parent, path)).toBe(true);
        expect(parsePath(path)?.components.at(-1)).toBe(basename(path));
      }),
    );
  });

  test('property: any string either validates or has a reason, never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        const path = `/ls/${text}`;
        expect(isValidPath(path)).toBe(pathError(path) === undefined);
      }),
    );
  });
});
