import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'shared/test/**/*.test.ts',
      'server/test/**/*.test.ts',
      'server/sim/**/*.test.ts',
      'client/test/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    // Tests never depend on the machine's speed; the generous limit only stops a hang.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
