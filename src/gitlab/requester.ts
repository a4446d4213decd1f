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
import { API_BODY_LIMIT, ERROR_BODY_LIMIT } from "../config/limits.js";
import { errorCode, isAbortError } from "../errors.js";
import { isTransientCode, readBody, readTextPrefix, type FetchLike } from "../net/http.js";
import { checkNextPage } from "../net/paging.js";
import { retry, serverDelayMs, type RetryPolicy } from "../net/retry.js";
import type { Logger } from "../report/logger.js";

/**
 * Why this exists: @gitbeaker/rest's own request handler retries only 429 and 502, ten times in
 * about a quarter of a second, and never reads `retry-after`. GitLab under load answers 500/503/504
 * and rate-limits with `retry-after`, so this handler (plugged in through gitbeaker's documented
 * `requesterFn` hook) retries those through net/retry, honouring the server's wait.
 * Pagination, endpoint building and auth headers stay gitbeaker's.
 */

export const DEFAULT_GITLAB_RETRY: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 500,
  maxDelayMs: 60_000,
};

export interface RequesterSettings {
  logger: Logger;
  /** Filled in from DEFAULT_GITLAB_RETRY; `maxDelayMs` also caps a wait `retry-after` asks for. */
  retry?: Partial<RetryPolicy>;
  /** The command's HttpClient fetch. */
  fetch: FetchLike;
  /** Ends every request of this client and its back-off waits (SIGINT/SIGTERM). */
  signal?: AbortSignal | undefined;
}

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
// A 5xx or a cut connection may come after the server acted; only repeat what is safe to repeat.
// A 429 means the request was turned away unprocessed, so it is retried whatever the method.
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

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

/** A page is read whole (gitbeaker parses it), so never past {@link API_BODY_LIMIT}. */
async function parseBody(
  response: Response,
  asStream: boolean,
  url: URL,
): Promise<ResponseBodyTypes> {
  if (asStream) return response.body as ReadableStream;
  if (response.status === 204) return null;
  const contentType = (response.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
  const bytes = await readBody(response, API_BODY_LIMIT, `GitLab's answer for ${url.pathname}`);
  if (contentType === "application/json")
    return (JSON.parse(bytes.toString("utf8")) as ResponseBodyTypes) ?? {};
  if (contentType.startsWith("text/")) return bytes.toString("utf8");
  return new Blob([bytes]);
}

async function requestError(request: Request, response: Response): Promise<GitbeakerRequestError> {
  const content = await readTextPrefix(response, ERROR_BODY_LIMIT);
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

/**
 * Whether a failed attempt is worth another: a transient network failure or a 5xx of a request
 * safe to repeat, or a 429; a number is the wait the server asked for.
 */
function retryable(error: unknown, method: string): boolean | number {
  const response = error instanceof GitbeakerRequestError ? error.cause?.response : undefined;
  if (!response) {
    const code = errorCode(error);
    return isTransientCode(code) && IDEMPOTENT.has(method);
  }
  if (!RETRY_STATUSES.has(response.status)) return false;
  if (response.status !== 429 && !IDEMPOTENT.has(method)) return false;
  return serverDelayMs(response.headers) ?? true;
}

function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  return given.length > 1 ? AbortSignal.any(given) : given[0];
}

/** A gitbeaker `requesterFn` whose requests retry transient failures with back-off. */
export function retryingRequesterFn(
  settings: RequesterSettings,
): (resourceOptions: ResourceOptions) => RequesterType {
  const { logger } = settings;
  const fetch = settings.fetch;
  const policy: RetryPolicy = { ...DEFAULT_GITLAB_RETRY, ...settings.retry };

  async function handle(
    endpoint: string,
    raw?: Record<string, unknown>,
  ): Promise<FormattedResponse> {
    const options = (raw ?? {}) as HandlerOptions;
    const { rateLimiters, asStream = false, prefixUrl, searchParams, method = "GET" } = options;
    // gitbeaker's own signal is its queryTimeout; the command's stops the request on a signal.
    const signal = anySignal(options.signal, settings.signal);
    const base = prefixUrl && !prefixUrl.endsWith("/") ? `${prefixUrl}/` : prefixUrl;
    const url = new URL(endpoint, base);
    url.search = searchParams ?? "";
    const rateLimit = getMatchingRateLimiter(endpoint, rateLimiters, method);

    const attempt = async (): Promise<FormattedResponse> => {
      await rateLimit();
      const request = new Request(url, {
        method,
        headers: options.headers,
        body: options.body,
        signal,
      });
      const response = await fetch(request);
      if (!response.ok) throw await requestError(request, response);
      // gitbeaker follows `link` for as long as it is there: a pager that loops must stop here.
      checkNextPage(url, response.headers.get("link"), `GitLab's listing of ${url.pathname}`);
      const headers = Object.fromEntries(response.headers.entries());
      return { body: await parseBody(response, asStream, url), headers, status: response.status };
    };

    try {
      return await retry(attempt, {
        policy,
        signal,
        maxServerDelayMs: policy.maxDelayMs,
        retryable: (error) => retryable(error, method),
        onRetry: ({ attempt: failed, delayMs, error }) => {
          const status =
            error instanceof GitbeakerRequestError ? error.cause?.response?.status : undefined;
          logger.warn(
            {
              method,
              path: url.pathname,
              ...(status !== undefined ? { status } : { code: errorCode(error) }),
              attempt: failed,
              delayMs,
            },
            "GitLab request failed; retrying",
          );
        },
      });
    } catch (error) {
      settings.signal?.throwIfAborted();
      // gitbeaker's queryTimeout is an AbortSignal.timeout; its error says what that means.
      if (isAbortError(error)) throw new GitbeakerTimeoutError("Query timeout was reached");
      throw error;
    }
  }

  return createRequesterFn(
    (_serviceOptions, requestOptions) => Promise.resolve(requestOptions),
    handle,
  );
}
