import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startGithubStandIn, type GithubStandIn } from "./github-standin.js";
import { makeFixtureRun, makeMetadata } from "./run-fixtures.js";

const TOKEN = "ghp_standin_test_token";
const REPO = "rapidsai/velox-testing";
const RUNS_PATH = `/repos/${REPO}/actions/workflows/presto-build-images.yml/runs`;

let gh: GithubStandIn;
const auth = { authorization: `Bearer ${TOKEN}` };

async function api(path: string, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(`${gh.url}${path}`, { headers, redirect: "manual" });
}

beforeAll(async () => {
  gh = await startGithubStandIn({ token: TOKEN });
  for (let i = 0; i < 5; i++) {
    const metadata = makeMetadata({
      prestoRef: `p${i}`,
      veloxRef: "v",
      platform: "linux/amd64",
      mode: "all",
    });
    gh.addRun(
      await makeFixtureRun({
        id: 1000 + i,
        metadata,
        branch: i % 2 === 0 ? "main" : "dev",
        conclusion: i === 4 ? "failure" : "success",
        createdAt: `2025-10-0${i + 1}T10:00:00Z`,
        stepFiles: true,
        artifacts: [
          {
            id: 5000 + i,
            name: `presto-images-${1000 + i}`,
            bytes: Buffer.from(`zip-${i}`),
            expired: i === 3,
          },
        ],
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

describe("GitHub stand-in: API", () => {
  it("checks the token in both header forms", async () => {
    expect((await api(RUNS_PATH, {})).status).toBe(401);
    const bad = await api(RUNS_PATH, { authorization: "Bearer wrong" });
    expect(bad.status).toBe(401);
    expect(await bad.json()).toMatchObject({ message: "Bad credentials" });
    expect((await api(RUNS_PATH, { authorization: `token ${TOKEN}` })).status).toBe(200);
    const ok = await api(RUNS_PATH);
    expect(ok.headers.get("x-ratelimit-remaining")).toMatch(/^\d+$/);
    expect(ok.headers.get("x-ratelimit-reset")).toMatch(/^\d+$/);
  });

  it("lists runs newest first with filters and link-header paging", async () => {
    const all = (await (await api(RUNS_PATH)).json()) as {
      total_count: number;
      workflow_runs: Array<{ id: number }>;
    };
    expect(all.total_count).toBe(5);
    expect(all.workflow_runs.map((r) => r.id)).toEqual([1004, 1003, 1002, 1001, 1000]);

    const dev = (await (await api(`${RUNS_PATH}?branch=dev`)).json()) as {
      workflow_runs: Array<{ id: number }>;
    };
    expect(dev.workflow_runs.map((r) => r.id)).toEqual([1003, 1001]);
    const ok = (await (await api(`${RUNS_PATH}?status=success`)).json()) as { total_count: number };
    expect(ok.total_count).toBe(4);

    const page1 = await api(`${RUNS_PATH}?per_page=2`);
    expect(page1.headers.get("link")).toContain('page=2>; rel="next"');
    const page3 = await api(`${RUNS_PATH}?per_page=2&page=3`);
    const body3 = (await page3.json()) as { workflow_runs: Array<{ id: number }> };
    expect(body3.workflow_runs.map((r) => r.id)).toEqual([1000]);
    expect(page3.headers.get("link")).not.toContain('rel="next"');
  });

  it("tags listings with a weak ETag and answers a matching If-None-Match with a free 304, no body", async () => {
    const first = await api(RUNS_PATH);
    const etag = first.headers.get("etag") ?? "";
    expect(etag).toMatch(/^W\/"[0-9a-f]{64}"$/);
    const remaining = Number(first.headers.get("x-ratelimit-remaining"));

    const again = await api(RUNS_PATH, { ...auth, "if-none-match": etag });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    expect(again.headers.get("etag")).toBe(etag);
    // Not charged: the limit left is what it was.
    expect(Number(again.headers.get("x-ratelimit-remaining"))).toBe(remaining);
    // The strong form of the same tag matches too (weak comparison), a stale one does not.
    expect((await api(RUNS_PATH, { ...auth, "if-none-match": etag.slice(2) })).status).toBe(304);
    expect((await api(RUNS_PATH, { ...auth, "if-none-match": 'W/"stale"' })).status).toBe(200);
    // Without the token a validator buys nothing.
    expect((await api(RUNS_PATH, { "if-none-match": etag })).status).toBe(401);
    expect(gh.counts()).toEqual({ charged: 3, free: 2 });
    expect(gh.requests.map((r) => [r.status, r.charged])).toEqual([
      [200, true],
      [304, false],
      [304, false],
      [200, true],
      [401, true],
    ]);
    expect(gh.requests[1]?.ifNoneMatch).toBe(etag);
  });

  it("a run that finishes changes the listing's ETag; x-poll-interval when asked", async () => {
    const etag = (await api(RUNS_PATH)).headers.get("etag") ?? "";
    expect((await api(RUNS_PATH)).headers.get("x-poll-interval")).toBeNull();
    gh.updateRun(1004, { status: "in_progress", conclusion: null });
    const running = await api(RUNS_PATH, { ...auth, "if-none-match": etag });
    expect(running.status).toBe(200);
    gh.updateRun(1004, { status: "completed", conclusion: "failure" });
    const done = await api(RUNS_PATH, { ...auth, "if-none-match": etag });
    expect(done.status).toBe(304);
    gh.setPollInterval(60);
    expect((await api(RUNS_PATH)).headers.get("x-poll-interval")).toBe("60");
    gh.setPollInterval(undefined);
  });

  it("inserts a run once, right after a listing's page was answered", async () => {
    const extra = await makeFixtureRun({
      id: 1950,
      metadata: makeMetadata({
        prestoRef: "late",
        veloxRef: "v",
        platform: "linux/amd64",
        mode: "all",
      }),
      createdAt: "2025-10-20T10:00:00Z",
    });
    gh.insertRunAfterPage(1, extra);
    const ids = async (page: number) =>
      (
        (await (await api(`${RUNS_PATH}?per_page=2&page=${page}`)).json()) as {
          workflow_runs: Array<{ id: number }>;
        }
      ).workflow_runs.map((r) => r.id);
    expect(await ids(1)).toEqual([1004, 1003]);
    // Page 2 has shifted by one: 1003 again.
    expect(await ids(2)).toEqual([1003, 1002]);
    expect(await ids(1)).toEqual([1950, 1004]);
    gh.removeRun(1950);
  });

  it("answers 404 for an unknown repository or workflow", async () => {
    expect(
      (await api("/repos/nobody/nothing/actions/workflows/presto-build-images.yml/runs")).status,
    ).toBe(404);
    const res = await api(`/repos/${REPO}/actions/workflows/other.yml/runs`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ message: "Not Found" });
  });

  it("lists jobs with their steps", async () => {
    const res = await api(`/repos/${REPO}/actions/runs/1000/jobs`);
    const body = (await res.json()) as {
      total_count: number;
      jobs: Array<{ name: string; steps: Array<{ name: string }> }>;
    };
    expect(body.total_count).toBe(1);
    expect(body.jobs[0]?.steps.map((s) => s.name)).toContain("Record build metadata");
  });

  it("lists artifacts and refuses an expired one with 410", async () => {
    const list = (await (await api(`/repos/${REPO}/actions/runs/1003/artifacts`)).json()) as {
      artifacts: Array<{
        id: number;
        name: string;
        expired: boolean;
        workflow_run: { id: number };
      }>;
    };
    expect(list.artifacts[0]).toMatchObject({
      id: 5003,
      name: "presto-images-1003",
      expired: true,
    });
    expect((await api(`/repos/${REPO}/actions/artifacts/5003/zip`)).status).toBe(410);
    const zip = await api(`/repos/${REPO}/actions/artifacts/5002/zip`);
    expect(zip.status).toBe(302);
    const blob = await fetch(zip.headers.get("location") ?? "");
    expect(Buffer.from(await blob.arrayBuffer()).toString()).toBe("zip-2");
  });

  it("deletes an artifact right after listing it, or right after handing out its address, when told", async () => {
    const listed = async (run: number) =>
      (
        (await (await api(`/repos/${REPO}/actions/runs/${run}/artifacts`)).json()) as {
          artifacts: Array<{ id: number }>;
        }
      ).artifacts.map((a) => a.id);
    gh.deleteArtifactAfter(5000, "listed");
    expect(await listed(1000)).toEqual([5000]);
    expect((await api(`/repos/${REPO}/actions/artifacts/5000/zip`)).status).toBe(404);
    expect(await listed(1000)).toEqual([]);

    gh.deleteArtifactAfter(5001, "redirected");
    expect(await listed(1001)).toEqual([5001]);
    const zip = await api(`/repos/${REPO}/actions/artifacts/5001/zip`);
    expect(zip.status).toBe(302);
    const blob = await fetch(zip.headers.get("location") ?? "");
    expect(blob.status).toBe(404);
    expect(await blob.text()).toContain("BlobNotFound");
    expect((await api(`/repos/${REPO}/actions/artifacts/5001/zip`)).status).toBe(404);
  });
});

describe("GitHub stand-in: blob host", () => {
  async function jobLogLocation(): Promise<string> {
    const res = await api(`/repos/${REPO}/actions/jobs/10002/logs`);
    expect(res.status).toBe(302);
    const location = res.headers.get("location") ?? "";
    expect(location.startsWith(gh.blobUrl)).toBe(true);
    return location;
  }

  it("serves a redirect target without a token, refuses one with it", async () => {
    const location = await jobLogLocation();
    expect((await fetch(location, { headers: auth })).status).toBe(403);
    const ok = await fetch(location);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain("Image tag         : presto-p0--velox-v--linux-amd64");
    const blobRequests = gh.requests.filter((r) => r.host === "blob");
    expect(blobRequests.map((r) => [r.status, r.authorization])).toEqual([
      [403, true],
      [200, false],
    ]);
  });

  it("honours Range", async () => {
    const location = await jobLogLocation();
    const whole = Buffer.from(await (await fetch(location)).arrayBuffer());
    const part = await fetch(location, { headers: { range: "bytes=10-19" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 10-19/${whole.length}`);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(whole.subarray(10, 20));
    expect((await fetch(location, { headers: { range: `bytes=${whole.length}-` } })).status).toBe(
      416,
    );
    expect(gh.requests.find((r) => r.status === 206)?.range).toBe("bytes=10-19");
  });

  it("lets tests expire the signed URLs", async () => {
    const location = await jobLogLocation();
    gh.expireSignedUrls();
    expect((await fetch(location)).status).toBe(403);
    expect((await fetch(await jobLogLocation())).status).toBe(200);
    const tampered = new URL(await jobLogLocation());
    tampered.pathname = "/logs/jobs/10012.txt";
    expect((await fetch(tampered)).status).toBe(403);
  });

  it("paces the blob host at a set rate when asked (the benchmarks' link speed), until lifted", async () => {
    gh.addRun(
      await makeFixtureRun({
        id: 1900,
        metadata: makeMetadata({
          prestoRef: "rate",
          veloxRef: "v",
          platform: "linux/amd64",
          mode: "all",
        }),
        createdAt: "2025-10-09T10:00:00Z",
        artifacts: [{ id: 5900, name: "presto-images-1900", bytes: Buffer.alloc(1 << 20, 7) }],
      }),
    );
    const location = async () =>
      (await api(`/repos/${REPO}/actions/artifacts/5900/zip`)).headers.get("location") ?? "";
    // 2 MiB/s: the 1 MiB artifact takes about half a second.
    gh.limitBlobRate(2 << 20);
    const started = performance.now();
    const paced = await (await fetch(await location())).arrayBuffer();
    const ms = performance.now() - started;
    gh.limitBlobRate(undefined);
    expect(paced.byteLength).toBe(1 << 20);
    expect(ms).toBeGreaterThan(400);
    expect(ms).toBeLessThan(5_000);
    gh.removeRun(1900);
  });

  it("injects faults on either host, for a number of requests", async () => {
    gh.injectFault({ match: "/jobs", status: 502, times: 2 });
    expect((await api(`/repos/${REPO}/actions/runs/1000/jobs`)).status).toBe(502);
    expect((await api(`/repos/${REPO}/actions/runs/1000/jobs`)).status).toBe(502);
    expect((await api(`/repos/${REPO}/actions/runs/1000/jobs`)).status).toBe(200);

    gh.injectFault({ match: /^\/logs\/jobs\//, cutAfterBytes: 100 });
    const cut = await fetch(await jobLogLocation());
    await expect(cut.arrayBuffer()).rejects.toThrow();
    const record = gh.requests.find((r) => r.host === "blob");
    expect(record?.bytesSent).toBe(100);

    gh.injectFault({
      match: "/runs",
      status: 429,
      headers: { "retry-after": "1", "x-ratelimit-remaining": "0" },
    });
    const limited = await api(RUNS_PATH);
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("1");
    expect(limited.headers.get("x-ratelimit-remaining")).toBe("0");
  });
});
