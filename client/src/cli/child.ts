// Runs `lock`'s command while the lock is held. The command inherits the terminal (stdin, stdout,
// stderr) and gets the lock's sequencer in PAXLOCK_SEQUENCER. The signals paxlock receives are
// passed on to it, so Ctrl-C or a service manager's SIGTERM reach it and paxlock still releases
// the lock after it exits. If the lock can no longer be relied on (its signal fires: jeopardy,
// expiry, deletion), the command is stopped: SIGTERM, then SIGKILL after a grace period, since
// from that moment another holder may be granted the lock once the lock-delay has passed.

import { spawn } from 'node:child_process';
import type { InterruptSignal, Invocation } from './invocation.ts';
import { signalExitCode } from './invocation.ts';

export interface RunChildOptions {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Fires when the lock is lost: the command must stop. */
  readonly lost: AbortSignal;
  /** Called once when `lost` fires, before the command is stopped (to say why). */
  readonly onLost: (reason: unknown) => void;
  /** How long the command has between SIGTERM and SIGKILL once the lock is lost. */
  readonly killAfterMs: number;
}

export interface ChildOutcome {
  /** The command's exit status: its code, 128+N if killed by signal N, 127/126 if not run. */
  readonly status: number;
  /** True if the lock was lost while the command ran (and so it was stopped). */
  readonly isLost: boolean;
  /** Why the command could not be started, if it could not. */
  readonly spawnError?: string;
}

export async function runChild(run: Invocation, options: RunChildOptions): Promise<ChildOutcome> {
  const [file, ...args] = options.argv;
  if (file === undefined) throw new Error('runChild needs a command');
  const child = spawn(file, args, { stdio: 'inherit', env: options.env });
  let isLost = false;
  let killTimer: NodeJS.Timeout | undefined;
  const onLost = (): void => {
    isLost = true;
    options.onLost(options.lost.reason);
    child.kill('SIGTERM');
    killTimer = setTimeout(() => {
      child.kill('SIGKILL');
    }, options.killAfterMs);
  };
  run.onInterrupt((signal: InterruptSignal) => {
    child.kill(signal);
  });
  try {
    return await new Promise<ChildOutcome>((resolve) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        // The command could not be started: as a shell does, 127 for not found, 126 otherwise.
        resolve({
          status: err.code === 'ENOENT' ? 127 : 126,
          isLost,
          spawnError: `${file}: ${err.code === 'ENOENT' ? 'command not found' : err.message}`,
        });
      });
      child.once('exit', (code, signal) => {
        resolve({ status: code ?? (signal === null ? 1 : signalExitCode(signal)), isLost });
      });
      if (options.lost.aborted) onLost();
      else options.lost.addEventListener('abort', onLost, { once: true });
    });
  } finally {
    options.lost.removeEventListener('abort', onLost);
    clearTimeout(killTimer);
    run.onInterrupt(null);
  }
}
