/**
 * The one error type the tool raises on purpose. It carries what the operator needs:
 * a one-line message saying what failed, a hint saying what to do next, and the exit code.
 * Anything else that escapes to the top is a bug and is reported as such.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + the signal number, the shell's convention for a command a signal ended. */
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;

/** The hint of every error about a damaged artifact: what to run to fetch it again. */
export const REDOWNLOAD_HINT =
  "the artifact is damaged; fetch it again with download --force (or sync --force)";
/** The same, where the archive may as well be hostile (zip vetting and extraction). */
export const DAMAGED_HINT =
  "the artifact is damaged or hostile; fetch it again with download --force (or sync --force)";

export interface SyncErrorOptions {
  hint?: string;
  exitCode?: number;
  cause?: unknown;
  /** See {@link SyncError.setupFault}. */
  setupFault?: boolean;
}

export class SyncError extends Error {
  readonly hint: string | undefined;
  readonly exitCode: number;
  /**
   * The setup failed, not the image: the Docker engine unreachable, credentials refused, GitLab
   * or the registry unreachable, the disk full. Every image would fail the same way until the
   * operator fixes it, so the daemon holds no image back for it (no back-off).
   */
  readonly setupFault: boolean;

  constructor(message: string, options: SyncErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SyncError";
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? EXIT_FAILURE;
    this.setupFault = options.setupFault ?? false;
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

/**
 * The input itself is proven bad: a damaged or hostile zip, a tarball that is not the image it
 * claims to be, a layer that does not match its diff-id. Unlike a full disk, a missing
 * permission or a signal, trying the same bytes again can only fail again, so whoever holds
 * them (the daemon's downloads) may delete them and fetch them afresh.
 */
export class DamagedInputError extends SyncError {
  constructor(message: string, options: SyncErrorOptions = {}) {
    super(message, options);
    this.name = "DamagedInputError";
  }
}

/** `err` and its causes, outermost first, a few deep (a cycle of causes must not hang us). */
function* causeChain(err: unknown): Generator<object> {
  let current: unknown = err;
  for (let depth = 0; current && typeof current === "object" && depth < 6; depth += 1) {
    yield current;
    current = (current as { cause?: unknown }).cause;
  }
}

/** Whether `err`, or anything along its cause chain, proves the input bad. */
export function isDamagedInput(err: unknown): boolean {
  for (const current of causeChain(err)) if (current instanceof DamagedInputError) return true;
  return false;
}

/** A full disk or quota, wherever it was raised: the setup's fault, never the image's. */
const DISK_FULL_CODES = new Set(["ENOSPC", "EDQUOT"]);

/**
 * The setup's fault behind `err` ({@link SyncError.setupFault}), or undefined when the failure
 * may be the image's own: the marked error itself, for its message and hint, or `err` when a
 * full disk is along its chain unmarked.
 */
export function setupFaultOf(err: unknown): unknown {
  for (const current of causeChain(err)) {
    if (current instanceof SyncError && current.setupFault) return current;
  }
  const code = errorCode(err);
  return code !== undefined && DISK_FULL_CODES.has(code) ? err : undefined;
}

export function isSyncError(err: unknown): err is SyncError {
  return err instanceof SyncError;
}

/**
 * Best-effort text of an unknown thrown value, for wrapping into a SyncError. undici's `fetch`
 * says only "fetch failed" and keeps the reason (`connect ECONNREFUSED 10.0.0.5:443`, a DNS
 * failure, a bad port) in its cause: that reason is added, or the line says nothing to act on.
 */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.message === "fetch failed" && err.cause !== undefined) {
    const reason = describeError(err.cause);
    const code = errorCode(err.cause);
    const detail = code !== undefined && !reason.includes(code) ? `${code}: ${reason}` : reason;
    return `${err.message}: ${detail}`;
  }
  return err.message;
}

/**
 * The first string `code` along an error's cause chain: `ECONNREFUSED` under undici's
 * "fetch failed", `ENOSPC` under a stream error. What an operator can search for.
 */
export function errorCode(err: unknown): string | undefined {
  for (const current of causeChain(err)) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** A cancellation (our abort signal, or an AbortError/TimeoutError raised on its behalf). */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/**
 * The reason the CLI aborts its signal with on SIGINT/SIGTERM: every `throwIfAborted()` down the
 * pipeline throws this, so an interrupted command ends with one line saying so and the shell's
 * status for the signal, never as an "unexpected failure". A step that can say how to go on
 * (a download resumes) wraps it with {@link interrupted}.
 */
export class InterruptedError extends SyncError {
  constructor(
    readonly signalName: string,
    hint?: string,
  ) {
    super(`interrupted by ${signalName}`, {
      exitCode: signalName === "SIGTERM" ? EXIT_SIGTERM : EXIT_SIGINT,
      ...(hint !== undefined ? { hint } : {}),
    });
    this.name = "InterruptedError";
  }
}

/** The interruption behind an aborted `signal`, with what to do next (`hint`). */
export function interrupted(signal: AbortSignal, hint?: string): InterruptedError {
  const reason: unknown = signal.reason;
  const name = reason instanceof InterruptedError ? reason.signalName : "SIGINT";
  return new InterruptedError(name, hint ?? (reason as SyncError | undefined)?.hint);
}
