/**
 * The one error type the tool raises on purpose. It carries what the operator needs:
 * a one-line message saying what failed, a hint saying what to do next, and the exit code.
 * Anything else that escapes to the top is a bug and is reported as such.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface SyncErrorOptions {
  hint?: string;
  exitCode?: number;
  cause?: unknown;
}

export class SyncError extends Error {
  readonly hint: string | undefined;
  readonly exitCode: number;

  constructor(message: string, options: SyncErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SyncError";
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? EXIT_FAILURE;
  }

  /** The single line printed on stderr: the failure, then what to do about it. */
  oneLine(): string {
    return this.hint ? `${this.message} — ${this.hint}` : this.message;
  }
}

/** Bad flags or arguments: exit status 2, like commander's own usage errors. */
export class UsageError extends SyncError {
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: EXIT_USAGE });
    this.name = "UsageError";
  }
}

export function isSyncError(err: unknown): err is SyncError {
  return err instanceof SyncError;
}

/** Best-effort text of an unknown thrown value, for wrapping into a SyncError. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
