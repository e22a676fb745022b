// Chubby names (Burrows 2006, section 2.3): `/ls/<cell>/<component>/...`. `ls` stands for lock
// service; the second component is the cell; the rest is a strict tree of directories and files
// inside the cell. The rules here are enforced on every command that names a node, at the wire
// and again in the state machine, so a malformed name never reaches the database.
//
// Rules: ASCII only, components of [A-Za-z0-9._+=@,-] from 1 to LIMITS.componentMaxBytes, no
// `.` or `..` component, no empty component (so no `//` and no trailing `/`), total length at
// most LIMITS.pathMaxBytes, at most LIMITS.pathDepthMax components below the cell. The cell root
// `/ls/<cell>` is itself a valid name (it is a directory that always exists).

import { LIMITS } from './limits.ts';

const componentPattern = /^[A-Za-z0-9._+=@,-]+$/;
const PREFIX = '/ls/';

/** Why a component is invalid, or undefined if it is valid. */
export function componentError(component: string): string | undefined {
  if (component.length === 0) return 'empty component';
  if (component.length > LIMITS.componentMaxBytes) {
    return `component longer than ${LIMITS.componentMaxBytes} bytes`;
  }
  if (component === '.' || component === '..') return `component "${component}" is not allowed`;
  if (!componentPattern.test(component))
    return 'component has a character outside [A-Za-z0-9._+=@,-]';
  return undefined;
}

export function isValidComponent(component: string): boolean {
  return componentError(component) === undefined;
}

/** Why a name is invalid, or undefined if it is a valid Chubby name. */
export function pathError(path: string): string | undefined {
  if (path.length > LIMITS.pathMaxBytes) return `name longer than ${LIMITS.pathMaxBytes} bytes`;
  if (!path.startsWith(PREFIX)) return 'name does not start with /ls/';
  const parts = path.slice(PREFIX.length).split('/');
  if (parts.length - 1 > LIMITS.pathDepthMax)
    return `name deeper than ${LIMITS.pathDepthMax} below the cell`;
  for (const part of parts) {
    const error = componentError(part);
    if (error !== undefined) return error;
  }
  return undefined;
}

export function isValidPath(path: string): boolean {
  return pathError(path) === undefined;
}

export interface ParsedPath {
  readonly cell: string;
  /** The components below the cell root; empty for the cell root itself. */
  readonly components: readonly string[];
}

/** Splits a valid name; undefined if the name is invalid. */
export function parsePath(path: string): ParsedPath | undefined {
  if (!isValidPath(path)) return undefined;
  const [cell, ...components] = path.slice(PREFIX.length).split('/');
  if (cell === undefined) return undefined;
  return { cell, components };
}

/** The root directory of a cell, `/ls/<cell>`. The cell name must be a valid component. */
export function cellRoot(cell: string): string {
  return PREFIX + cell;
}

/** The cell a valid name belongs to. */
export function cellOf(path: string): string | undefined {
  return parsePath(path)?.cell;
}

/** True for `/ls/<cell>` itself. Assumes a valid name. */
export function isCellRoot(path: string): boolean {
  return path.indexOf('/', PREFIX.length) === -1;
}

/** The parent of a valid name, or undefined for a cell root (which has no parent in the tree). */
export function parentOf(path: string): string | undefined {
  if (isCellRoot(path)) return undefined;
  return path.slice(0, path.lastIndexOf('/'));
}

/** The last component of a valid name (the cell name for a cell root). */
export function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Appends one component to a name. The result still has to pass pathError (length, depth). */
export function joinPath(parent: string, component: string): string {
  return `${parent}/${component}`;
}

/** True if `ancestor` is a proper ancestor of `path` (both valid names). */
export function isAncestor(ancestor: string, path: string): boolean {
  return (
    path.length > ancestor.length && path.startsWith(ancestor) && path[ancestor.length] === '/'
  );
}
