import { Octokit } from "@octokit/rest";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import type { Logger } from "../report/logger.js";

export { toGithubError, NoMetadataError, redactUrl } from "./errors.js";

const GithubOctokit = Octokit.plugin(retry, throttling);
export type GithubClient = InstanceType<typeof GithubOctokit>;

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
}

// Rate limits are the throttling plugin's job: letting plugin-retry also retry them would
// stack its own blind back-off on top of the wait the server asked for.
const DO_NOT_RETRY = [400, 401, 403, 404, 410, 422, 429, 451];

interface ThrottledRequest {
  method?: string;
  url?: string;
}

/**
 * The one way the tool talks to the GitHub API: Octokit with retries on 5xx and resets, and
 * waits (logged) on primary and secondary rate limits.
 */
export function createGithubClient(options: GithubClientOptions): GithubClient {
  const { logger } = options;
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

  return new GithubOctokit({
    baseUrl: (options.baseUrl ?? DEFAULT_GITHUB_API_URL).replace(/\/+$/, ""),
    ...(options.token ? { auth: options.token } : {}),
    userAgent: options.userAgent ?? "gh-gitlab-sync",
    log: {
      debug: (message: string) => logger.debug(message),
      // Octokit logs every request at info; that is debugging detail for an operator.
      info: (message: string) => logger.debug(message),
      warn: (message: string) => logger.warn(message),
      error: (message: string) => logger.error(message),
    },
    retry: { retries: options.maxRetries ?? 3, doNotRetry: DO_NOT_RETRY },
    throttle: {
      onRateLimit: onLimit("rate limit"),
      onSecondaryRateLimit: onLimit("secondary rate limit"),
    },
  });
}
