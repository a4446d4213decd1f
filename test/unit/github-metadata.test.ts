import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SyncError } from "../../src/errors.js";
import { createGithubClient, NoMetadataError } from "../../src/github/client.js";
import { fetchRunMetadata } from "../../src/github/metadata.js";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { listWorkflowRuns } from "../../src/github/runs.js";
import { silentLogger } from "../../src/report/logger.js";
import { collectRunMetadata } from "../../src/sync/runs.js";
import { MetadataCache } from "../../src/workspace/state.js";
import { startGithubStandIn, type GithubStandIn } from "../testbed/github-standin.js";
import { makeFixtureRun, makeMetadata } from "../testbed/run-fixtures.js";

const TOKEN = "ghp_metadata_test_token";
const REPO = "rapidsai/velox-testing";
const MiB = 1024 * 1024;
const logger = silentLogger();

let gh: GithubStandIn;
let tmp: string;
const metadataOf: Record<number, RunMetadata> = {};

function client() {
  return createGithubClient({ fetch: globalThis.fetch, baseUrl: gh.url, token: TOKEN, logger });
}

function fetchFor(run: number) {
  return fetchRunMetadata(client(), { repo: REPO, run, logger, tmpDir: tmp });
}

const blobRequests = () => gh.requests.filter((r) => r.host === "blob");
const zipRequests = () =>
  gh.requests.filter((r) => r.path.endsWith("/logs") && r.path.includes("/runs/"));

beforeAll(async () => {
  gh = await startGithubStandIn({ token: TOKEN });
  tmp = await mkdtemp(path.join(os.tmpdir(), "gh-metadata-test-"));
  const specs = [
    { id: 3001, stepFiles: true, noiseBytes: 5 * MiB, mode: "all" as const },
    { id: 3002, stepFiles: false, noiseBytes: 1 * MiB, mode: "all_native" as const },
    { id: 3003, stepFiles: true, noiseBytes: 200_000, mode: "single" as const },
    { id: 3004, stepFiles: true, noiseBytes: 100_000, mode: "all" as const, crlf: true },
  ];
  for (const spec of specs) {
    const metadata = makeMetadata({
      prestoRef: `presto${spec.id}`,
      veloxRef: "velox",
      platform: "linux/arm64",
      mode: spec.mode,
    });
    metadataOf[spec.id] = metadata;
    gh.addRun(
      await makeFixtureRun({
        id: spec.id,
        metadata,
        stepFiles: spec.stepFiles,
        noiseBytes: spec.noiseBytes,
        crlf: spec.crlf ?? false,
        createdAt: `2025-10-0${spec.id - 3000}T10:00:00Z`,
      }),
    );
  }
  // A run that failed before its metadata step, and one still running.
  gh.addRun(
    await makeFixtureRun({
      id: 3005,
      metadata: null,
      conclusion: "failure",
      noiseBytes: 50_000,
      createdAt: "2025-10-05T10:00:00Z",
    }),
  );
  const running = makeMetadata({
    prestoRef: "running",
    veloxRef: "velox",
    platform: "linux/amd64",
    mode: "all",
  });
  metadataOf[3006] = running;
  gh.addRun(
    await makeFixtureRun({
      id: 3006,
      metadata: running,
      status: "in_progress",
      createdAt: "2025-10-06T10:00:00Z",
    }),
  );
});

afterAll(async () => {
  await gh.close();
  await rm(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  gh.clearFaults();
  gh.resetRequests();
});

afterEach(async () => {
  // The zip fallback spools to a temp file; it must be gone afterwards whatever happened.
  expect(await readdir(tmp)).toEqual([]);
});

describe("fetchRunMetadata: job-log route", () => {
  it("stops reading the build job's log once the block is complete", async () => {
    const result = await fetchFor(3001);
    expect(result).toMatchObject({ runId: 3001, source: "job-log", metadata: metadataOf[3001] });
    expect(result.bytesFetched).toBeGreaterThan(0);
    expect(result.bytesFetched).toBeLessThan(1 * MiB);
    const blobs = blobRequests();
    expect(blobs).toHaveLength(1);
    expect(blobs[0]?.path).toBe("/logs/jobs/30012.txt");
    expect(zipRequests()).toHaveLength(0);
  });

  it("reads a long log in growing ranges, fetching nothing past the one holding the block", async () => {
    const metadata = makeMetadata({
      prestoRef: "ranges",
      veloxRef: "velox",
      platform: "linux/amd64",
      mode: "all",
    });
    // 2 % of the noise comes before the block: about 400 KiB into the log.
    gh.addRun(
      await makeFixtureRun({
        id: 3101,
        metadata,
        noiseBytes: 20 * MiB,
        createdAt: "2025-10-07T10:00:00Z",
      }),
    );
    try {
      const result = await fetchFor(3101);
      expect(result.metadata).toEqual(metadata);
      const blobs = blobRequests();
      expect(blobs.map((r) => [r.status, r.range])).toEqual([
        [206, "bytes=0-262143"],
        [206, "bytes=262144-786431"],
      ]);
      const sent = blobs.reduce((n, r) => n + r.bytesSent, 0);
      expect(sent).toBe(786432);
      expect(result.bytesFetched).toBeLessThanOrEqual(sent);
    } finally {
      gh.removeRun(3101);
    }
  });

  it("never sends the token to the redirect host", async () => {
    await fetchFor(3002);
    const blobs = blobRequests();
    expect(blobs.length).toBeGreaterThan(0);
    for (const request of blobs) {
      expect(request.authorization).toBe(false);
      // Job logs are read in ranges (206); the zip whole (200).
      expect([200, 206]).toContain(request.status);
    }
    const apiRequests = gh.requests.filter((r) => r.host === "api");
    expect(apiRequests.every((r) => r.authorization)).toBe(true);
  });

  it("reads a CRLF log", async () => {
    expect((await fetchFor(3004)).metadata).toEqual(metadataOf[3004]);
  });

  it("retries a 5xx on the jobs list", async () => {
    gh.injectFault({ match: "/runs/3003/jobs", status: 500 });
    const result = await fetchFor(3003);
    expect(result.source).toBe("job-log");
    expect(gh.requests.filter((r) => r.path.endsWith("/jobs")).map((r) => r.status)).toEqual([
      500, 200,
    ]);
  });
});

describe("fetchRunMetadata: the client's fetch and signal", () => {
  it("reads the API and the signed log addresses through the client's fetch", async () => {
    const seen: string[] = [];
    const counted = createGithubClient({
      baseUrl: gh.url,
      token: TOKEN,
      logger,
      fetch: (input, init) => {
        seen.push(new URL(input instanceof Request ? input.url : input.toString()).pathname);
        return fetch(input, init);
      },
    });
    await fetchRunMetadata(counted, { repo: REPO, run: 3003, logger, tmpDir: tmp });
    expect(seen).toEqual([
      "/repos/rapidsai/velox-testing/actions/runs/3003/jobs",
      "/repos/rapidsai/velox-testing/actions/jobs/30032/logs",
      "/logs/jobs/30032.txt",
    ]);
  });

  it("stops on the client's signal", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stopping"));
    const stopped = createGithubClient({
      fetch: globalThis.fetch,
      baseUrl: gh.url,
      token: TOKEN,
      logger,
      signal: controller.signal,
    });
    const err = (await fetchRunMetadata(stopped, { repo: REPO, run: 3003, logger }).catch(
      (e: unknown) => e,
    )) as SyncError;
    expect(err.message).toBe("reading the logs of run 3003 was cancelled");
    expect(gh.requests).toHaveLength(0);
  });
});

describe("fetchRunMetadata: run-log zip fallback", () => {
  it("reads the step file when the job log cannot be had", async () => {
    gh.injectFault({ match: "/logs/jobs/", status: 500, times: Infinity, host: "blob" });
    const result = await fetchFor(3003);
    expect(result).toMatchObject({ source: "run-log-step", metadata: metadataOf[3003] });
    expect(zipRequests()).toHaveLength(1);
    const zipBlob = blobRequests().find((r) => r.path.endsWith(".zip"));
    expect(zipBlob).toMatchObject({ status: 200, authorization: false });
    expect(result.bytesFetched).toBe(zipBlob?.bytesSent);
  });

  it("reads the job file when the zip has no step files", async () => {
    gh.injectFault({ match: "/actions/jobs/", status: 404, times: Infinity });
    const result = await fetchFor(3002);
    expect(result).toMatchObject({ source: "run-log-job", metadata: metadataOf[3002] });
  });

  it("falls back when the job log breaks off before the block", async () => {
    gh.injectFault({ match: "/logs/jobs/30032.txt", cutAfterBytes: 500 });
    const result = await fetchFor(3003);
    expect(result.source).toBe("run-log-step");
    expect(result.bytesFetched).toBeGreaterThanOrEqual(500);
  });

  it("falls back when the signed job-log URL has expired", async () => {
    gh.injectFault({
      match: "/logs/jobs/",
      status: 403,
      host: "blob",
      body: "<Error>AuthenticationFailed</Error>",
    });
    expect((await fetchFor(3004)).source).toBe("run-log-step");
  });

  it("reports a run whose logs hold no block without reading the zip again", async () => {
    const err = await fetchFor(3005).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoMetadataError);
    expect((err as SyncError).message).toBe("run 3005: no build metadata block found in its logs");
    expect(zipRequests()).toHaveLength(0);
  });

  it("reports a failure of both routes in one line", async () => {
    gh.injectFault({ match: "/logs/jobs/", status: 500, times: Infinity, host: "blob" });
    gh.injectFault({ match: "/logs/runs/", status: 500, times: Infinity, host: "blob" });
    const err = (await fetchFor(3003).catch((e: unknown) => e)) as SyncError;
    expect(err).toBeInstanceOf(SyncError);
    expect(err).not.toBeInstanceOf(NoMetadataError);
    expect(err.message).toMatch(
      /downloading the logs of run 3003 from http:\/\/127\.0\.0\.1:\d+\/logs\/runs\/3003\.zip failed: HTTP 500/,
    );
    expect(err.message).not.toContain("sig=");
  });

  it("gives a 401 from the API straight back with the token hint", async () => {
    const bad = createGithubClient({
      fetch: globalThis.fetch,
      baseUrl: gh.url,
      token: "wrong",
      logger,
    });
    const err = (await fetchRunMetadata(bad, { repo: REPO, run: 3001, logger }).catch(
      (e: unknown) => e,
    )) as SyncError;
    expect(err.oneLine()).toContain("GH_TOKEN");
    expect(zipRequests()).toHaveLength(0);
  });
});

describe("collectRunMetadata", () => {
  it("keeps the order, and a second pass over completed runs downloads no log", async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), "gh-metadata-state-"));
    try {
      const cache = new MetadataCache(stateDir, logger);
      const runs = await listWorkflowRuns(client(), {
        repo: REPO,
        workflow: "presto-build-images.yml",
        limit: 10,
      });
      expect(runs.map((r) => r.id)).toEqual([3006, 3005, 3004, 3003, 3002, 3001]);

      const first = await collectRunMetadata(client(), {
        repo: REPO,
        runs,
        cache,
        logger,
        concurrency: 3,
        tmpDir: tmp,
      });
      expect(first.map((entry) => entry.run.id)).toEqual(runs.map((r) => r.id));
      for (const entry of first) {
        if (entry.run.id === 3005) {
          expect(entry.error).toBeInstanceOf(NoMetadataError);
        } else {
          expect(entry.error).toBeUndefined();
          expect(entry.result?.metadata).toEqual(metadataOf[entry.run.id]);
          expect(entry.result?.source).toBe("job-log");
        }
      }
      expect(blobRequests().length).toBeGreaterThan(0);

      gh.resetRequests();
      const second = await collectRunMetadata(client(), {
        repo: REPO,
        runs,
        cache,
        logger,
        tmpDir: tmp,
      });
      // Only the in-progress run is read again; completed runs (the empty one too) come from the cache.
      const logReads = gh.requests.filter((r) => r.path.includes("/logs"));
      expect(new Set(logReads.map((r) => r.path))).toEqual(
        new Set(["/repos/rapidsai/velox-testing/actions/jobs/30062/logs", "/logs/jobs/30062.txt"]),
      );
      for (const entry of second) {
        if (entry.run.id === 3006) expect(entry.result?.source).toBe("job-log");
        else if (entry.run.id === 3005) expect(entry.error).toBeInstanceOf(NoMetadataError);
        else
          expect(entry.result).toMatchObject({
            source: "cache",
            bytesFetched: 0,
            metadata: metadataOf[entry.run.id],
          });
      }
      expect((await readdir(path.join(stateDir, "runs"))).sort()).toEqual([
        "3001.json",
        "3002.json",
        "3003.json",
        "3004.json",
        "3005.json",
      ]);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it("does not cache a network failure", async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), "gh-metadata-state-"));
    try {
      const cache = new MetadataCache(stateDir, logger);
      const runs = await listWorkflowRuns(client(), {
        repo: REPO,
        workflow: "presto-build-images.yml",
        limit: 10,
      });
      const run = runs.find((r) => r.id === 3004);
      if (!run) throw new Error("fixture run missing");
      gh.injectFault({ match: /^\/logs\//, status: 500, times: Infinity, host: "blob" });
      const [entry] = await collectRunMetadata(client(), {
        repo: REPO,
        runs: [run],
        cache,
        logger,
        tmpDir: tmp,
      });
      expect(entry?.error?.message).toContain("HTTP 500");
      expect(await cache.get(run)).toBeUndefined();
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it("stops picking up runs once cancelled", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stopping"));
    const runs = await listWorkflowRuns(client(), {
      repo: REPO,
      workflow: "presto-build-images.yml",
      limit: 3,
    });
    gh.resetRequests();
    await expect(
      collectRunMetadata(client(), { repo: REPO, runs, logger, signal: controller.signal }),
    ).rejects.toThrow("stopping");
    expect(gh.requests).toHaveLength(0);
  });
});
