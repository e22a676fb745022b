// Helpers for the cell tests: a free block of loopback ports, a temporary data directory, and
// waiting for a condition by polling real state (never a fixed sleep).

import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

async function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => {
      resolve(false);
    });
    server.listen(port, '127.0.0.1', () => {
      server.close(() => {
        resolve(true);
      });
    });
  });
}

/**
 * A base port B such that B+1..B+n and B+101..B+100+n are free now. Starts from a point that
 * depends on the pid so parallel test files rarely probe the same block.
 */
export async function freeBasePort(n = 5): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + (((process.pid * 7919 + attempt * 263) % 400) * 100);
    const ports = Array.from({ length: n }, (_, i) => [base + 1 + i, base + 101 + i]).flat();
    const checks = await Promise.all(ports.map(isPortFree));
    if (checks.every(Boolean)) return base;
  }
  throw new Error('no free block of ports');
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `paxlock-${prefix}-`));
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err: unknown) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
