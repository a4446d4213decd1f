import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { expectedImages } from "../../src/domain/images.js";
import { LOCK_FILE } from "../../src/workspace/lock.js";
import { addArtifactRun, type ArtifactFixtureOptions } from "../testbed/artifacts.js";
import {
  daemonArgs as testbedDaemonArgs,
  startTestbed,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import {
  makeMetadata,
  type BundleMode,
  type Platform,
  type WorkerVariant,
} from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { gitlabTags } from "./checks.js";
import {
  plainStderrLines,
  records,
  runBinary,
  startBinary,
  summaries,
  until,
  type RunningCli,
} from "./run-cli.js";

const gate = testbedGate();

interface Build {
  id: number;
  platform: Platform;
  mode: BundleMode;
  variant?: WorkerVariant;
  fixture?: Omit<ArtifactFixtureOptions, "dir" | "metadata">;
}

const builds = {
  arm: { id: 6001, platform: "linux/arm64", mode: "single", variant: "native_cpu" },
  all: { id: 6002, platform: "linux/amd64", mode: "all" },
  native: {
    id: 6003,
    platform: "linux/amd64",
    mode: "all_native",
    fixture: { ociRepos: ["presto-native-worker-gpu"] },
  },
  good: { id: 6010, platform: "linux/amd64", mode: "single", variant: "native_gpu" },
  corrupt: {
    id: 6011,
    platform: "linux/arm64",
    mode: "all_native",
    fixture: {
      mutateTarball: async (repo: string, file: string) => {
        if (repo === "presto-native-worker-cpu") {
          await writeFile(file, "not a gzip stream\n");
        }
      },
    },
  },
  slow: {
    id: 6020,
    platform: "linux/amd64",
    mode: "single",
    variant: "java",
    fixture: { layerBytes: 3 << 20 },
  },
  farFuture: { id: 6030, platform: "linux/amd64", mode: "single", variant: "native_cpu" },
  deleted: { id: 6031, platform: "linux/amd64", mode: "single", variant: "java" },
} satisfies Record<string, Build>;

function metadataOf(b: Build): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`daemon-${b.id}`),
    veloxRef: ref(`daemon-v-${b.id}`),
    platform: b.platform,
    mode: b.mode,
    workerVariant: b.variant,
  });
}
const tagOf = (b: Build) => metadataOf(b)["Image tag"] ?? "";
const gitlabTagsOf = (b: Build) => expectedImages(metadataOf(b)).map((i) => i.gitlabTag);

describe.skipIf(gate.skip)(`daemon on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let downloads: string;
  let state: string;

  const daemonArgs = (extra: string[]) =>
    testbedDaemonArgs(tb, downloads, ["--limit", "50", ...extra]);
  const once = (extra: string[] = []) =>
    runBinary(daemonArgs(["--once", ...extra]), { env: tb.env, cwd: work, timeoutMs: 240_000 });
  const start = (extra: string[] = []): RunningCli =>
    startBinary(daemonArgs(extra), { env: tb.env, cwd: work, timeoutMs: 240_000 });
  const add = (b: Build) =>
    addArtifactRun(tb.github, {
      id: b.id,
      metadata: metadataOf(b),
      dir: path.join(work, "fixtures", String(b.id)),
      createdAt: new Date(Date.UTC(2025, 10, 3) + b.id * 60_000)
        .toISOString()
        .replace(".000Z", "Z"),
      ...(b.fixture ? { fixture: b.fixture } : {}),
    });
  const present = () => gitlabTags(tb);

  const failures = async (): Promise<
    Record<string, { attempts: number; next_retry: string; last_error: string }>
  > =>
    JSON.parse(await readFile(path.join(state, "failures.json"), "utf8")) as Record<
      string,
      { attempts: number; next_retry: string; last_error: string }
    >;

  beforeAll(async () => {
    tb = await startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-daemon-"));
    downloads = path.join(work, "downloads");
    state = path.join(downloads, ".state");
    for (const b of [builds.arm, builds.all, builds.native]) await add(b);
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("--once pushes every expected tag of 3 missing builds (arm, x86 all, x86 all_native); a second --once does nothing and reads no log", async () => {
    const first = await once();
    expect(first.code, first.stderr).toBe(0);
    const tags = await present();
    for (const b of [builds.arm, builds.all, builds.native]) {
      for (const t of gitlabTagsOf(b)) expect(tags).toContain(t);
    }
    expect(gitlabTagsOf(builds.all)).toHaveLength(4);
    const [summary] = summaries(first.stderr);
    expect(summary).toMatchObject({ cycle: 1, result: "ok", missing: 3, pushed: 9, failed: 0 });
    // Oldest run first.
    const order = records(first.stderr)
      .filter((r) => typeof r.msg === "string" && r.msg.startsWith("Locating workflow run"))
      .map((r) => r.imageTag);
    expect(order).toEqual([tagOf(builds.arm), tagOf(builds.all), tagOf(builds.native)]);
    // Cleaned after the push: only the state directory is left.
    expect((await readdir(downloads)).sort()).toEqual([".state"]);
    expect(existsSync(path.join(downloads, LOCK_FILE))).toBe(false);

    tb.github.resetRequests();
    const second = await once();
    expect(second.code, second.stderr).toBe(0);
    expect(summaries(second.stderr)[0]).toMatchObject({
      result: "ok",
      missing: 0,
      pushed: 0,
      logBytes: 0,
    });
    const logReads = tb.github.requests.filter((r) => /\/logs\b/.test(r.path) || r.host === "blob");
    expect(logReads).toEqual([]);
  });

  it("one corrupt artifact: the others are pushed, --once fails, the failure backs off and is skipped until it expires", async () => {
    const good = await add(builds.good);
    const corrupt = await add(builds.corrupt);
    const backoff = ["--retry-backoff", "600"];
    try {
      const first = await once(backoff);
      expect(first.code).toBe(1);
      const errors = plainStderrLines(first.stderr).filter((l) => l.startsWith("Error: "));
      // The last line names the tag with its error (the image's own error record says it too).
      // The daemon streams by default: the tarball fails in the sync stage, its siblings pushed.
      expect(errors).toEqual([
        expect.stringMatching(
          new RegExp(
            `^Error: daemon --once: 1 image tag\\(s\\) not synced: ${tagOf(builds.corrupt)}: sync failed: 1 of 3 image\\(s\\) not pushed \\(the others were\\): .*presto-native-worker-cpu.* — .*failures\\.json`,
          ),
        ),
      ]);
      // The artifact it downloaded before failing is counted with the good one.
      expect(summaries(first.stderr)[0]?.downloadedBytes).toBe(good.size + corrupt.size);
      for (const t of gitlabTagsOf(builds.good)) expect(await present()).toContain(t);
      const entry = (await failures())[tagOf(builds.corrupt)];
      expect(entry?.attempts).toBe(1);
      expect(entry?.last_error).toMatch(/sync failed: .*presto-native-worker-cpu/);
      const wait = Date.parse(entry?.next_retry ?? "") - Date.now();
      expect(wait).toBeGreaterThan(500_000);
      expect(wait).toBeLessThanOrEqual(600_000);
      // The bad artifact is not kept for reuse.
      expect(existsSync(path.join(downloads, tagOf(builds.corrupt)))).toBe(false);

      // Within the back-off: skipped, no artifact download, still a failure for CI.
      tb.github.resetRequests();
      const skipped = await once(backoff);
      expect(skipped.code).toBe(1);
      expect(summaries(skipped.stderr)[0]).toMatchObject({
        result: "partial",
        deferred: 1,
        failed: 0,
      });
      expect(tb.github.requests.filter((r) => r.host === "blob")).toEqual([]);
      expect((await failures())[tagOf(builds.corrupt)]?.attempts).toBe(1);

      // Once the back-off has run out (moved into the past here, rather than waited for): tried
      // again, and the next wait doubles.
      const file = path.join(state, "failures.json");
      const all = await failures();
      all[tagOf(builds.corrupt)] = {
        ...entry!,
        next_retry: new Date(Date.now() - 1000).toISOString(),
      };
      await writeFile(file, JSON.stringify(all));
      const retried = await once(backoff);
      expect(retried.code).toBe(1);
      expect(summaries(retried.stderr)[0]).toMatchObject({ failed: 1, deferred: 0 });
      const again = (await failures())[tagOf(builds.corrupt)];
      expect(again?.attempts).toBe(2);
      expect(Date.parse(again?.next_retry ?? "") - Date.now()).toBeGreaterThan(1_100_000);
    } finally {
      // Out of the way for the tests that follow.
      tb.github.removeRun(builds.corrupt.id);
    }
  });

  it("SIGTERM during a download: exits 0 within 5 s, no .zip, no lock; a restart resumes and completes", async () => {
    await add(builds.slow);
    tb.github.injectFault({
      match: "/artifacts/",
      host: "blob",
      bytesPerSecond: 256 * 1024,
      times: Infinity,
    });
    const daemon = start(["--interval", "3600"]);
    try {
      await until("the artifact download to start", () =>
        tb.github.requests.some(
          (r) => r.host === "blob" && r.path.includes("/artifacts/") && r.bytesSent > 100_000,
        ),
      );
      expect(existsSync(path.join(downloads, LOCK_FILE))).toBe(true);
      const signalled = Date.now();
      daemon.child.kill("SIGTERM");
      const result = await daemon.result;
      expect(Date.now() - signalled).toBeLessThan(5_000);
      expect(result.code, result.stderr).toBe(0);
    } finally {
      daemon.child.kill("SIGKILL");
    }
    const dir = path.join(downloads, tagOf(builds.slow));
    const files = await readdir(dir);
    expect(files.filter((f) => f.endsWith(".zip"))).toEqual([]);
    expect(files.some((f) => f.endsWith(".zip.part"))).toBe(true);
    expect(existsSync(path.join(downloads, LOCK_FILE))).toBe(false);

    tb.github.clearFaults();
    tb.github.resetRequests();
    const restart = await once();
    expect(restart.code, restart.stderr).toBe(0);
    const resumed = tb.github.requests.filter(
      (r) => r.host === "blob" && r.path.includes("/artifacts/"),
    );
    expect(
      resumed.some((r) => r.range?.startsWith("bytes=") && !r.range.startsWith("bytes=0-")),
    ).toBe(true);
    for (const t of gitlabTagsOf(builds.slow)) expect(await present()).toContain(t);
  });

  it("a second daemon on the same downloads directory refuses with the holder's pid", async () => {
    const first = start(["--interval", "3600"]);
    try {
      await until("the first daemon's lock", () => existsSync(path.join(downloads, LOCK_FILE)));
      const second = await once();
      expect(second.code).toBe(1);
      const errors = plainStderrLines(second.stderr).filter((l) => l.startsWith("Error: "));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain(`in use by 'daemon' (pid ${first.child.pid}`);
      first.child.kill("SIGTERM");
      expect((await first.result).code).toBe(0);
    } finally {
      first.child.kill("SIGKILL");
    }
  });

  it("GitHub failing for a cycle is logged, not fatal; the next cycle succeeds; /healthz and /metrics tell", async () => {
    tb.github.injectFault({ match: "/runs", host: "api", status: 502, times: Infinity });
    const daemon = start(["--interval", "1", "--health-port", "127.0.0.1:0"]);
    try {
      await until(
        "a failed cycle",
        () => summaries(daemon.output().stderr).some((s) => s.result === "failed"),
        90_000,
      );
      const url = records(daemon.output().stderr).find((r) => typeof r.url === "string")
        ?.url as string;
      const failing = await fetch(`${url}/healthz`);
      expect(failing.status).toBe(503);
      expect(await failing.json()).toMatchObject({
        status: "failing",
        lastCycle: { result: "failed" },
      });

      tb.github.clearFaults();
      await until(
        "a good cycle",
        () => summaries(daemon.output().stderr).some((s) => s.result === "ok"),
        90_000,
      );
      const healthy = await fetch(`${url}/healthz`);
      expect(healthy.status).toBe(200);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^gh_gitlab_sync_cycles_total\{result="failed"\} [1-9]/m);
      expect(metrics).toMatch(/^gh_gitlab_sync_cycles_total\{result="ok"\} [1-9]/m);
      expect(metrics).toMatch(/^gh_gitlab_sync_missing_images \d+$/m);
      expect(daemon.child.exitCode).toBeNull();
      const errorLines = records(daemon.output().stderr)
        .filter((r) => r.level === 50)
        .map((r) => String(r.msg));
      expect(errorLines).toContainEqual(
        expect.stringMatching(/^cycle 1: cross-reference failed: .*GitHub/),
      );
      daemon.child.kill("SIGTERM");
      expect((await daemon.result).code).toBe(0);
    } finally {
      daemon.child.kill("SIGKILL");
    }
  }, 150_000);

  it("a next_retry decades ahead (a clock that jumped back) waits at most --retry-backoff-max, then the image is synced", async () => {
    await add(builds.farFuture);
    const tag = tagOf(builds.farFuture);
    const file = path.join(state, "failures.json");
    const recorded: Record<string, unknown> = existsSync(file) ? await failures() : {};
    recorded[tag] = {
      attempts: 1,
      last_error: "push failed: registry down",
      last_attempt: "2089-12-31T23:45:00.000Z",
      next_retry: "2090-01-01T00:00:00.000Z",
    };
    await mkdir(state, { recursive: true });
    await writeFile(file, JSON.stringify(recorded));
    const timing = ["--retry-backoff", "1", "--retry-backoff-max", "2"];
    const before = Date.now();
    const first = await once(timing);
    expect(first.code).toBe(1);
    expect(summaries(first.stderr)[0]).toMatchObject({ deferred: 1, failed: 0 });
    expect(first.stderr).toContain(
      `${tag}: its failure record said to wait until 2090-01-01T00:00:00.000Z, longer than the longest back-off (2 s)`,
    );
    const bounded = Date.parse((await failures())[tag]?.next_retry ?? "");
    expect(bounded).toBeGreaterThan(before);
    expect(bounded).toBeLessThanOrEqual(Date.now() + 2000);

    await until("the bounded back-off to run out", () => Date.now() > bounded + 100);
    const second = await once(timing);
    expect(second.code, second.stderr).toBe(0);
    for (const t of gitlabTagsOf(builds.farFuture)) expect(await present()).toContain(t);
    expect((await failures())[tag]).toBeUndefined();
  });

  it("an artifact GitHub deletes between listing and download: the image tag fails saying so, and leaves no tag directory", async () => {
    await add(builds.deleted);
    const tag = tagOf(builds.deleted);
    // addArtifactRun numbers the run's one artifact ten times the run's id.
    tb.github.deleteArtifactAfter(builds.deleted.id * 10, "listed");
    try {
      const cycle = await once();
      expect(cycle.code).toBe(1);
      expect(plainStderrLines(cycle.stderr).filter((l) => l.startsWith("Error: "))).toEqual([
        expect.stringContaining(
          `${tag}: sync failed: the artifact of run ${builds.deleted.id} is gone; GitHub deleted or expired it`,
        ),
      ]);
      expect(existsSync(path.join(downloads, tag))).toBe(false);
    } finally {
      tb.github.removeRun(builds.deleted.id);
    }
  });
});
