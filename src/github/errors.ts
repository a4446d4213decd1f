import { SyncError, describeError } from "../errors.js";

/**
 * The run's logs were read but hold no metadata block (e.g. the run failed before the step
 * ran). Not a fault of the tool or the network, so callers may cache it and move on.
 */
export class NoMetadataError extends SyncError {
  readonly runId: number;

  constructor(runId: number) {
    super(`run ${runId}: no build metadata block found in its logs`, {
      hint: "the run probably stopped before its 'Record build metadata' step; it is skipped",
    });
    this.name = "NoMetadataError";
    this.runId = runId;
  }
}

/** The parts of @octokit/request-error's RequestError this module reads. */
interface RequestErrorLike {
  status: number;
  message: string;
  request?: { url?: string };
  response?: { headers?: Record<string, string | number | undefined>; data?: unknown };
}

function isRequestErrorLike(err: unknown): err is RequestErrorLike {
  return (
    err instanceof Error &&
    typeof (err as { status?: unknown }).status === "number" &&
    typeof (err as { request?: unknown }).request === "object"
  );
}

/** Signed redirect URLs carry credentials in the query; never print one. */
export function redactUrl(url: string | undefined): string {
  if (!url) return "(unknown URL)";
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return url.split("?")[0] ?? url;
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function header(err: RequestErrorLike, name: string): string | undefined {
  const value = err.response?.headers?.[name];
  return value === undefined ? undefined : String(value);
}

function isRateLimited(err: RequestErrorLike): boolean {
  if (err.status !== 403 && err.status !== 429) return false;
  return (
    header(err, "x-ratelimit-remaining") === "0" ||
    header(err, "retry-after") !== undefined ||
    /rate limit/i.test(err.message)
  );
}

function rateLimitHint(err: RequestErrorLike): string {
  const reset = Number(header(err, "x-ratelimit-reset"));
  const when =
    Number.isFinite(reset) && reset > 0
      ? ` (resets at ${new Date(reset * 1000).toISOString()})`
      : "";
  return `wait for the limit to reset${when}, or use a token with a higher limit`;
}

/** What to tell an operator whose token GitHub rejects or does not trust enough. */
export const TOKEN_SOURCES_HINT =
  "pass a token with --gh-token, or set GH_TOKEN or GITHUB_TOKEN, or log in with `gh auth login` so that `gh auth token` works";
const TOKEN_SCOPE = "the token needs actions:read (repo scope for a private repository)";

/** Whether the failure is a network-level one (no HTTP answer at all). */
function isNetworkFailure(err: RequestErrorLike): boolean {
  return err.status === 500 && err.response === undefined;
}

/**
 * Turns whatever a GitHub call threw into one operator-facing line naming `what` was being
 * read and what to do next.
 */
export function toGithubError(err: unknown, what: string): SyncError {
  if (err instanceof SyncError) return err;
  if (!isRequestErrorLike(err)) {
    if (err instanceof Error && err.name === "AbortError") {
      return new SyncError(`reading ${what} was cancelled`, { cause: err });
    }
    return new SyncError(oneLine(`reading ${what} failed: ${describeError(err)}`), { cause: err });
  }
  const detail = oneLine(err.message);
  if (isNetworkFailure(err)) {
    return new SyncError(
      `could not reach ${redactUrl(err.request?.url)} while reading ${what}: ${detail}`,
      {
        hint: "check --github-api-url / GITHUB_API_URL and the network connection",
        cause: err,
      },
    );
  }
  if (err.status === 401) {
    return new SyncError(`GitHub rejected the token (401 ${detail}) while reading ${what}`, {
      hint: `${TOKEN_SOURCES_HINT}; ${TOKEN_SCOPE}`,
      cause: err,
    });
  }
  if (isRateLimited(err)) {
    return new SyncError(`GitHub rate limit exceeded while reading ${what} (${err.status})`, {
      hint: rateLimitHint(err),
      cause: err,
    });
  }
  if (err.status === 403) {
    return new SyncError(`GitHub refused access to ${what} (403 ${detail})`, {
      hint: `${TOKEN_SCOPE}; ${TOKEN_SOURCES_HINT}`,
      cause: err,
    });
  }
  if (err.status === 404) {
    return new SyncError(`not found: ${what}; check --repo and --workflow`, {
      hint: "a private repository also answers 404 to a token that cannot see it",
      cause: err,
    });
  }
  if (err.status === 410) {
    return new SyncError(`${what} has expired on GitHub (410 Gone)`, {
      hint: "GitHub keeps run logs and artifacts for a limited time (90 days by default); re-run the workflow",
      cause: err,
    });
  }
  if (err.status >= 500) {
    return new SyncError(`GitHub answered ${err.status} for ${what}, also after retries`, {
      hint: "GitHub may be having trouble; try again later",
      cause: err,
    });
  }
  return new SyncError(`GitHub answered ${err.status} for ${what}: ${detail}`, { cause: err });
}
