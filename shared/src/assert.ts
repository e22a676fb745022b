// Assertions for bugs, never for expected failures (STYLE.md, Errors): a broken invariant
// crashes the process, which then recovers from disk. Expected failures return an ErrorCode.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function assertNever(value: never, message = 'unexpected variant'): never {
  throw new AssertionError(`${message}: ${JSON.stringify(value)}`);
}
