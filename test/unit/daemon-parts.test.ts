import { describe, expect, it } from "vitest";
import { parseOptions, registryOptionsSchema } from "../../src/config/options.js";
import { DamagedInputError, SyncError, UsageError, setupFaultOf } from "../../src/errors.js";
import { unreachable } from "../../src/docker/failures.js";
import { diskFullError } from "../../src/util/files.js";
import type { CycleSummary } from "../../src/domain/daemon.js";
import { DaemonHealth, parseHealthAddress, startHealthServer } from "../../src/report/health.js";
import { silentLogger } from "../../src/report/logger.js";
import { parseImageName } from "../../src/sync/retag.js";

const summary = (over: Partial<CycleSummary>): CycleSummary => ({
  cycle: 1,
  result: "ok",
  startedAt: "2026-01-01T00:00:00.000Z",
  seconds: 1.5,
  runs: 20,
  missing: 2,
  pushed: 6,
  synced: 2,
  failed: 0,
  deferred: 0,
  downloadedBytes: 1024,
  uploadedBytes: 512,
  logBytes: 0,
  ...over,
});

describe("retag names", () => {
  it("takes repo:tag, repo@digest for a source, and a bare tag for a target in the source's repository", () => {
    expect(parseImageName("x86/presto-coordinator:presto-a-velox-b", "source")).toEqual({
      repoPath: "x86/presto-coordinator",
      ref: "presto-a-velox-b",
    });
    const digest = `sha256:${"0".repeat(64)}`;
    expect(parseImageName(`arm/w@${digest}`, "source")).toEqual({ repoPath: "arm/w", ref: digest });
    expect(parseImageName("latest", "target", "x86/c")).toEqual({
      repoPath: "x86/c",
      ref: "latest",
    });
  });

  it.each([
    ["../../etc:latest", "source"],
    ["X86/Upper:tag", "source"],
    ["x86/c:bad/tag", "target"],
    ["x86/c", "source"],
    ["x86/c@sha256:short", "source"],
    [`x86/c@sha256:${"0".repeat(64)}`, "target"],
  ] as const)("refuses %s as a %s with a usage error", (value, role) => {
    expect(() => parseImageName(value, role, "x86/c")).toThrow(UsageError);
  });
});

describe("registry options", () => {
  it("accepts host[:port] and a lowercase project path", () => {
    const parsed = parseOptions(registryOptionsSchema, {
      registry: "gitlab-master.nvidia.com:5005",
      registryProject: "hercules/veloxtesting",
      engine: "registry",
    });
    expect(parsed).toMatchObject({
      registry: "gitlab-master.nvidia.com:5005",
      insecureRegistry: false,
    });
  });

  it("names the flag when the registry has a scheme or the project is not a registry path", () => {
    expect(() => parseOptions(registryOptionsSchema, { registry: "https://r:5005" })).toThrow(
      /--registry must be host\[:port\] without a scheme/,
    );
    expect(() =>
      parseOptions(registryOptionsSchema, { registry: "r:5005", registryProject: "Hercules/../x" }),
    ).toThrow(/--registry-project must be a lowercase registry path/);
  });
});

describe("daemon health", () => {
  it("tells the last cycle's image failures, not only a failed cycle", () => {
    const health = new DaemonHealth();
    health.record(summary({ missing: 2, synced: 0, pushed: 0, failed: 2, result: "partial" }));
    expect(health.status()).toMatchObject({ code: 503, body: { status: "failing" } });
    health.record(summary({ missing: 3, synced: 1, failed: 1, deferred: 1, result: "partial" }));
    expect(health.status()).toMatchObject({ code: 200, body: { status: "degraded" } });
    health.record(summary({ missing: 1, synced: 0, pushed: 0, deferred: 1, result: "partial" }));
    expect(health.status()).toMatchObject({ code: 503, body: { status: "failing" } });
    health.record(summary({ result: "stopped" }));
    expect(health.status()).toMatchObject({ code: 503, body: { status: "stopping" } });
    health.record(summary({}));
    expect(health.status()).toMatchObject({ code: 200, body: { status: "ok" } });
  });

  it("parses --health-port as a port or host:port, loopback by default", () => {
    expect(parseHealthAddress("9464")).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(parseHealthAddress("0.0.0.0:9464")).toEqual({ host: "0.0.0.0", port: 9464 });
    expect(parseHealthAddress("[::1]:80")).toEqual({ host: "::1", port: 80 });
    expect(() => parseHealthAddress("99999")).toThrow(/not a port/);
    expect(() => parseHealthAddress("http://x")).toThrow(/not a port/);
  });

  it("answers /healthz by the last cycle and counts in /metrics", async () => {
    const health = new DaemonHealth();
    expect(health.status()).toMatchObject({
      code: 200,
      body: { status: "starting", lastCycle: null },
    });
    health.record(summary({}));
    health.record(summary({ cycle: 2, result: "failed", pushed: 0, error: "GitHub down" }));
    expect(health.status()).toMatchObject({ code: 503, body: { status: "failing" } });

    const server = await startHealthServer(health, { host: "127.0.0.1", port: 0 }, silentLogger());
    try {
      const healthz = await fetch(`${server.url}/healthz`);
      expect(healthz.status).toBe(503);
      expect(await healthz.json()).toMatchObject({ lastCycle: { cycle: 2, error: "GitHub down" } });
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toContain('gh_gitlab_sync_cycles_total{result="ok"} 1');
      expect(metrics).toContain('gh_gitlab_sync_cycles_total{result="failed"} 1');
      expect(metrics).toContain("gh_gitlab_sync_images_pushed_total 6");
      expect(metrics).toContain("gh_gitlab_sync_downloaded_bytes_total 2048");
      expect((await fetch(`${server.url}/nope`)).status).toBe(404);
      expect((await fetch(`${server.url}/healthz`, { method: "POST" })).status).toBe(405);
    } finally {
      await server.close();
    }
  });
});

describe("missing_images in /metrics", () => {
  const gauge = async (health: DaemonHealth) =>
    /^gh_gitlab_sync_missing_images (\d+)$/m.exec(await health.registry.metrics())?.[1];

  it("is what GitLab still lacks after the cycle: 0 once a cycle pushed them all", async () => {
    const health = new DaemonHealth();
    health.record(summary({ missing: 2, synced: 2 }));
    expect(await gauge(health)).toBe("0");
    health.record(
      summary({ cycle: 2, result: "partial", missing: 3, synced: 1, failed: 1, deferred: 1 }),
    );
    expect(await gauge(health)).toBe("2");
    // A cycle whose cross-reference failed knows nothing new: the last count stands.
    health.record(
      summary({ cycle: 3, result: "failed", missing: 0, synced: 0, error: "GitHub down" }),
    );
    expect(await gauge(health)).toBe("2");
  });
});

describe("downloaded_bytes_total in /metrics", () => {
  const counter = async (health: DaemonHealth) =>
    /^gh_gitlab_sync_downloaded_bytes_total (\d+)$/m.exec(await health.registry.metrics())?.[1];

  it("moves while a download runs, and the cycle's end does not count those bytes twice", async () => {
    const health = new DaemonHealth();
    health.downloading(1000);
    expect(await counter(health)).toBe("1000");
    health.downloading(500);
    health.record(summary({ downloadedBytes: 1500 }));
    expect(await counter(health)).toBe("1500");
    // A cycle nobody told of its bytes as they came (step by step): counted at its end.
    health.record(summary({ cycle: 2, downloadedBytes: 300 }));
    expect(await counter(health)).toBe("1800");
  });
});

describe("whose fault a failure is", () => {
  it("the setup's (engine, disk), found under the stage's wrapping; the image's stays undefined", () => {
    const engine = unreachable("unix:///var/run/docker.sock", "ENOENT");
    const wrapped = new Error("sync failed", { cause: engine });
    expect(setupFaultOf(wrapped)).toBe(engine);
    const full = diskFullError("/srv", 10, Object.assign(new Error("write"), { code: "ENOSPC" }));
    expect(setupFaultOf(new Error("push failed", { cause: full }))).toBe(full);
    // A bare ENOSPC that no one worded is still the disk's.
    const bare = Object.assign(new Error("EDQUOT: quota"), { code: "EDQUOT" });
    expect(setupFaultOf(bare)).toBe(bare);
    expect(setupFaultOf(new DamagedInputError("layer does not match"))).toBeUndefined();
    expect(setupFaultOf(new SyncError("registry refused the manifest"))).toBeUndefined();
  });
});
