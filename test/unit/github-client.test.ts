import { Writable } from "node:stream";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SyncError, UsageError } from "../../src/errors.js";
import { createGithubClient, toGithubError } from "../../src/github/client.js";
import { describeRead } from "../../src/github/errors.js";
import { listWorkflowRuns, parseRepo, workflowFileName } from "../../src/github/runs.js";
import { createLogger, silentLogger } from "../../src/report/logger.js";
import { startGithubStandIn, type GithubStandIn } from "../testbed/github-standin.js";
import { makeFixtureRun, makeMetadata } from "../testbed/run-fixtures.js";

const TOKEN = "ghp_client_test_token";
const REPO = "rapidsai/velox-testing";
const WORKFLOW = ".github/workflows/presto-build-images.yml";

let gh: GithubStandIn;

function client(token = TOKEN) {
  return createGithubClient({
    fetch: globalThis.fetch,
    baseUrl: gh.url,
    token,
    logger: silentLogger(),
  });
}

/** A logger whose records the test can read. */
function capturingLogger() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString());
      callback();
    },
  });
  const logger = createLogger({ level: "debug", format: "json", destination });
  const messages = () => lines.map((line) => JSON.parse(line) as { msg: string; level: number });
  return { logger, messages };
}

function catchError(promise: Promise<unknown>): Promise<SyncError> {
  return promise.then(
    () => {
      throw new Error("expected a failure");
    },
    (err: unknown) => {
      expect(err).toBeInstanceOf(SyncError);
      return err as SyncError;
    },
  );
}

beforeAll(async () => {
  gh = await startGithubStandIn({ token: TOKEN });
  // 130 runs: enough for two pages of 100.
  for (let i = 0; i < 130; i++) {
    const day = String(1 + (i % 28)).padStart(2, "0");
    const hour = String(Math.floor(i / 28)).padStart(2, "0");
    gh.addRun(
      await makeFixtureRun({
        id: 2000 + i,
        metadata: makeMetadata({
          prestoRef: `p${i}`,
          veloxRef: "v",
          platform: "linux/amd64",
          mode: "all",
        }),
        branch: i % 10 === 0 ? "release" : "main",
        createdAt: `2025-11-${day}T${hour}:00:00Z`,
        noRunLogZip: true,
      }),
    );
  }
});

afterAll(async () => {
  await gh.close();
});

beforeEach(() => {
  gh.clearFaults();
  gh.resetRequests();
});

describe("workflowFileName and parseRepo", () => {
  it("accepts the workflow path of the original and a bare file name", () => {
    expect(workflowFileName(".github/workflows/presto-build-images.yml")).toBe(
      "presto-build-images.yml",
    );
    expect(workflowFileName("presto-build-images.yml")).toBe("presto-build-images.yml");
    expect(() => workflowFileName(".github/workflows/")).toThrow(UsageError);
  });

  it("refuses a repository that is not owner/name", () => {
    expect(parseRepo("rapidsai/velox-testing")).toEqual({
      owner: "rapidsai",
      repo: "velox-testing",
    });
    for (const bad of ["velox-testing", "a/b/c", "/x", "a/..%2f", "a b/c"]) {
      expect(() => parseRepo(bad), bad).toThrow(UsageError);
    }
  });
});

describe("listWorkflowRuns", () => {
  it("returns the newest runs up to the limit, reading no more pages than needed", async () => {
    const runs = await listWorkflowRuns(client(), { repo: REPO, workflow: WORKFLOW, limit: 20 });
    expect(runs).toHaveLength(20);
    const times = runs.map((r) => r.created_at);
    expect([...times].sort().reverse()).toEqual(times);
    expect(runs[0]).toMatchObject({
      status: "completed",
      conclusion: "success",
      event: "workflow_dispatch",
      run_attempt: 1,
    });
    expect(Object.keys(runs[0] ?? {})).not.toContain("jobs_url");
    const listCalls = gh.requests.filter((r) => r.path.endsWith("/runs"));
    expect(listCalls).toHaveLength(1);
    expect(listCalls[0]?.query).toContain("per_page=20");
  });

  it("follows the link header past 100 runs and stops at the limit", async () => {
    const runs = await listWorkflowRuns(client(), { repo: REPO, workflow: WORKFLOW, limit: 120 });
    expect(runs).toHaveLength(120);
    expect(new Set(runs.map((r) => r.id)).size).toBe(120);
    expect(gh.requests.filter((r) => r.path.endsWith("/runs"))).toHaveLength(2);
    const all = await listWorkflowRuns(client(), {
      repo: REPO,
      workflow: "presto-build-images.yml",
      limit: 500,
    });
    expect(all).toHaveLength(130);
  });

  it("a run that arrives between two pages counts once, and the listing goes on to the limit", async () => {
    const all = await listWorkflowRuns(client(), { repo: REPO, workflow: WORKFLOW, limit: 120 });
    // A new run once page 1 is read: page 2 starts again with page 1's last run.
    gh.insertRunAfterPage(
      1,
      await makeFixtureRun({
        id: 2999,
        metadata: makeMetadata({
          prestoRef: "late",
          veloxRef: "v",
          platform: "linux/amd64",
          mode: "all",
        }),
        createdAt: "2025-12-01T00:00:00Z",
        noRunLogZip: true,
      }),
    );
    try {
      const runs = await listWorkflowRuns(client(), { repo: REPO, workflow: WORKFLOW, limit: 120 });
      expect(runs.map((r) => r.id)).toEqual(all.map((r) => r.id));
    } finally {
      gh.removeRun(2999);
    }
  });

  it("filters by branch", async () => {
    const runs = await listWorkflowRuns(client(), {
      repo: REPO,
      workflow: WORKFLOW,
      branch: "release",
      limit: 50,
    });
    expect(runs).toHaveLength(13);
    expect(runs.every((r) => r.head_branch === "release")).toBe(true);
  });

  it("says what was not found and which flags to check", async () => {
    const err = await catchError(
      listWorkflowRuns(client(), { repo: "nobody/nothing", workflow: WORKFLOW, limit: 5 }),
    );
    expect(err.message).toContain(
      "not found: runs of workflow presto-build-images.yml in nobody/nothing",
    );
    expect(err.message).toContain("check --repo and --workflow");
    expect(err.oneLine()).not.toContain("\n");
  });

  it("names the token sources and the scope on 401", async () => {
    const err = await catchError(
      listWorkflowRuns(client("wrong"), { repo: REPO, workflow: WORKFLOW, limit: 5 }),
    );
    const line = err.oneLine();
    for (const word of [
      "--gh-token",
      "GH_TOKEN",
      "GITHUB_TOKEN",
      "gh auth token",
      "actions:read",
      "repo scope",
    ]) {
      expect(line).toContain(word);
    }
    expect(line).not.toContain("wrong");
    expect(err.exitCode).toBe(1);
  });

  it("refuses bad options before any request", async () => {
    await expect(
      listWorkflowRuns(client(), { repo: "bad", workflow: WORKFLOW, limit: 5 }),
    ).rejects.toThrow(UsageError);
    await expect(
      listWorkflowRuns(client(), { repo: REPO, workflow: WORKFLOW, limit: 0 }),
    ).rejects.toThrow(UsageError);
    expect(gh.requests).toHaveLength(0);
  });
});

describe("conditional requests", () => {
  it("asks again with the ETag, quotes kept; a 304 is answered from the kept body and costs nothing", async () => {
    const github = client();
    gh.setPollInterval(60);
    try {
      const first = await listWorkflowRuns(github, { repo: REPO, workflow: WORKFLOW, limit: 120 });
      const second = await listWorkflowRuns(github, { repo: REPO, workflow: WORKFLOW, limit: 120 });
      expect(second).toEqual(first);
      const listings = gh.requests.filter((r) => r.path.endsWith("/runs"));
      expect(listings.map((r) => r.status)).toEqual([200, 200, 304, 304]);
      expect(listings[2]?.ifNoneMatch).toMatch(/^W\/"[0-9a-f]+"$/);
      expect(gh.counts()).toEqual({ charged: 2, free: 2 });
      expect(Object.fromEntries(github.tally.results)).toEqual({ "200": 2, "304": 2 });
      expect(github.tally.pollIntervalSeconds).toBe(60);
      expect(github.tally.rateLimit).toMatchObject({ limit: 5000 });
      expect(github.tally.rateLimit?.remaining).toBeGreaterThan(0);
      expect(github.tally.rateLimit?.resetAt).toBeGreaterThan(Date.now());

      // A change (a run finishes) is a fresh 200, read and kept.
      const newest = first[0]?.id ?? 0;
      gh.updateRun(newest, { updated_at: "2025-12-02T00:00:00Z" });
      const third = await listWorkflowRuns(github, { repo: REPO, workflow: WORKFLOW, limit: 20 });
      expect(third.find((r) => r.id === newest)?.updated_at).toBe("2025-12-02T00:00:00Z");
      const again = await listWorkflowRuns(github, { repo: REPO, workflow: WORKFLOW, limit: 20 });
      expect(again).toEqual(third);
      expect(gh.requests.slice(-2).map((r) => r.status)).toEqual([200, 304]);
    } finally {
      gh.setPollInterval(undefined);
    }
  });
});

describe("client resilience", () => {
  it("retries a 5xx and then succeeds", async () => {
    gh.injectFault({ match: "/runs", status: 502 });
    const runs = await listWorkflowRuns(client(), { repo: REPO, workflow: WORKFLOW, limit: 3 });
    expect(runs).toHaveLength(3);
    expect(gh.requests.map((r) => r.status)).toEqual([502, 200]);
  });

  it("gives up on a lasting 5xx with a one-line error", async () => {
    gh.injectFault({ match: "/runs", status: 503, times: Infinity });
    const fast = createGithubClient({
      fetch: globalThis.fetch,
      baseUrl: gh.url,
      token: TOKEN,
      logger: silentLogger(),
      maxRetries: 0,
    });
    const err = await catchError(
      listWorkflowRuns(fast, { repo: REPO, workflow: WORKFLOW, limit: 3 }),
    );
    expect(err.message).toMatch(/GitHub answered 503/);
  });

  it("waits out a primary rate limit until x-ratelimit-reset, logging the wait", async () => {
    const reset = String(Math.floor(Date.now() / 1000) + 1);
    gh.injectFault({
      match: "/runs",
      status: 403,
      headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset },
      body: JSON.stringify({ message: "API rate limit exceeded for user ID 1." }),
    });
    const { logger, messages } = capturingLogger();
    const limited = createGithubClient({
      fetch: globalThis.fetch,
      baseUrl: gh.url,
      token: TOKEN,
      logger,
    });
    const runs = await listWorkflowRuns(limited, { repo: REPO, workflow: WORKFLOW, limit: 2 });
    expect(runs).toHaveLength(2);
    expect(gh.requests.map((r) => r.status)).toEqual([403, 200]);
    const warn = messages().find((m) => m.level === 40);
    expect(warn?.msg).toMatch(/rate limit hit on GET .*; waiting \d+s before trying again/);
  });

  it("waits out a secondary rate limit (429 with retry-after)", async () => {
    gh.injectFault({ match: "/jobs", status: 429, headers: { "retry-after": "1" } });
    const { logger, messages } = capturingLogger();
    const limited = createGithubClient({
      fetch: globalThis.fetch,
      baseUrl: gh.url,
      token: TOKEN,
      logger,
    });
    const jobs = await limited.paginate("GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs", {
      owner: "rapidsai",
      repo: "velox-testing",
      run_id: 2000,
    });
    expect(jobs).toHaveLength(1);
    expect(gh.requests.map((r) => r.status)).toEqual([429, 200]);
    expect(messages().some((m) => /secondary rate limit hit .* waiting 1s/.test(m.msg))).toBe(true);
  });

  it("gives up on a rate limit after a few waits, saying when it resets", async () => {
    const reset = Math.floor(Date.now() / 1000) + 7200;
    gh.injectFault({
      match: "/runs",
      status: 429,
      headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) },
      body: JSON.stringify({ message: "API rate limit exceeded" }),
      times: Infinity,
    });
    const err = await catchError(
      listWorkflowRuns(client(), { repo: REPO, workflow: WORKFLOW, limit: 2 }),
    );
    expect(err.message).toContain("rate limit exceeded");
    expect(err.hint).toContain(new Date(reset * 1000).toISOString());
    expect(gh.requests).toHaveLength(1);
  });

  it("says which URL could not be reached", async () => {
    const closed = await startGithubStandIn({ token: TOKEN });
    await closed.close();
    const offline = createGithubClient({
      fetch: globalThis.fetch,
      baseUrl: closed.url,
      token: TOKEN,
      logger: silentLogger(),
      maxRetries: 0,
    });
    const err = await catchError(
      listWorkflowRuns(offline, { repo: REPO, workflow: WORKFLOW, limit: 2 }),
    );
    expect(err.message).toContain(
      `could not reach ${closed.url}/repos/rapidsai/velox-testing/actions/workflows`,
    );
    expect(err.message).not.toContain("per_page");
  });
});

describe("client-wide settings", () => {
  it("ends every request at once on the client's signal, a paginated listing too", async () => {
    const controller = new AbortController();
    controller.abort(new Error("interrupted by SIGINT"));
    const stopped = createGithubClient({
      fetch: globalThis.fetch,
      baseUrl: gh.url,
      token: TOKEN,
      logger: silentLogger(),
      signal: controller.signal,
    });
    const started = Date.now();
    const err = await catchError(
      listWorkflowRuns(stopped, { repo: REPO, workflow: WORKFLOW, limit: 3 }),
    );
    expect(err.message).toBe(
      "reading runs of workflow presto-build-images.yml in rapidsai/velox-testing was cancelled",
    );
    // Not retried as if the network had failed.
    expect(Date.now() - started).toBeLessThan(900);
    expect(gh.requests).toHaveLength(0);
  });

  it("sends its requests through the fetch it is given", async () => {
    const seen: string[] = [];
    const counted = createGithubClient({
      baseUrl: gh.url,
      token: TOKEN,
      logger: silentLogger(),
      fetch: (input, init) => {
        seen.push(input instanceof Request ? input.url : input.toString());
        return fetch(input, init);
      },
    });
    await listWorkflowRuns(counted, { repo: REPO, workflow: WORKFLOW, limit: 120 });
    expect(seen).toHaveLength(2);
    expect(seen[0]).toContain("/repos/rapidsai/velox-testing/actions/workflows/");
  });
});

describe("describeRead", () => {
  it("names what an API address holds, also a next page named by repository id", () => {
    const api = "https://api.github.com";
    expect(
      describeRead("GET", `${api}/repos/o/r/actions/workflows/build.yml/runs?per_page=20`),
    ).toBe("runs of workflow build.yml in o/r");
    expect(describeRead("GET", `${api}/repos/o/r/actions/runs/12/artifacts`)).toBe(
      "artifacts of run 12 in o/r",
    );
    expect(describeRead("GET", `${api}/repositories/99/actions/runs/12/jobs?page=2`)).toBe(
      "jobs of run 12 in repository 99",
    );
    expect(
      describeRead("GET", `https://ghe.example.com/api/v3/repos/o/r/actions/runs/5/logs`),
    ).toBe("the logs of run 5");
    expect(describeRead("GET", `${api}/repos/o/r/actions/artifacts/7/zip`)).toBe(
      "artifact 7 of o/r",
    );
    expect(describeRead("GET", `${api}/rate_limit`)).toBe("GET /rate_limit");
  });
});

describe("toGithubError", () => {
  const requestError = (status: number, message = "x", headers: Record<string, string> = {}) =>
    Object.assign(new Error(message), {
      status,
      request: { url: "https://api.github.com/x?sig=secret" },
      response: { headers },
    });

  it("maps 403 without rate-limit signs to a permission problem", () => {
    const err = toGithubError(
      requestError(403, "Resource not accessible by integration"),
      "the logs of run 1",
    );
    expect(err.message).toContain("refused access to the logs of run 1");
    expect(err.hint).toContain("actions:read");
  });

  it("maps 410 to expired", () => {
    expect(toGithubError(requestError(410, "Gone"), "artifact 5").message).toContain(
      "artifact 5 has expired",
    );
  });

  it("passes a SyncError through and wraps anything else in one line", () => {
    const own = new SyncError("mine");
    expect(toGithubError(own, "x")).toBe(own);
    expect(toGithubError(new Error("two\nlines"), "y").message).toBe("reading y failed: two lines");
  });
});
