import { Octokit } from "@octokit/rest";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import { streamGetOf, type FetchLike, type StreamGet } from "../net/http.js";
import type { Logger } from "../report/logger.js";
import { cancelled, guardedApiFetch, unwrapRefusal } from "./api-fetch.js";
import { EtagCache, GithubApiTally, notModified } from "./conditional.js";
import { describeRead, toGithubError } from "./errors.js";

export { toGithubError, NoMetadataError, redactUrl } from "./errors.js";
export type { GithubApiTally, RateLimit } from "./conditional.js";

const GithubOctokit = Octokit.plugin(retry, throttling);

/**
 * How the signed addresses GitHub redirects to (job logs, run-log zips, artifacts) are read:
 * with the same fetch and abort signal as the API, and never with the token.
 */
export interface BlobAccess {
  fetch: FetchLike;
  /** The same transport's streaming GET, for bulk downloads (artifacts). */
  get: StreamGet;
  signal: AbortSignal | undefined;
}

export type GithubClient = InstanceType<typeof GithubOctokit> & {
  readonly blobs: BlobAccess;
  /** What GitHub's answers said: counts by status, the rate limit left, x-poll-interval. */
  readonly tally: GithubApiTally;
};

export const DEFAULT_GITHUB_API_URL = "https://api.github.com";

export interface GithubClientOptions {
  baseUrl?: string;
  /** Absent only for anonymous reads of public data; logs always need one. */
  token?: string;
  logger: Logger;
  userAgent?: string;
  /** Retries of a 5xx or a dropped connection (with growing back-off). */
  maxRetries?: number;
  /** Waits on a rate limit before the error is passed on. */
  maxRateLimitWaits?: number;
  /** A rate limit that resets later than this is reported instead of waited out. */
  maxRateLimitWaitSeconds?: number;
  /** Ends every request of this client, API and blob reads alike. */
  signal?: AbortSignal;
  /** The command's HttpClient fetch (proxies, timeouts, safe redirects). */
  fetch: FetchLike;
  /** The same client's streaming GET (`HttpClient.get`); a wrapper of `fetch` when not given. */
  get?: StreamGet;
}

// Rate limits are the throttling plugin's job: letting plugin-retry also retry them would
// stack its own blind back-off on top of the wait the server asked for.
const DO_NOT_RETRY = [400, 401, 403, 404, 410, 422, 429, 451];

/** `work`, or an AbortError as soon as the signal aborts (the work is left to end on its own). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  const abortError = () => cancelled(signal.reason, signal) as Error;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) reject(abortError());
    const onAbort = () => reject(abortError());
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

interface ThrottledRequest {
  method?: string;
  url?: string;
}

/**
 * The one way the tool talks to the GitHub API: Octokit with retries on 5xx and resets, and
 * waits (logged) on primary and secondary rate limits. Two hooks, registered after the plugins
 * so that they wrap them, give every request the client's abort signal and turn every final
 * failure into one operator-facing line; no call site has to remember either.
 */
export function createGithubClient(options: GithubClientOptions): GithubClient {
  const { logger, signal } = options;
  const fetch = options.fetch;
  const maxWaits = options.maxRateLimitWaits ?? 3;
  const maxWaitSeconds = options.maxRateLimitWaitSeconds ?? 15 * 60;

  const onLimit =
    (kind: "rate limit" | "secondary rate limit") =>
    (
      retryAfter: number,
      request: ThrottledRequest,
      _octokit: unknown,
      retryCount: number,
    ): boolean => {
      const call = `${request.method ?? "GET"} ${request.url ?? ""}`;
      if (retryCount >= maxWaits || retryAfter > maxWaitSeconds) {
        logger.warn({ retryAfter, retryCount }, `GitHub ${kind} hit on ${call}; giving up`);
        return false;
      }
      logger.warn(
        { retryAfter, retryCount },
        `GitHub ${kind} hit on ${call}; waiting ${retryAfter}s before trying again`,
      );
      return true;
    };

  const baseUrl = (options.baseUrl ?? DEFAULT_GITHUB_API_URL).replace(/\/+$/, "");
  const tally = new GithubApiTally();
  const etags = new EtagCache();
  const octokit = new GithubOctokit({
    baseUrl,
    ...(options.token ? { auth: options.token } : {}),
    userAgent: options.userAgent ?? "gh-gitlab-sync",
    request: {
      fetch: guardedApiFetch(fetch, baseUrl, (status, headers) => tally.observe(status, headers)),
    },
    log: {
      debug: (message: string) => logger.debug(message),
      // Octokit logs every request at info; that is debugging detail for an operator.
      info: (message: string) => logger.debug(message),
      warn: (message: string) => logger.warn(message),
      // Octokit logs each failed attempt ("GET … - 500 in 3ms"), retried ones too; the failure
      // that is left after the retries is reported once, as one line, by whoever called.
      error: (message: string) => logger.debug(message),
    },
    retry: { retries: options.maxRetries ?? 3, doNotRetry: DO_NOT_RETRY },
    throttle: {
      onRateLimit: onLimit("rate limit"),
      onSecondaryRateLimit: onLimit("secondary rate limit"),
    },
  });

  // Every GET asks conditionally when an answer with an ETag is kept; `@octokit/request` throws
  // the 304 as a RequestError, answered here (inside the error hook) with the kept body.
  octokit.hook.wrap("request", async (request, options) => {
    const { method, url } = octokit.request.endpoint.parse(options);
    if (method !== "GET") return request(options);
    const etag = etags.etagFor(url);
    // In place: the hooks inside this one were bound to this very options object. A fresh
    // headers object, since the one there may be shared.
    if (etag) options.headers = { ...options.headers, "if-none-match": etag };
    try {
      const answer = await request(options);
      etags.remember(url, answer);
      return answer;
    } catch (err) {
      const replayed = notModified(err) && etags.replay(url, notModified(err));
      if (replayed) return replayed as Awaited<ReturnType<typeof request>>;
      throw err;
    }
  });

  if (signal) {
    // The throttling plugin sits out a rate limit (up to maxRateLimitWaitSeconds) in a timer of
    // its own that no signal reaches; racing every request with the signal ends that wait too.
    octokit.hook.wrap("request", (request, options) =>
      untilAborted(Promise.resolve(request(options)), signal),
    );
    octokit.hook.before("request", (request) => {
      // A fresh object: without per-call request options this one is the client's defaults.
      const own = request.request.signal;
      request.request = {
        ...request.request,
        signal: own ? AbortSignal.any([signal, own]) : signal,
      };
    });
  }
  octokit.hook.error("request", (error, request) => {
    const { method, url } = octokit.request.endpoint.parse(request);
    throw toGithubError(unwrapRefusal(error), describeRead(method, url));
  });

  const get = options.get ?? streamGetOf(fetch);
  return Object.assign(octokit, { blobs: { fetch, get, signal }, tally });
}
