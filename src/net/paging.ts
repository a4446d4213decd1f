import { MAX_LISTING_PAGES } from "../config/limits.js";
import { SyncError } from "../errors.js";

/**
 * GitHub and GitLab both page a listing with a `link: <…>; rel="next"` header, and their
 * clients (Octokit's and gitbeaker's paginators) follow it for as long as it is there. A next
 * page that is not after the one just read is a pager going round in circles (a broken proxy
 * or cache, a hostile server): following it would send requests without end. This is checked
 * on every answer, before the paginator sees it.
 */

const NEXT_LINK = /<([^>]*)>\s*;\s*rel="?next"?/;

/** The `rel="next"` address of a `link` header, resolved against the request's address. */
export function nextPageUrl(link: string | null | undefined, base: URL): URL | undefined {
  const target = NEXT_LINK.exec(link ?? "")?.[1];
  if (target === undefined) return undefined;
  try {
    return new URL(target, base);
  } catch {
    return undefined;
  }
}

function pageNumber(url: URL): number | undefined {
  const raw = url.searchParams.get("page");
  return raw !== null && /^\d+$/.test(raw) ? Number(raw) : undefined;
}

/**
 * Throws when the answer to `requested` names a next page that repeats it or goes back, or lies
 * past {@link MAX_LISTING_PAGES}. `what` names the listing and the server for the message.
 */
export function checkNextPage(requested: URL, link: string | null | undefined, what: string): void {
  const next = nextPageUrl(link, requested);
  if (!next) return;
  const hint = "the server's pagination is broken (a loop); report it to its administrator";
  const nextPage = pageNumber(next);
  if (nextPage === undefined) {
    // Keyset pagination (a cursor, no page number): the same address again is the loop.
    if (next.href === requested.href) {
      throw new SyncError(`${what}: the next page is the page just read; stopped`, { hint });
    }
    return;
  }
  const current = pageNumber(requested) ?? 1;
  if (nextPage <= current) {
    throw new SyncError(
      `${what}: after page ${current} the server names page ${nextPage} as the next; stopped`,
      { hint },
    );
  }
  if (nextPage > MAX_LISTING_PAGES) {
    throw new SyncError(`${what} runs past ${MAX_LISTING_PAGES} pages; stopped`, { hint });
  }
}
