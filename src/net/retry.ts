import { setTimeout as delay } from "node:timers/promises";

/**
 * The one retry loop of the tool: the registry transport, the token realm, the GitLab requester
 * and the downloader all go through it (GitHub keeps Octokit's retry and throttling plugins).
 * Exponential back-off with jitter, a server's own `retry-after` honoured, and an abort signal
 * that ends the wait at once.
 */
export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** Wait after the first failure; doubled after each further one. */
  baseDelayMs: number;
  /** No single back-off grows past this. */
  maxDelayMs: number;
}

export interface RetryInfo {
  /** The attempt that just failed, from 1. */
  attempt: number;
  delayMs: number;
  error: unknown;
}

export interface RetryOptions {
  policy: RetryPolicy;
  signal?: AbortSignal | undefined;
  /**
   * Whether `error` (thrown by attempt `attempt`) is worth another try: `false` gives up at once,
   * `true` backs off, a number waits that many milliseconds (what the server asked for).
   */
  retryable: (error: unknown, attempt: number) => boolean | number;
  onRetry?: (info: RetryInfo) => void;
  /** A server may ask for longer than is reasonable to sit through; default one minute. */
  maxServerDelayMs?: number;
  random?: () => number;
}

/** The back-off after failed attempt `attempt` (from 1): base·2^(n−1), ±25 % jitter, capped. */
export function backoffDelayMs(
  attempt: number,
  policy: Pick<RetryPolicy, "baseDelayMs" | "maxDelayMs">,
  random: () => number = Math.random,
): number {
  const exponential = policy.baseDelayMs * 2 ** Math.max(0, attempt - 1);
  return Math.min(policy.maxDelayMs, exponential * (0.75 + random() / 2));
}

/** Waits, or rejects with the signal's reason as soon as it aborts. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  try {
    await delay(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    signal?.throwIfAborted();
    throw err;
  }
}

/**
 * Runs `operation` until it succeeds, `retryable` says no, or the attempts run out; then the
 * last error is thrown as it was. `operation` gets the attempt number, so it can resolve a fresh
 * URL (signed addresses expire) or resume from what an earlier attempt left.
 */
export async function retry<T>(
  operation: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { policy, signal } = options;
  const maxServer = options.maxServerDelayMs ?? 60_000;
  for (let attempt = 1; ; attempt += 1) {
    signal?.throwIfAborted();
    try {
      return await operation(attempt);
    } catch (error) {
      signal?.throwIfAborted();
      if (attempt >= policy.attempts) throw error;
      const verdict = options.retryable(error, attempt);
      if (verdict === false) throw error;
      const delayMs =
        typeof verdict === "number"
          ? Math.min(Math.max(0, verdict), maxServer)
          : backoffDelayMs(attempt, policy, options.random);
      options.onRetry?.({ attempt, delayMs, error });
      await sleep(delayMs, signal);
    }
  }
}

interface HeaderSource {
  get(name: string): string | null | undefined;
}

/**
 * How long the server asked us to wait, in milliseconds: `retry-after` (seconds or an HTTP
 * date), else a rate-limit reset time (`x-ratelimit-reset` from GitHub, `ratelimit-reset` from
 * GitLab, both Unix seconds). `undefined` when it said nothing usable.
 */
export function serverDelayMs(headers: HeaderSource, now = Date.now()): number | undefined {
  const retryAfter = headers.get("retry-after")?.trim();
  if (retryAfter) {
    if (/^\d+(\.\d+)?$/.test(retryAfter)) return Number(retryAfter) * 1000;
    const date = Date.parse(retryAfter);
    if (Number.isFinite(date)) return Math.max(0, date - now);
  }
  for (const name of ["x-ratelimit-reset", "ratelimit-reset"]) {
    const value = headers.get(name)?.trim();
    if (value && /^\d+$/.test(value)) {
      const reset = Number(value);
      // A small number is a delay in seconds (IETF draft), a large one a Unix time.
      return reset < 1e9 ? reset * 1000 : Math.max(0, reset * 1000 - now);
    }
  }
  return undefined;
}

/** Lets `serverDelayMs` read a plain header record (Octokit's, gitbeaker's) as well as `Headers`. */
export function headerSource(record: Record<string, unknown> | undefined): HeaderSource {
  return {
    get(name) {
      const value = record?.[name] ?? record?.[name.toLowerCase()];
      return typeof value === "string" || typeof value === "number" ? String(value) : undefined;
    },
  };
}
