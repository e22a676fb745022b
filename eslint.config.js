// Lint for the whole workspace: typescript-eslint's strictTypeChecked, plus the purity fence
// that keeps the clock, randomness, timers and I/O out of the consensus core and the state
// machine (see ../shared/STYLE.md, "Boundaries"): the simulator can only drive what is pure.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const impureGlobals = [
  { name: 'Date', message: 'Time is the `now` argument in the pure core.' },
  { name: 'performance', message: 'Time is the `now` argument in the pure core.' },
  { name: 'setTimeout', message: 'No timers in the pure core; tick(now) is called from outside.' },
  { name: 'setInterval', message: 'No timers in the pure core; tick(now) is called from outside.' },
  { name: 'setImmediate', message: 'No timers in the pure core.' },
  { name: 'queueMicrotask', message: 'The pure core is synchronous.' },
  { name: 'process', message: 'The pure core does not touch the process.' },
  { name: 'console', message: 'Log through the injected Logger.' },
  { name: 'fetch', message: 'No I/O in the pure core.' },
];

const impureSyntax = [
  {
    selector: "MemberExpression[object.name='Math'][property.name='random']",
    message: 'Randomness is the injected Random in the pure core.',
  },
  { selector: 'AwaitExpression', message: 'The pure core is synchronous.' },
  { selector: 'FunctionDeclaration[async=true]', message: 'The pure core is synchronous.' },
  { selector: 'ArrowFunctionExpression[async=true]', message: 'The pure core is synchronous.' },
  { selector: 'FunctionExpression[async=true]', message: 'The pure core is synchronous.' },
];

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', 'client/build/**', '.data/**', 'server/bin/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
    },
  },
  {
    files: ['server/src/paxos/**/*.ts', 'server/src/machine/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', ...impureGlobals],
      'no-restricted-syntax': ['error', ...impureSyntax],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'fs', 'net', 'http', 'crypto', 'os', 'child_process', 'timers', 'worker_threads'], message: 'No Node I/O in the pure core.' },
            { group: ['ws', 'pino', 'yargs', 'msgpackr'], message: 'No I/O libraries in the pure core.' },
          ],
        },
      ],
    },
  },
  {
    // better-sqlite3 is synchronous and allowed in the state machine, never in the consensus core.
    files: ['server/src/paxos/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'fs', 'net', 'http', 'crypto', 'os', 'child_process', 'timers', 'worker_threads'], message: 'No Node I/O in the pure core.' },
            { group: ['ws', 'pino', 'yargs', 'msgpackr', 'better-sqlite3'], message: 'No I/O libraries in the consensus core.' },
            { group: ['../*'], message: 'The consensus core depends on nothing else in the server.' },
          ],
        },
      ],
    },
  },
  {
    files: ['**/test/**/*.ts', 'server/sim/**/*.ts', 'scripts/**/*.ts', 'examples/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
