import { describe, expect, it } from "vitest";
import { EtagCache, GithubApiTally } from "../../src/github/conditional.js";
import type { WorkflowRun } from "../../src/github/runs.js";
import {
  RATE_LIMIT_RESERVE,
  handledOf,
  newlyFinished,
  pollDelayMs,
} from "../../src/sync/daemon-poll.js";

const run = (id: number, status: string, conclusion: string | null, updated_at: string) =>
  ({ id, status, conclusion, updated_at }) as WorkflowRun;

function tallyWith(headers: Record<string, string>): GithubApiTally {
  const tally = new GithubApiTally();
  tally.observe(200, new Headers(headers));
  return tally;
}

describe("the daemon's looks between cycles", () => {
  it("wakes for a run that finished successfully since the last cycle, or was re-run; not for one in progress or failed", () => {
    const handled = handledOf([
      run(1, "completed", "success", "2025-01-01T00:00:00Z"),
      run(2, "in_progress", null, "2025-01-01T00:00:00Z"),
      run(3, "completed", "failure", "2025-01-01T00:00:00Z"),
    ]);
    expect([...handled.keys()]).toEqual([1, 3]);
    const now = [
      run(1, "completed", "success", "2025-01-01T00:00:00Z"),
      run(2, "completed", "success", "2025-01-01T00:05:00Z"),
      run(3, "completed", "failure", "2025-01-01T00:00:00Z"),
      run(4, "in_progress", null, "2025-01-01T00:06:00Z"),
      run(5, "completed", "failure", "2025-01-01T00:06:00Z"),
    ];
    expect(newlyFinished(now, handled).map((r) => r.id)).toEqual([2]);
    // A re-run of 1: same id, a later updated_at.
    const rerun = [run(1, "completed", "success", "2025-01-02T00:00:00Z")];
    expect(newlyFinished(rerun, handled).map((r) => r.id)).toEqual([1]);
  });

  it("waits --poll-interval, longer when GitHub's x-poll-interval asks, until the reset when the limit runs low", () => {
    const now = Date.now();
    const reset = String(Math.floor(now / 1000) + 600);
    const limit = { "x-ratelimit-limit": "5000", "x-ratelimit-reset": reset };
    expect(pollDelayMs(30, new GithubApiTally(), now)).toBe(30_000);
    expect(pollDelayMs(30, tallyWith({ "x-poll-interval": "60" }), now)).toBe(60_000);
    expect(pollDelayMs(30, tallyWith({ "x-poll-interval": "10" }), now)).toBe(30_000);
    const plenty = tallyWith({ ...limit, "x-ratelimit-remaining": String(RATE_LIMIT_RESERVE) });
    expect(pollDelayMs(30, plenty, now)).toBe(30_000);
    const low = tallyWith({ ...limit, "x-ratelimit-remaining": "3" });
    expect(pollDelayMs(30, low, now)).toBe(Number(reset) * 1000 - now);
  });
});

describe("GithubApiTally", () => {
  it("counts answers by status (none: error), keeps the last rate limit, ignores unreadable headers", () => {
    const tally = new GithubApiTally();
    const heard: string[] = [];
    tally.onResult((result) => heard.push(result));
    tally.observe(
      200,
      new Headers({
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-limit": "5000",
        "x-ratelimit-reset": "1700000000",
      }),
    );
    tally.observe(304, new Headers({ "x-ratelimit-remaining": "junk" }));
    tally.observe(undefined);
    expect(heard).toEqual(["200", "304", "error"]);
    expect(Object.fromEntries(tally.results)).toEqual({ "200": 1, "304": 1, error: 1 });
    expect(tally.rateLimit).toEqual({ remaining: 4999, limit: 5000, resetAt: 1_700_000_000_000 });
  });
});

describe("EtagCache", () => {
  const answer = (etag: string, data: unknown, size = 10) => ({
    status: 200,
    url: "u",
    headers: { etag, "content-length": String(size) },
    data,
  });

  it("keeps the newest answers, replays a copy with the 304's fresh x- headers, and skips what it cannot replay", () => {
    const cache = new EtagCache(2);
    cache.remember("a", answer('W/"a"', { n: 1 }));
    cache.remember("b", answer('W/"b"', { n: 2 }));
    expect(cache.replay("a", undefined)?.data).toEqual({ n: 1 }); // a is now the newest
    cache.remember("c", answer('W/"c"', { n: 3 }));
    expect(cache.etagFor("b")).toBeUndefined();
    expect(cache.etagFor("a")).toBe('W/"a"');
    const replayed = cache.replay("c", {
      status: 304,
      url: "c",
      headers: { "x-ratelimit-remaining": "41", etag: 'W/"c"' },
      data: undefined,
    });
    expect(replayed).toMatchObject({ status: 200, data: { n: 3 } });
    expect(replayed?.headers["x-ratelimit-remaining"]).toBe("41");
    // A copy: whoever rewrites the replayed body does not change the kept one.
    (replayed?.data as { n: number }).n = 99;
    expect(cache.replay("c", undefined)?.data).toEqual({ n: 3 });

    cache.remember("big", answer('W/"big"', { n: 4 }, 64 << 20));
    cache.remember("bytes", answer('W/"bytes"', new ArrayBuffer(4)));
    cache.remember("untagged", { status: 200, url: "u", headers: {}, data: {} });
    for (const url of ["big", "bytes", "untagged"]) expect(cache.etagFor(url)).toBeUndefined();
  });
});
