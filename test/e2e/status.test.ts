import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
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
import { makeMetadata, type Platform } from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { expectOneLineError, gitlabTags } from "./checks.js";
import { plainStderrLines, runBinary, startBinary } from "./run-cli.js";

const gate = testbedGate();

const builds = {
  good: { id: 8001, platform: "linux/amd64" },
  broken: { id: 8002, platform: "linux/arm64" },
} satisfies Record<string, { id: number; platform: Platform }>;
type Build = (typeof builds)[keyof typeof builds];

function metadataOf(b: Build): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`status-${b.id}`),
    veloxRef: ref(`status-v-${b.id}`),
    platform: b.platform,
    mode: "single",
    workerVariant: "native_cpu",
  });
}
const tagOf = (b: Build) => metadataOf(b)["Image tag"] ?? "";

interface StatusJson {
  lock: null | { pid: number; host: string; command: string; since: string; alive: boolean };
  last_cycle: null | {
    started_at: string;
    finished_at: string;
    ok: boolean;
    runs: number;
    missing: number;
    pushed: number;
    failed: number;
    backing_off: number;
    bytes_downloaded: number;
  };
  failures: Array<{
    image_tag: string;
    attempts: number;
    last_error: string;
    next_retry_at: string;
  }>;
}

describe.skipIf(gate.skip)(`status and daemon --retry-now on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let downloads: string;

  const cli = (args: string[]) =>
    runBinary([...args, "--log-format", "json"], { env: tb.env, cwd: work, timeoutMs: 240_000 });
  const daemonArgs = (extra: string[]) =>
    testbedDaemonArgs(tb, downloads, ["--limit", "50", "--retry-backoff", "600", ...extra]);
  const status = async (extra: string[] = []) => {
    const result = await cli(["status", "--downloads-dir", downloads, ...extra]);
    expect(result.code, result.stderr).toBe(0);
    return result;
  };
  const statusJson = async () => JSON.parse((await status(["--json"])).stdout) as StatusJson;
  const add = (b: Build, fixture?: Omit<ArtifactFixtureOptions, "dir" | "metadata">) =>
    addArtifactRun(tb.github, {
      id: b.id,
      metadata: metadataOf(b),
      dir: path.join(work, "fixtures", `${b.id}-${fixture ? "bad" : "good"}`),
      createdAt: new Date(Date.UTC(2025, 10, 7) + b.id * 60_000)
        .toISOString()
        .replace(".000Z", "Z"),
      ...(fixture ? { fixture } : {}),
    });

  beforeAll(async () => {
    tb = await startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-status-"));
    downloads = path.join(work, "downloads");
    await add(builds.good);
    await add(builds.broken, {
      mutateTarball: async (repo, file) => {
        if (repo === "presto-native-worker-cpu") await writeFile(file, "not a gzip stream\n");
      },
    });
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("before any daemon: no downloads directory is an error; an empty one is nothing held, no cycle, no failure, exit 0", async () => {
    const missing = await cli(["status", "--downloads-dir", downloads]);
    expect(missing.code, missing.stderr).toBe(1);
    expect(missing.stdout).toBe("");
    expect(plainStderrLines(missing.stderr)).toEqual([
      `Error: no downloads directory at ${downloads} — give status the daemon's --downloads-dir (the unit's is /var/lib/gh-gitlab-sync/downloads)`,
    ]);
    await mkdir(downloads);
    const human = await status();
    expect(human.stdout).toContain("(not there yet)");
    expect(human.stdout).toMatch(/^Lock {8}: free/m);
    expect(human.stdout).toMatch(/^Last cycle {2}: none recorded/m);
    expect(human.stdout).toMatch(/^Failures {4}: none$/m);
    expect(await statusJson()).toMatchObject({ lock: null, last_cycle: null, failures: [] });
  });

  it("a running daemon: status reports its lock, its last cycle and the failing image tag with its next retry", async () => {
    const daemon = startBinary(daemonArgs(["--interval", "3600"]), { env: tb.env, cwd: work });
    try {
      const deadline = Date.now() + 120_000;
      while (!daemon.output().stderr.includes('"summary"') && Date.now() < deadline) {
        await sleep(100);
      }
      const seen = await statusJson();
      expect(seen.lock).toMatchObject({
        pid: daemon.child.pid,
        host: hostname(),
        command: "daemon",
        alive: true,
      });
      expect(seen.last_cycle).toMatchObject({
        ok: false,
        runs: 2,
        missing: 2,
        // The good build's two, and the broken build's coordinator (streamed beside the failure).
        pushed: 3,
        failed: 1,
        backing_off: 0,
      });
      expect(seen.last_cycle?.bytes_downloaded).toBeGreaterThan(0);
      expect(Date.parse(seen.last_cycle?.finished_at ?? "")).toBeGreaterThanOrEqual(
        Date.parse(seen.last_cycle?.started_at ?? ""),
      );
      expect(seen.failures).toEqual([
        {
          image_tag: tagOf(builds.broken),
          attempts: 1,
          // Streamed (the daemon's default): the tarball fails alone, its sibling is pushed.
          last_error: expect.stringMatching(
            /^sync failed: 1 of 2 image\(s\) not pushed \(the others were\): .*presto-native-worker-cpu/,
          ) as string,
          next_retry_at: expect.any(String) as string,
        },
      ]);
      const wait = Date.parse(seen.failures[0]?.next_retry_at ?? "") - Date.now();
      expect(wait).toBeGreaterThan(500_000);

      const human = (await status()).stdout;
      expect(human).toContain(`Lock        : held by 'daemon', pid ${daemon.child.pid} on `);
      expect(human).toMatch(/^Last cycle {2}: #1 partial, finished \S+Z \(\d+ s ago\)$/m);
      expect(human).toContain("2 runs, 2 missing, 3 tags pushed, 1 failed, 0 backing off\n");
      expect(human).toMatch(/^ {14}[\d.]+ KiB downloaded in [\d.]+ s$/m);
      expect(human).toContain(`  ${tagOf(builds.broken)}\n    1 attempt(s), the last `);
      expect(human).toMatch(/^ {4}next retry \S+ \(in (9|10) min\)$/m);
      expect(human).toContain("`daemon --retry-now` retries them at once.");
    } finally {
      daemon.child.kill("SIGTERM");
      await daemon.result;
    }
    expect((await statusJson()).lock).toBeNull();
  });

  it("daemon --retry-now retries a backing-off image at once; without it the image waits", async () => {
    // The operator fixes the cause: the run's artifact is good now.
    tb.github.removeRun(builds.broken.id);
    await add(builds.broken);

    tb.github.resetRequests();
    const waiting = await runBinary(daemonArgs(["--once"]), { env: tb.env, cwd: work });
    expect(waiting.code).toBe(1);
    expect(tb.github.requests.filter((r) => r.host === "blob")).toEqual([]);
    expect((await statusJson()).last_cycle).toMatchObject({ backing_off: 1, failed: 0 });

    const now = await runBinary(daemonArgs(["--once", "--retry-now"]), { env: tb.env, cwd: work });
    expect(now.code, now.stderr).toBe(0);
    expect(now.stderr).toContain(`${tagOf(builds.broken)}: retrying now (--retry-now)`);
    const present = await gitlabTags(tb);
    for (const image of expectedImages(metadataOf(builds.broken)))
      expect(present).toContain(image.gitlabTag);
    const after = await statusJson();
    expect(after.failures).toEqual([]);
    // The coordinator went up beside the failure in the first cycle: only the worker is left.
    expect(after.last_cycle).toMatchObject({ ok: true, pushed: 1, failed: 0, backing_off: 0 });
  });

  it("a failure recorded for a build GitLab now holds (pushed by hand, say) is cleared by the next cycle", async () => {
    const file = path.join(downloads, ".state", "failures.json");
    await writeFile(
      file,
      JSON.stringify({
        [tagOf(builds.good)]: {
          attempts: 3,
          last_error: "push failed: registry down",
          last_attempt: "2025-11-07T00:00:00Z",
          next_retry: "2099-01-01T00:00:00Z",
        },
      }),
    );
    expect((await statusJson()).failures.map((f) => f.image_tag)).toEqual([tagOf(builds.good)]);
    const cycle = await runBinary(daemonArgs(["--once"]), { env: tb.env, cwd: work });
    expect(cycle.code, cycle.stderr).toBe(0);
    expect(cycle.stderr).toContain(
      `${tagOf(builds.good)}: every tag is in GitLab; failure record cleared`,
    );
    expect((await statusJson()).failures).toEqual([]);
  });

  it("a lock left by a dead process is told as such; unreadable state is exit 1 naming the file", async () => {
    await mkdir(downloads, { recursive: true });
    await writeFile(
      path.join(downloads, LOCK_FILE),
      JSON.stringify({
        pid: 2 ** 22 + 12345,
        hostname: hostname(),
        command: "push presto-x",
        started_at: "2025-11-07T00:00:00Z",
      }),
    );
    const human = (await status()).stdout;
    expect(human).toContain("Lock        : left by 'push presto-x', pid ");
    expect(human).toContain(", no longer running\n              since 2025-11-07T00:00:00Z (");
    expect((await statusJson()).lock).toMatchObject({ command: "push presto-x", alive: false });
    await rm(path.join(downloads, LOCK_FILE));

    const failures = path.join(downloads, ".state", "failures.json");
    const kept = await readFile(failures, "utf8");
    await writeFile(failures, '{"presto-x": {"attempts": "many"}}');
    try {
      expectOneLineError(
        await cli(["status", "--downloads-dir", downloads]),
        /^Error: cannot read the daemon's state: .*failures\.json has a bad value at presto-x\.attempts/,
      );
    } finally {
      await writeFile(failures, kept);
    }
  });
});
