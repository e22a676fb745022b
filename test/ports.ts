// Loopback ports for tests that start real servers. Every port handed out lies below the
// kernel's ephemeral range (32768–60999 here, /proc/sys/net/ipv4/ip_local_port_range), so an
// outgoing connection made by another test can never take a port between the check that it
// is free and the listen that uses it (CI once failed on exactly that: EADDRINUSE on a port
// that a "listen on 0, close, reuse" helper had handed out from the ephemeral range).
import { createServer } from 'node:net';

/** The lowest port of the kernel's default ephemeral range; every test port stays below it. */
const ephemeralLow = 32_768;
const lowest = 10_000;

export async function isPortFree(port: number): Promise<boolean> {
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
 * A base port B such that B+1..B+n and B+101..B+100+n are free now, all below the ephemeral
 * range. Starts from a point that depends on the pid so parallel test files (each its own
 * process) rarely probe the same block.
 */
export async function freeBasePort(n = 5): Promise<number> {
  const blocks = Math.floor((ephemeralLow - lowest - 200) / 100);
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = lowest + ((process.pid * 7919 + attempt * 263) % blocks) * 100;
    const ports = Array.from({ length: n }, (_, i) => [base + 1 + i, base + 101 + i]).flat();
    const checks = await Promise.all(ports.map(isPortFree));
    if (checks.every(Boolean)) return base;
  }
  throw new Error('no free block of ports');
}
