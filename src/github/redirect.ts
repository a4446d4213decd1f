import { SyncError } from "../errors.js";
import { isHttp } from "../net/http.js";
import type { GithubClient } from "./client.js";
import { describeRead } from "./errors.js";

/**
 * Asks the API where a log or artifact lives without following the redirect: the redirect host is
 * a different party (blob storage) and must never see the GitHub token. The URL it returns is
 * pre-signed and short-lived, so callers ask again on each attempt.
 */
export async function redirectLocation(
  client: GithubClient,
  route: string,
  params: Record<string, string | number>,
): Promise<string> {
  const response = await client.request(route, { ...params, request: { redirect: "manual" } });
  const location = response.headers.location;
  const { method, url } = client.request.endpoint(route, params);
  if (response.status >= 300 && response.status < 400 && typeof location === "string" && location) {
    const target = new URL(location, response.url || url);
    if (!isHttp(target)) {
      // Not retried: the API named it, asking again names it again.
      throw new SyncError(
        `GitHub redirected ${describeRead(method, url)} to a ${target.protocol} address; refused`,
        { hint: "only http and https downloads are followed; check --github-api-url" },
      );
    }
    return target.toString();
  }
  throw new SyncError(
    `GitHub answered ${response.status} without a download address for ${describeRead(method, url)}`,
    { hint: "the API did not redirect as expected; check --github-api-url" },
  );
}
