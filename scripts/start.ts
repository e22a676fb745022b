// `pnpm start`. Until the cell (five replica processes) exists, this runs the deterministic
// simulator's demo: a five-replica cell in virtual time under faults, printing its summary.
import { spawnSync } from 'node:child_process';

const result = spawnSync(process.execPath, ['--import', 'tsx', 'server/sim/main.ts', '--seeds', '20', '--verbose'], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
