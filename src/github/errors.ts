import type { RunMetadata } from "../domain/metadata.js";
import { SyncError, describeError, errorCode, isAbortError } from "../errors.js";
import { CERTIFICATE_HINT, isCertificateCode } from "../net/http.js";
import { oneLine } from "../util/text.js";

/**
 * The run's logs were read but hold no metadata block (e.g. the run failed before the step
 * ran). Not a fault of the tool or the network, so callers may cache it and move on.
 */
export class NoMetadataError extends SyncError {
  readonly runId: number;
  /** The keys of an incomplete block (one without `Image tag`), when the logs had one. */
  readonly found: string[];

  constructor(runId: number, found: string[] = []) {
    super(
      found.length > 0
        ? `run ${runId}: the metadata block in its logs has no 'Image tag' (only ${found.join(", ")})`
        : `run ${runId}: no build metadata block found in its logs`,
      {
        hint: "the run probably stopped before its 'Record build metadata' step; it is skipped",
      },
    );
    this.name = "NoMetadataError";
    this.runId = runId;
    this.found = found;
  }
}

/**
 * The run's log printed two different metadata blocks: taking either would be a guess, and
 * mirroring the wrong images under the other's tag a silent mistake.
 */
export class ConflictingMetadataError extends SyncError {
  readonly runId: number;

  constructor(runId: number, first: RunMetadata, second: RunMetadata) {
    const a = first["Image tag"] ?? "?";
    const b = second["Image tag"] ?? "?";
    const which =
      a === b ? `both for image tag '${a}', with different values` : `image tags '${a}' and '${b}'`;
    super(`run ${runId}: its log holds two different metadata blocks (${which})`, {
      hint: "the run is skipped; check its 'Record build metadata' step (the workflow printed two builds)",
    });
    this.name = "ConflictingMetadataError";
    this.runId = runId;
  }
}

/**
 * A GitHub API failure put into words. It keeps the HTTP status, because Octokit's paginator
 * (which sees the error after the client's error hook) ends a listing on a 409 by its status,
 * and the log routes stop trying other jobs after a 401.
 */
export class GithubError extends SyncError {
  readonly status: number | undefined;

  constructor(message: string, options: { hint?: string; cause: unknown; status?: number }) {
    super(message, options);
    this.name = "GithubError";
    this.status = options.status;
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

/** The repository part of an API path: by name, or by id in the `link` of a next page. */
const REPO = String.raw`/(?:repos/(?<owner>[^/]+)/(?<name>[^/]+)|repositories/(?<repoId>\d+))`;

interface Read {
  pattern: RegExp;
  what: (id: string, repo: string) => string;
}

/** An API path ending in `tail` (whose last group is the id) reads `what`. */
function read(tail: string, what: Read["what"]): Read {
  return { pattern: new RegExp(`${REPO}${tail}$`), what };
}

/** What each API address the tool reads holds, in the words of its error messages. */
const READS: Read[] = [
  read("/actions/workflows/([^/]+)/runs", (id, repo) => `runs of workflow ${id} in ${repo}`),
  read("/actions/runs/(\\d+)/artifacts", (id, repo) => `artifacts of run ${id} in ${repo}`),
  read("/actions/runs/(\\d+)/jobs", (id, repo) => `jobs of run ${id} in ${repo}`),
  read("/actions/runs/(\\d+)/logs", (id) => `the logs of run ${id}`),
  read("/actions/jobs/(\\d+)/logs", (id, repo) => `the log of job ${id} in ${repo}`),
  read("/actions/artifacts/(\\d+)/zip", (id, repo) => `artifact ${id} of ${repo}`),
];

function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/**
 * What a request to `url` was reading ("runs of workflow x.yml in owner/repo"), for error
 * messages. Taken from the address, because that is all the paginator passes on for its pages.
 * A next page GitHub names by repository id says so; an address not listed is named as it is.
 */
export function describeRead(method: string, url: string): string {
  let pathname: string;
  try {
    pathname = new URL(url).pathname;
  } catch {
    pathname = url.split("?")[0] ?? url;
  }
  for (const { pattern, what } of READS) {
    const match = pattern.exec(pathname);
    if (!match) continue;
    const { owner, name, repoId } = match.groups ?? {};
    const repo = owner && name ? `${decoded(owner)}/${decoded(name)}` : `repository ${repoId}`;
    return what(decoded(match[match.length - 1] ?? ""), repo);
  }
  return `${method} ${pathname}`;
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
 * read and what to do next. The client's error hook applies it to every API request.
 */
export function toGithubError(err: unknown, what: string): SyncError {
  if (err instanceof SyncError) return err;
  if (!isRequestErrorLike(err)) {
    if (isAbortError(err)) {
      return new SyncError(`reading ${what} was cancelled`, { cause: err });
    }
    return new SyncError(`reading ${what} failed: ${oneLine(describeError(err))}`, { cause: err });
  }
  const { status } = err;
  const detail = oneLine(err.message);
  const fail = (message: string, hint?: string): GithubError =>
    new GithubError(message, { ...(hint ? { hint } : {}), cause: err, status });
  if (isNetworkFailure(err)) {
    const code = errorCode(err);
    if (isCertificateCode(code)) {
      return fail(
        `cannot verify the TLS certificate of ${redactUrl(err.request?.url)} while reading ${what} (${code})`,
        CERTIFICATE_HINT,
      );
    }
    return fail(
      `could not reach ${redactUrl(err.request?.url)} while reading ${what}: ${detail}`,
      "check --github-api-url / GITHUB_API_URL and the network connection",
    );
  }
  if (status === 401) {
    return fail(
      `GitHub rejected the token (401 ${detail}) while reading ${what}`,
      `${TOKEN_SOURCES_HINT}; ${TOKEN_SCOPE}`,
    );
  }
  if (isRateLimited(err)) {
    return fail(`GitHub rate limit exceeded while reading ${what} (${status})`, rateLimitHint(err));
  }
  if (status === 403) {
    return fail(
      `GitHub refused access to ${what} (403 ${detail})`,
      `${TOKEN_SCOPE}; ${TOKEN_SOURCES_HINT}`,
    );
  }
  if (status === 404) {
    return fail(
      `not found: ${what}; check --repo and --workflow`,
      "a private repository also answers 404 to a token that cannot see it",
    );
  }
  if (status === 410) {
    return fail(
      `${what} has expired on GitHub (410 Gone)`,
      "GitHub keeps run logs and artifacts for a limited time (90 days by default); re-run the workflow",
    );
  }
  if (status >= 500) {
    return fail(
      `GitHub answered ${status} for ${what}, also after retries`,
      "GitHub may be having trouble; try again later",
    );
  }
  return fail(`GitHub answered ${status} for ${what}: ${detail}`);
}
