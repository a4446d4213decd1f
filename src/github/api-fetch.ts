import { API_BODY_LIMIT } from "../config/limits.js";
import { SyncError, describeError, isAbortError } from "../errors.js";
import { readBody, type FetchLike } from "../net/http.js";
import { checkNextPage } from "../net/paging.js";
import { describeRead } from "./errors.js";

/**
 * The fetch Octokit is given: the command's HttpClient, with what a hostile or broken API server
 * must not be able to do taken away. Every answer is read here, up to {@link API_BODY_LIMIT}
 * (Octokit would read any size into memory), and a `link` to a next page must point forward
 * (Octokit's paginator follows it for as long as it is there). The token goes only to the
 * `--github-api-url` origin: a next-page link elsewhere is refused, not followed.
 *
 * Octokit turns any failure of its fetch into a 500 that plugin-retry retries for 14 s; a refusal
 * is final, so it travels as an AbortError (passed on untouched) and the client's error hook
 * unwraps it with {@link unwrapRefusal}.
 */

class Refusal extends Error {
  constructor(readonly error: SyncError) {
    super(error.message);
    this.name = "AbortError";
  }
}

/** The SyncError inside a refusal of {@link guardedApiFetch}; anything else as it is. */
export function unwrapRefusal(error: unknown): unknown {
  return error instanceof Refusal ? error.error : error;
}

/**
 * Octokit cancels a request with our own reason (the CLI's "interrupted by SIGINT") only if the
 * failure is named an AbortError; any other name is wrapped into a retried 500.
 */
export function cancelled(err: unknown, signal: AbortSignal | null | undefined): unknown {
  if (!signal?.aborted || isAbortError(err)) return err;
  const error = new Error(describeError(signal.reason), { cause: signal.reason });
  error.name = "AbortError";
  return error;
}

const NULL_BODY = new Set([204, 205, 304]);

/** `observe` hears of every request sent to the API: its status, or undefined when none came. */
export function guardedApiFetch(
  fetch: FetchLike,
  baseUrl: string,
  observe?: (status: number | undefined, headers?: Headers) => void,
): FetchLike {
  const home = new URL(baseUrl).origin;
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    const method = (init?.method ?? "GET").toUpperCase();
    if (url.origin !== home) {
      throw new Refusal(
        new SyncError(`refused to send the GitHub token to ${url.origin}`, {
          hint: `the API at ${home} named an address on another host; check --github-api-url`,
        }),
      );
    }
    let response: Response;
    let body: Buffer;
    try {
      response = await fetch(input, init).catch((err: unknown) => {
        observe?.(undefined);
        throw err;
      });
      observe?.(response.status, response.headers);
      body = await readBody(
        response,
        API_BODY_LIMIT,
        `GitHub's answer for ${describeRead(method, url.href)}`,
      );
    } catch (err) {
      if (err instanceof SyncError) throw new Refusal(err);
      throw cancelled(err, init?.signal);
    }
    try {
      checkNextPage(
        url,
        response.headers.get("link"),
        `GitHub's listing of ${describeRead(method, url.href)}`,
      );
    } catch (err) {
      throw new Refusal(err as SyncError);
    }
    const copy = new Response(NULL_BODY.has(response.status) ? null : body, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
    // Octokit reads `url` (the address a redirect came from resolves against it).
    Object.defineProperty(copy, "url", { value: response.url });
    return copy;
  };
}
