import {
  createRequesterFn,
  getMatchingRateLimiter,
  type FormattedResponse,
  type RateLimiters,
  type RequesterType,
  type ResourceOptions,
  type ResponseBodyTypes,
} from "@gitbeaker/requester-utils";
import { GitbeakerRequestError, GitbeakerTimeoutError } from "@gitbeaker/rest";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../report/logger.js";

/**
 * Why this exists: @gitbeaker/rest's own request handler retries only 429 and 502, ten times in
 * about a quarter of a second, and never reads `retry-after`. GitLab under load answers 500/503/504
 * and rate-limits with `retry-after`, so this handler (plugged in through gitbeaker's documented
 * `requesterFn` hook) retries those with exponential back-off that honours the server's wait.
 * Pagination, endpoint building and auth headers stay gitbeaker's.
 */

export interface RetryPolicy {
  /** Further attempts after the first; default 4. */
  retries?: number;
  /** First back-off; doubled per attempt, with jitter; default 500 ms. */
  minDelayMs?: number;
  /** Ceiling for any single wait, including one asked for by `retry-after`; default 60 s. */
  maxDelayMs?: number;
}

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
// A 5xx or a cut connection may come after the server acted; only repeat what is safe to repeat.
// A 429 means the request was turned away unprocessed, so it is retried whatever the method.
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);
// Transient socket failures; a refused connection or an unknown host is left to fail at once.
const RETRY_NETWORK_CODES = new Set([
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

interface HandlerOptions {
  headers?: Record<string, string>;
  method?: string;
  searchParams?: string;
  prefixUrl?: string;
  body?: string | FormData;
  asStream?: boolean;
  signal?: AbortSignal;
  rateLimiters?: RateLimiters;
}

/** The error code under a fetch failure (`TypeError: fetch failed` → cause `ECONNREFUSED`). */
export function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    const code = (current as Error & { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = current.cause;
  }
  return undefined;
}

/** Milliseconds the server asks us to wait: `retry-after` (seconds or a date), else `ratelimit-reset`. */
export function serverDelayMs(headers: Headers, now = Date.now()): number | undefined {
  const retryAfter = headers.get("retry-after");
  if (retryAfter) {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const date = Date.parse(retryAfter);
    if (Number.isFinite(date)) return Math.max(0, date - now);
  }
  const reset = Number(headers.get("ratelimit-reset") ?? "");
  if (reset > 0) return Math.max(0, reset * 1000 - now);
  return undefined;
}

function backoffMs(attempt: number, policy: Required<RetryPolicy>): number {
  const exponential = policy.minDelayMs * 2 ** attempt;
  return Math.min(policy.maxDelayMs, exponential / 2 + Math.random() * (exponential / 2));
}

async function parseBody(response: Response, asStream: boolean): Promise<ResponseBodyTypes> {
  if (asStream) return response.body as ReadableStream;
  if (response.status === 204) return null;
  const contentType = (response.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
  if (contentType === "application/json")
    return ((await response.json()) as ResponseBodyTypes) ?? {};
  if (contentType.startsWith("text/")) return response.text();
  return response.blob();
}

async function requestError(request: Request, response: Response): Promise<GitbeakerRequestError> {
  const content = await response.text();
  let description = content;
  if (response.headers.get("content-type")?.includes("application/json")) {
    try {
      const parsed = JSON.parse(content) as { error?: unknown; message?: unknown };
      const detail = parsed.error ?? parsed.message ?? "";
      description = typeof detail === "string" ? detail : JSON.stringify(detail);
    } catch {
      // Not JSON after all: keep the raw text as the description.
    }
  }
  return new GitbeakerRequestError(description, { cause: { description, request, response } });
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
}

/** A gitbeaker `requesterFn` whose requests retry transient failures with back-off. */
export function retryingRequesterFn(
  logger: Logger,
  retryPolicy: RetryPolicy = {},
): (resourceOptions: ResourceOptions) => RequesterType {
  const policy: Required<RetryPolicy> = {
    retries: retryPolicy.retries ?? 4,
    minDelayMs: retryPolicy.minDelayMs ?? 500,
    maxDelayMs: retryPolicy.maxDelayMs ?? 60_000,
  };

  const wait = async (ms: number, signal: AbortSignal | undefined): Promise<void> => {
    try {
      await sleep(ms, undefined, { signal });
    } catch (error) {
      if (isAbort(error)) throw new GitbeakerTimeoutError("Query timeout was reached");
      throw error;
    }
  };

  async function handle(
    endpoint: string,
    raw?: Record<string, unknown>,
  ): Promise<FormattedResponse> {
    const options = (raw ?? {}) as HandlerOptions;
    const { rateLimiters, asStream = false, prefixUrl, searchParams, method = "GET" } = options;
    const base = prefixUrl && !prefixUrl.endsWith("/") ? `${prefixUrl}/` : prefixUrl;
    const url = new URL(endpoint, base);
    url.search = searchParams ?? "";
    const rateLimit = getMatchingRateLimiter(endpoint, rateLimiters, method);

    for (let attempt = 0; ; attempt += 1) {
      await rateLimit();
      const request = new Request(url, {
        method,
        headers: options.headers,
        body: options.body,
        signal: options.signal,
      });
      let response: Response;
      try {
        response = await fetch(request);
      } catch (error) {
        if (isAbort(error)) throw new GitbeakerTimeoutError("Query timeout was reached");
        const code = networkErrorCode(error);
        const retryable =
          code !== undefined && RETRY_NETWORK_CODES.has(code) && IDEMPOTENT.has(method);
        if (attempt >= policy.retries || !retryable) throw error;
        const delayMs = backoffMs(attempt, policy);
        logger.warn(
          { method, path: url.pathname, code, attempt: attempt + 1, delayMs },
          "GitLab request failed; retrying",
        );
        await wait(delayMs, options.signal);
        continue;
      }

      if (response.ok) {
        const headers = Object.fromEntries(response.headers.entries());
        return { body: await parseBody(response, asStream), headers, status: response.status };
      }
      const retryable =
        RETRY_STATUSES.has(response.status) && (response.status === 429 || IDEMPOTENT.has(method));
      if (attempt >= policy.retries || !retryable) {
        throw await requestError(request, response);
      }
      const asked = serverDelayMs(response.headers);
      const delayMs = Math.min(policy.maxDelayMs, asked ?? backoffMs(attempt, policy));
      await response.arrayBuffer();
      logger.warn(
        { method, path: url.pathname, status: response.status, attempt: attempt + 1, delayMs },
        "GitLab request failed; retrying",
      );
      await wait(delayMs, options.signal);
    }
  }

  return createRequesterFn(async (_serviceOptions, requestOptions) => requestOptions, handle);
}
