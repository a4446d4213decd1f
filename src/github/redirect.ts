import { SyncError } from "../errors.js";
import type { GithubClient } from "./client.js";
import { toGithubError } from "./errors.js";
import type { RepoRef } from "./runs.js";

export interface RedirectContext extends RepoRef {
  client: GithubClient;
  signal: AbortSignal | undefined;
}

/**
 * Asks the API where a log or artifact lives without following the redirect: the redirect host is
 * a different party (blob storage) and must never see the GitHub token. The URL it returns is
 * pre-signed and short-lived, so callers ask again on each attempt.
 */
export async function redirectLocation(
  ctx: RedirectContext,
  route: string,
  params: Record<string, number>,
  what: string,
): Promise<string> {
  let response;
  try {
    response = await ctx.client.request(route, {
      owner: ctx.owner,
      repo: ctx.repo,
      ...params,
      request: { redirect: "manual", signal: ctx.signal },
    });
  } catch (err) {
    throw toGithubError(err, what);
  }
  const location = response.headers.location;
  if (response.status >= 300 && response.status < 400 && typeof location === "string" && location) {
    return new URL(location, response.url || undefined).toString();
  }
  throw new SyncError(`GitHub answered ${response.status} without a download address for ${what}`, {
    hint: "the API did not redirect as expected; check --github-api-url",
  });
}
