/**
 * Conditional requests and what GitHub's answers say about the client's budget.
 *
 * GitHub answers most GETs with an `ETag`; asked again with that tag in `If-None-Match`, it
 * answers `304 Not Modified`, which an authorised request is not charged for (GitHub's "best
 * practices for using the REST API"). So the client keeps the last answer of each address with
 * its tag, asks conditionally, and answers a 304 from what it kept: a poller that asks every
 * 30 s spends nothing while nothing changes.
 */

/** One answer, as Octokit hands it on. */
interface OctokitAnswer {
  status: number;
  url: string;
  headers: Record<string, string | number | undefined>;
  data: unknown;
}

/** How many answers are kept: the daemon polls one address; listings a cycle reads are few. */
const KEPT_ANSWERS = 32;
/** A bigger answer is not kept (a runs page of 100 is about 1 MiB on github.com). */
const KEPT_ANSWER_BYTES = 4 << 20;

/** The client's answers with their ETags, newest last (a Map keeps insertion order). */
export class EtagCache {
  private readonly answers = new Map<string, { etag: string; answer: OctokitAnswer }>();

  constructor(private readonly size = KEPT_ANSWERS) {}

  /** The tag to send for `url`, verbatim: a weak tag keeps its `W/` and its quotes. */
  etagFor(url: string): string | undefined {
    return this.answers.get(url)?.etag;
  }

  /** Keeps a 200 that carries an ETag and a parsed body (not a stream or a download). */
  remember(url: string, answer: OctokitAnswer): void {
    const etag = answer.headers.etag;
    const size = Number(answer.headers["content-length"] ?? 0);
    if (answer.status !== 200 || typeof etag !== "string" || !isParsed(answer.data)) return;
    if (!(size <= KEPT_ANSWER_BYTES)) return;
    this.answers.delete(url);
    // A copy: Octokit's paginator rewrites the body of the answer it is handed.
    this.answers.set(url, { etag, answer: structuredClone(answer) });
    if (this.answers.size > this.size) {
      const oldest = this.answers.keys().next().value;
      if (oldest !== undefined) this.answers.delete(oldest);
    }
  }

  /** The kept answer for a 304, with the 304's fresh headers (rate limit) over the kept ones. */
  replay(url: string, notModified: OctokitAnswer | undefined): OctokitAnswer | undefined {
    const kept = this.answers.get(url);
    if (!kept) return undefined;
    // Used again: the newest now.
    this.answers.delete(url);
    this.answers.set(url, kept);
    const fresh = Object.fromEntries(
      Object.entries(notModified?.headers ?? {}).filter(([name]) => name.startsWith("x-")),
    );
    const answer = structuredClone(kept.answer);
    return { ...answer, headers: { ...answer.headers, ...fresh } };
  }
}

function isParsed(data: unknown): boolean {
  return typeof data === "object" && data !== null && !(data instanceof ArrayBuffer);
}

/** What GitHub's rate-limit headers said last. */
export interface RateLimit {
  remaining: number;
  limit: number;
  /** When the window resets (Unix ms). */
  resetAt: number;
}

/** An answer's label for the metrics: its status (`200`, `304`, `404`…), `error` when none came. */
export type RequestResult = string;

/**
 * What the client learnt from every answer of the API origin (retries included, each one is a
 * request GitHub counts): how many of each status, the rate limit left and GitHub's asked-for
 * poll interval. The daemon paces its polling by it; the metrics read it.
 */
export class GithubApiTally {
  readonly results = new Map<RequestResult, number>();
  rateLimit: RateLimit | undefined;
  /** `x-poll-interval`: the least interval GitHub asks pollers of that address to keep. */
  pollIntervalSeconds: number | undefined;
  private readonly listeners = new Set<(result: RequestResult) => void>();

  /** Calls `listener` with each answer's result from now on. */
  onResult(listener: (result: RequestResult) => void): void {
    this.listeners.add(listener);
  }

  /** Counts one answer (`status` undefined: no answer came) and reads its headers. */
  observe(status: number | undefined, headers?: Headers): void {
    const result = status === undefined ? "error" : String(status);
    this.results.set(result, (this.results.get(result) ?? 0) + 1);
    for (const listener of this.listeners) listener(result);
    if (!headers) return;
    const number = (name: string) => {
      const value = headers.get(name);
      return value !== null && /^\d+$/.test(value.trim()) ? Number(value) : undefined;
    };
    const remaining = number("x-ratelimit-remaining");
    const limit = number("x-ratelimit-limit");
    const reset = number("x-ratelimit-reset");
    if (remaining !== undefined && limit !== undefined && reset !== undefined) {
      this.rateLimit = { remaining, limit, resetAt: reset * 1000 };
    }
    const poll = number("x-poll-interval");
    if (poll !== undefined) this.pollIntervalSeconds = poll;
  }
}

/** Whether an Octokit failure is the 304 that `@octokit/request` throws for "not modified". */
export function notModified(error: unknown): OctokitAnswer | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { status, response } = error as { status?: unknown; response?: OctokitAnswer };
  return status === 304
    ? (response ?? { status: 304, url: "", headers: {}, data: undefined })
    : undefined;
}
