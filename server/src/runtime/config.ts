// The cell configuration file: the static membership of a cell (DESIGN.md, Membership). Every
// replica and every client reads the same file: the cell's name and, for each replica, its id,
// the address its peers dial, and the address clients dial. It is validated whole before use;
// a bad file is an operator error reported in one clear line.

import { readFileSync } from 'node:fs';

export interface ReplicaAddress {
  readonly id: number;
  /** host:port that peers dial (Multi-Paxos messages). */
  readonly peer: string;
  /** host:port that clients dial (sessions). */
  readonly client: string;
}

export interface CellConfig {
  readonly cell: string;
  readonly replicas: readonly ReplicaAddress[];
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const CELL_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const HOST_PORT = /^([a-zA-Z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/;

/** Parse "host:port" into its parts, or throw a ConfigError naming the bad value. */
export function parseHostPort(value: string): { host: string; port: number } {
  const match = HOST_PORT.exec(value);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`bad address "${value}": expected host:port`);
  }
  const host = (match[1] ?? '').replace(/^\[|\]$/g, '');
  return { host, port };
}

export function validateCellConfig(raw: unknown): CellConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('cell configuration must be an object');
  }
  const obj = raw as Record<string, unknown>;
  const cell = obj['cell'];
  if (typeof cell !== 'string' || !CELL_NAME.test(cell)) {
    throw new ConfigError('cell: expected a name of lowercase letters, digits and dashes');
  }
  const replicas = obj['replicas'];
  if (!Array.isArray(replicas) || replicas.length < 1 || replicas.length > 9) {
    throw new ConfigError('replicas: expected a list of 1 to 9 replicas');
  }
  const seenIds = new Set<number>();
  const seenAddresses = new Set<string>();
  const parsed = replicas.map((r: unknown, i): ReplicaAddress => {
    if (typeof r !== 'object' || r === null) throw new ConfigError(`replicas[${i}]: expected an object`);
    const rec = r as Record<string, unknown>;
    const id = rec['id'];
    const peer = rec['peer'];
    const client = rec['client'];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > 255) {
      throw new ConfigError(`replicas[${i}].id: expected an integer from 1 to 255`);
    }
    if (seenIds.has(id)) throw new ConfigError(`replicas[${i}].id: ${id} appears twice`);
    seenIds.add(id);
    for (const [field, value] of [['peer', peer], ['client', client]] as const) {
      if (typeof value !== 'string') throw new ConfigError(`replicas[${i}].${field}: expected host:port`);
      parseHostPort(value);
      if (seenAddresses.has(value)) throw new ConfigError(`replicas[${i}].${field}: ${value} is used twice`);
      seenAddresses.add(value);
    }
    return { id, peer: peer as string, client: client as string };
  });
  return { cell, replicas: parsed };
}

export function loadCellConfig(path: string): CellConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err: unknown) {
    throw new ConfigError(`cannot read cell configuration ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err: unknown) {
    if (err instanceof SyntaxError) throw new ConfigError(`${path} is not valid JSON: ${err.message}`);
    throw err;
  }
  return validateCellConfig(raw);
}

/** The local five-replica cell that `pnpm start` runs: peers on 7101..7105, clients on 7201..7205. */
export function localCellConfig(cell = 'local', basePort = 7100): CellConfig {
  return {
    cell,
    replicas: [1, 2, 3, 4, 5].map((id) => ({
      id,
      peer: `127.0.0.1:${basePort + id}`,
      client: `127.0.0.1:${basePort + 100 + id}`,
    })),
  };
}
