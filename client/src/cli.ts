// paxlock: the command-line client, in the manner of etcdctl and zkCli. Files, directories,
// watches, locks around a command, leader election, the cell's sessions, locks and replicas,
// and backups of its state. `paxlock --help` and `paxlock <command> --help` list everything;
// cli/exit.ts defines the exit codes scripts can rely on; cli/invocation.ts what every command
// guarantees (session closed at exit, one-line errors, bounded by --timeout).
//
// Run it as client/bin/paxlock, or `pnpm paxlock <command>` from the repository root.

import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import * as commands from './cli/commands.ts';
import { EXIT_CODES_HELP, ExitCode } from './cli/exit.ts';
import { invoke, parseDurationMs, type GlobalOptions } from './cli/invocation.ts';

/** Options that take a value: the word after one is its value, not a positional. */
const VALUE_OPTIONS: ReadonlySet<string> = new Set(['--cell', '--timeout', '--kill-after']);

/**
 * `lock PATH CMD ARG...` without `--`: puts the `--` in before CMD, so that CMD's own options
 * (`sh -c ...`) are not taken for paxlock's. Also what saves the command if a wrapper ate the `--`.
 */
function withCommandDashes(args: readonly string[]): string[] {
  let positionals = 0;
  for (let i = 0; i < args.length; i++) {
    const word = args[i] ?? '';
    if (word === '--') break;
    if (word.startsWith('-') && word !== '-') {
      if (VALUE_OPTIONS.has(word)) i++;
      continue;
    }
    positionals++;
    if (positionals === 1 && word !== 'lock') break;
    if (positionals === 3) return [...args.slice(0, i), '--', ...args.slice(i)];
  }
  return [...args];
}

/** The arguments as given; `pnpm paxlock -- ls` passes the `--` on, so a leading one is dropped. */
function cliArguments(): string[] {
  const args = hideBin(process.argv);
  return withCommandDashes(args[0] === '--' ? args.slice(1) : args).map((word, i, all) =>
    // A bare --stale takes no value (yargs would take the next word, the path, as one):
    // `--stale PATH` means the default bound. Words after a command's `--` are left alone.
    word === '--stale' && !all.slice(0, i).includes('--') ? '--stale=' : word,
  );
}

const GLOBAL_HELP = `Environment:
  PAXLOCK_CELL   the cell's client addresses (host:port,...) when --cell is not given;
                 without either, the local cell of \`pnpm start\` (127.0.0.1:7201-7205)

Names: /ls/<cell>/a/b, or a/b (or /a/b) relative to the cell's root.

${EXIT_CODES_HELP}`;

/** The words after `--` (yargs' populate-- puts them there, untouched by option parsing). */
function afterDashes(words: unknown): string[] {
  return Array.isArray(words) ? words.map(String) : [];
}

/** A command's help ends with the exit codes, as the top-level help does. */
function documented<T>(y: Argv<T>): Argv<T> {
  return y.epilogue(EXIT_CODES_HELP);
}

function globals(argv: GlobalOptions): GlobalOptions {
  return { cell: argv.cell, json: argv.json, timeout: argv.timeout };
}

/** A positional that yargs must keep as a string (a name like 007 is not a number). */
/** `--stale[=MS]`: a stale read from any replica, at most MS old (default 1000; 500ms, 2s work too). */
function staleOption<T>(y: Argv<T>) {
  return y.option('stale', {
    type: 'string',
    describe:
      'read from any replica (not only the master) if it can promise its state is at most MS old (default 1000)',
  });
}

function staleMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value === '') return 1_000;
  return /^\d+$/.test(value.trim()) ? Number(value.trim()) : parseDurationMs(value, '--stale');
}

function pathArg<T>(y: Argv<T>, describe = 'a name: /ls/<cell>/... or relative to the cell root') {
  return y.positional('path', { type: 'string', demandOption: true, describe });
}

async function main(): Promise<void> {
  await yargs(cliArguments())
    .scriptName('paxlock')
    .usage(
      '$0 <command> [options]\n\nThe paxlock command-line client: files, watches, locks, elections, the cell.',
    )
    .parserConfiguration({ 'populate--': true })
    .option('cell', {
      type: 'string',
      global: true,
      describe:
        'client addresses of the cell, host:port,... (default: $PAXLOCK_CELL, else the local cell)',
    })
    .option('json', {
      type: 'boolean',
      global: true,
      describe: 'print JSON (read commands; watch and elect print one JSON object per line)',
    })
    .option('timeout', {
      type: 'string',
      global: true,
      describe:
        'bound on the whole command, e.g. 500ms, 10s, 2m (bare number: seconds; default 10s). lock and elect: how long to wait for the lock or leadership (default: as long as it takes)',
    })
    .command(
      'ls [path]',
      'list a directory (or show a file)',
      (y) =>
        documented(
          staleOption(y)
            .positional('path', {
              type: 'string',
              default: '/',
              describe: 'a directory (default: the cell root)',
            })
            .option('long', {
              alias: 'l',
              type: 'boolean',
              default: false,
              describe: 'kind, size, generations, modified time',
            })
            .option('recursive', {
              alias: 'R',
              type: 'boolean',
              default: false,
              describe: 'everything below, as full names',
            })
            .example('$0 ls', 'the cell root: names, directories ending in /')
            .example('$0 ls -lR config', 'everything below /ls/<cell>/config, with details')
            .example('$0 ls --json /ls/local/config', 'entries as JSON')
            .example('$0 ls --stale=500 config', 'from any replica, at most 500 ms stale'),
        ),
      async (argv) =>
        invoke('ls', argv.path, globals(argv), async (run) =>
          commands.ls(run, {
            path: argv.path,
            long: argv.long,
            recursive: argv.recursive,
            stale: staleMs(argv.stale),
          }),
        ),
    )
    .command(
      'cat <path>',
      'print a file’s contents (raw bytes)',
      (y) =>
        documented(
          pathArg(staleOption(y))
            .example('$0 cat config/db', 'the contents as they are, binary-safe')
            .example('$0 cat --json config/db', '{ path, contentsBase64, stat }')
            .example('$0 cat --stale config/db', 'from any replica, at most 1 s stale'),
        ),
      async (argv) =>
        invoke('cat', argv.path, globals(argv), async (run) =>
          commands.cat(run, { path: argv.path, stale: staleMs(argv.stale) }),
        ),
    )
    .command(
      'put <path> [value]',
      'write a file whole (VALUE, or stdin when VALUE is absent), creating it if needed',
      (y) =>
        documented(
          pathArg(y)
            .positional('value', {
              type: 'string',
              describe: 'the contents (UTF-8); read from stdin if absent',
            })
            .option('if-generation', {
              type: 'number',
              describe:
                'write only if the content generation is still N (0: only create; exit 3 otherwise)',
            })
            .example('$0 put config/db "host=a"', 'write a value')
            .example('$0 put config/blob < file.bin', 'write a file from stdin (at most 256 KiB)')
            .example(
              '$0 put --if-generation 0 config/db x',
              'create only; exit 3 (EXISTS) if it exists',
            )
            .example(
              '$0 put --if-generation 7 config/db y',
              'compare-and-set; exit 3 (CAS_MISMATCH) if changed',
            ),
        ),
      async (argv) =>
        invoke('put', argv.path, globals(argv), async (run) =>
          commands.put(run, {
            path: argv.path,
            // `put NAME -- -5`: a value that looks like an option comes after `--`.
            value: argv.value ?? (afterDashes(argv['--']).join(' ') || undefined),
            ifGeneration: argv.ifGeneration,
          }),
        ),
    )
    .command(
      'rm <path>',
      'remove a file or an empty directory',
      (y) =>
        documented(
          pathArg(y)
            .option('recursive', {
              alias: 'r',
              type: 'boolean',
              default: false,
              describe: 'a directory and everything below it',
            })
            .example('$0 rm config/db', 'remove a file')
            .example('$0 rm -r config', 'remove a directory tree'),
        ),
      async (argv) =>
        invoke('rm', argv.path, globals(argv), async (run) =>
          commands.rm(run, { path: argv.path, recursive: argv.recursive }),
        ),
    )
    .command(
      'mkdir <path>',
      'create a directory',
      (y) =>
        documented(
          pathArg(y)
            .option('parents', {
              alias: 'p',
              type: 'boolean',
              default: false,
              describe: 'create missing parents; no error if it exists',
            })
            .example('$0 mkdir -p services/web/config', 'create a directory and its parents'),
        ),
      async (argv) =>
        invoke('mkdir', argv.path, globals(argv), async (run) =>
          commands.mkdir(run, { path: argv.path, parents: argv.parents }),
        ),
    )
    .command(
      'stat <path>',
      'show a node’s metadata (generations, size, checksum, times)',
      (y) =>
        documented(
          pathArg(staleOption(y))
            .example('$0 stat config/db', 'key: value lines')
            .example(
              '$0 stat --json config/db | jq .contentGeneration',
              'the generation, for put --if-generation',
            ),
        ),
      async (argv) =>
        invoke('stat', argv.path, globals(argv), async (run) =>
          commands.stat(run, { path: argv.path, stale: staleMs(argv.stale) }),
        ),
    )
    .command(
      'watch <path>',
      'print a node’s events as they happen, until Ctrl-C',
      (y) =>
        documented(
          pathArg(y)
            .example('$0 watch config', 'child-added /ls/local/config child=db ...')
            .example('$0 watch --json config/db', 'one JSON object per event')
            .epilogue(
              'Events: contents-modified, child-added, child-removed, child-modified, lock-acquired, handle-invalid (the node was deleted: the watch ends), and reread (events may have been missed, e.g. across a master fail-over: read the node again).\n',
            ),
        ),
      async (argv) =>
        invoke('watch', argv.path, globals(argv), async (run) =>
          commands.watch(run, { path: argv.path }),
        ),
    )
    .command(
      'lock <path> [command..]',
      'run a command while holding the lock on PATH',
      (y) =>
        documented(
          pathArg(y, 'the lock’s node (created if missing)')
            .positional('command', {
              type: 'string',
              array: true,
              describe: 'the command and its arguments (after --)',
            })
            .option('shared', {
              type: 'boolean',
              default: false,
              describe: 'take the lock in shared mode',
            })
            .option('kill-after', {
              type: 'string',
              default: '5s',
              describe: 'if the lock is lost, SIGKILL the command this long after SIGTERM',
            })
            .example(
              '$0 lock jobs/nightly -- ./run-nightly.sh',
              'one runner at a time; waits for the lock',
            )
            .example(
              '$0 lock --timeout 0 jobs/nightly -- make',
              'exit 3 (LOCK_HELD) at once if the lock is held',
            )
            .example('$0 lock --shared db/schema -- ./read-only-job', 'a shared lock')
            .epilogue(
              'The command gets PAXLOCK_SEQUENCER (the lock’s sequencer, to pass to servers that check it), PAXLOCK_LOCK and PAXLOCK_CELL. Signals paxlock receives are passed on to it. If the lock is lost (the session in jeopardy or expired), the command is sent SIGTERM, then SIGKILL after --kill-after, and paxlock exits 6. Otherwise paxlock releases the lock and exits with the command’s status.\n',
            ),
        ),
      async (argv) =>
        invoke('lock', argv.path, globals(argv), async (run) =>
          commands.lock(run, {
            path: argv.path,
            command: [...(argv.command ?? []), ...afterDashes(argv['--'])],
            shared: argv.shared,
            killAfterMs: parseDurationMs(argv.killAfter, '--kill-after'),
          }),
        ),
    )
    .command(
      'elect <path> [value]',
      'campaign to be leader on PATH; print a line when leader; lead until killed',
      (y) =>
        documented(
          pathArg(y, 'the election’s node (created if missing)')
            .positional('value', {
              type: 'string',
              describe: 'what the leader publishes (its address, say)',
            })
            .option('observe', {
              type: 'boolean',
              default: false,
              describe: 'do not campaign: print the leader at every change',
            })
            .example(
              '$0 elect services/web/leader host-a:8080',
              'prints "leader /ls/local/services/web/leader host-a:8080" once leader',
            )
            .example(
              '$0 elect --observe services/web/leader',
              'prints each leader (or no-leader) as it changes',
            )
            .epilogue(
              'On SIGINT or SIGTERM the leader resigns and closes its session, so the next campaigner takes over at once; exit 0. If leadership is lost (session in jeopardy or expired), paxlock exits 6.\n',
            ),
        ),
      async (argv) =>
        invoke('elect', argv.path, globals(argv), async (run) =>
          commands.elect(run, { path: argv.path, value: argv.value, observe: argv.observe }),
        ),
    )
    .command(
      'sessions',
      'list the cell’s sessions',
      (y) => documented(y.example('$0 sessions --json', 'as a JSON array')),
      async (argv) =>
        invoke('sessions', undefined, globals(argv), async (run) => commands.sessions(run)),
    )
    .command(
      'locks [path]',
      'list locks: holders, mode, held since, waiters (or just the lock on PATH)',
      (y) =>
        documented(
          y
            .positional('path', { type: 'string', describe: 'one lock’s node' })
            .example('$0 locks', 'every lock that is held, waited for or in lock-delay'),
        ),
      async (argv) =>
        invoke('locks', argv.path, globals(argv), async (run) =>
          commands.locks(run, { path: argv.path }),
        ),
    )
    .command(
      'status',
      'ask each replica for its role, epoch, commit and applied slot, lease and digest',
      (y) =>
        documented(
          y
            .example('$0 status', 'a table, one replica per line; works with no master')
            .example('$0 status --json', '[{ id, role, address, epoch, commit, applied, ... }]'),
        ),
      async (argv) =>
        invoke('status', undefined, globals(argv), async (run) => commands.status(run)),
    )
    .command(
      'backup <file>',
      'copy the cell’s whole state, as of one slot, from the master to FILE',
      (y) =>
        documented(
          y
            .positional('file', {
              type: 'string',
              demandOption: true,
              describe: 'where to write the backup (an SQLite image; not - for stdout)',
            })
            .option('force', {
              type: 'boolean',
              default: false,
              describe: 'replace FILE if it exists (otherwise exit 3)',
            })
            .example('$0 backup cell-2024-06-01.db', 'one line: cell, slot, bytes, sha256, file')
            .example('$0 backup --json --force nightly.db', '{ cell, slot, bytes, sha256, file }')
            .epilogue(
              'The master sends its state database as of one applied slot, with the image’s sha256; paxlock checks it, writes FILE.tmp-<pid>, fsyncs it, renames it to FILE and fsyncs the directory, so FILE is either the whole checked backup or untouched. Any replica will do: paxlock asks each in turn (3 s each) where the master is, then waits for the master. A large state may need more than the default --timeout of 10s: the master copies and hashes it before the first byte. The backup holds files, directories and their contents, locks and sessions (which expire after a restore unless their clients keep them alive).\n\nTo restore a cell from FILE: stop all five replicas, then start every one of them on an empty data directory with the same file:\n  paxlock-server --id N --config cell.json --data EMPTY_DIR --restore FILE\nThe cell carries on from the backup’s slot; writes made after the backup are not in it. A replica refuses to restore over an existing paxos.db or state.db, or from a file that is not a backup of this cell.\n',
            ),
        ),
      async (argv) =>
        // (yargs hands `-` over as an empty string: name it as given in error lines.)
        invoke('backup', argv.file === '' ? '-' : argv.file, globals(argv), async (run) =>
          commands.backup(run, { file: argv.file, force: argv.force }),
        ),
    )
    .demandCommand(1, 'name a command')
    .recommendCommands()
    .strict()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .epilogue(GLOBAL_HELP)
    .fail((message: string | undefined, err: Error | undefined) => {
      // Only usage errors get here: every command handler reports its own failures.
      const text = message ?? err?.message ?? 'bad usage';
      process.stderr.write(
        `paxlock: ${text.replace(/\s*\n\s*/g, ' ')} (paxlock --help for usage)\n`,
      );
      process.exit(ExitCode.USAGE);
    })
    .parseAsync();
}

await main();
