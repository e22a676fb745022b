// paxlock-server checks its numeric flags before it touches anything: a bad value is one clear
// line on stderr and exit code 1, not a replica running with a NaN lease or a negative wait.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const serverMain = resolve(fileURLToPath(import.meta.url), '../../../src/main.ts');
const dir = mkdtempSync(join(tmpdir(), 'paxlock-flags-'));

function runServer(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', serverMain, '--id', '1', '--config', join(dir, 'cell.json'), '--data', join(dir, 'r1'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code) => done({ code, stderr }));
  });
}

describe('paxlock-server flags', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    [['--lease-ms', '-5'], '--lease-ms must be a number >= 1 (got -5)'],
    [['--handover-wait-ms', 'soon'], '--handover-wait-ms must be a number >= 0 (got NaN)'],
    [['--snapshot-every', '0'], '--snapshot-every must be a number >= 1 (got 0)'],
    [['--bootstrap-window-ms', '-1'], '--bootstrap-window-ms must be a number >= 0 (got -1)'],
  ])('refuses %j with one clear line and exit code 1, before creating anything', async (args, message) => {
    const { code, stderr } = await runServer(args);
    expect(code).toBe(1);
    expect(stderr).toContain(message);
    expect(existsSync(join(dir, 'r1'))).toBe(false);
  });
});
