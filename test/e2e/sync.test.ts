/**
 * `sync <image-tag>` (issue 15): download → verify → push → clean in one streaming pass, against
 * the real registry (and a real dockerd for the docker engine). Both `docker save` layouts, a
 * shared base layer sent once, a download cut mid-artifact and resumed, a stop and a restart
 * that resumes, and a tarball that fails its checks half-way (its tag never published, the
 * others are).
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectImageTarball } from "../../src/archive/docker-save.js";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { RegistryClient } from "../../src/registry/client.js";
import { OCI_INDEX, OCI_MANIFEST } from "../../src/registry/media-types.js";
import { LOCK_FILE } from "../../src/workspace/lock.js";
import {
  addArtifactRun,
  type ArtifactFixture,
  type ArtifactFixtureOptions,
} from "../testbed/artifacts.js";
import { dockerdGate, startDockerd, type Dockerd } from "../testbed/dockerd.js";
import * as testbed from "../testbed/index.js";
import type { Testbed } from "../testbed/index.js";
import * as builds from "../testbed/builds.js";
import { blobCommits, manifestPuts } from "../testbed/builds.js";
import { expectOneLineError, gitlabTags } from "./checks.js";
import { plainStderrLines, runBinary, startBinary } from "./run-cli.js";

const gate = testbed.testbedGate();
const dockerGate = gate.skip ? { skip: true, reason: gate.reason } : dockerdGate();
const REPOS = ["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"];

/** Flips one byte in the middle of a gzipped tarball's content: a layer no longer its diff-id. */
async function spoilMidway(file: string): Promise<void> {
  const tarBytes = zlib.gunzipSync(await readFile(file));
  const at = Math.floor(tarBytes.length / 2);
  tarBytes[at] = (tarBytes[at] ?? 0) ^ 0xff;
  await writeFile(file, zlib.gzipSync(tarBytes, { level: 1 }));
}

interface Case {
  id: number;
  fixture?: Omit<ArtifactFixtureOptions, "dir" | "metadata">;
}
const cases = {
  layouts: { id: 5101, fixture: { ociRepos: ["presto-native-worker-cpu"] } },
  cut: { id: 5102, fixture: { layerBytes: 2 << 20, ociRepos: ["presto-coordinator"] } },
  stopped: { id: 5103, fixture: { layerBytes: 3 << 20 } },
  spoiled: {
    id: 5104,
    fixture: {
      layerBytes: 1 << 20,
      mutateTarball: (repo: string, file: string) =>
        repo === "presto-native-worker-gpu" ? spoilMidway(file) : Promise.resolve(),
    },
  },
  docker: { id: 5105, fixture: { ociRepos: ["presto-coordinator"] } },
  noStream: { id: 5106 },
  index: { id: 5107 },
} satisfies Record<string, Case>;

const metadataOf = (c: Case): RunMetadata => builds.metadataOf("sync", c);
const tagOf = (c: Case): string => builds.tagOf(metadataOf(c));
const gitlabTagOf = (c: Case): string => builds.gitlabTagOf(metadataOf(c));

describe.skipIf(gate.skip)(`sync on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let downloads: string;
  let home: string;
  let registry: RegistryClient;
  const fixtures = new Map<number, ArtifactFixture>();

  const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
    runBinary([...args, "--log-format", "json"], {
      env: { ...tb.env, HOME: home, DOCKER_HOST: undefined, ...env },
      cwd: work,
      timeoutMs: 120_000,
    });
  const syncArgs = (c: Case, extra: string[]) => [
    "sync",
    tagOf(c),
    "--downloads-dir",
    downloads,
    ...tb.githubArgs,
    ...tb.gitlabArgs,
    ...tb.registryArgs,
    "--limit",
    "50",
    "--yes",
    ...extra,
  ];
  const sync = (c: Case, extra: string[] = ["--engine", "registry"], env = {}) =>
    cli(syncArgs(c, extra), env);
  const accessLog = () => tb.gitlab.registry.accessLog();
  const tarballOf = (c: Case, repo: string) =>
    fixtures.get(c.id)?.tarballs.find((t) => path.basename(t).startsWith(`${repo}-`)) ?? "";
  const artifactPath = (c: Case) => `/artifacts/${c.id * 10}.zip`;

  /** The registry holds each image exactly as its tarball: same config, same number of layers. */
  async function expectPublished(c: Case, repos = REPOS): Promise<Array<{ layers: string[] }>> {
    const present = await gitlabTags(tb);
    const manifests = [];
    for (const repo of repos) {
      expect(present).toContain(`x86/${repo}:${gitlabTagOf(c)}`);
      const info = await inspectImageTarball(tarballOf(c, repo));
      const manifest = await registry.getManifest(
        `${testbed.PROJECT_PATH}/x86/${repo}`,
        gitlabTagOf(c),
      );
      const parsed = JSON.parse(manifest?.bytes.toString() ?? "{}") as {
        config: { digest: string };
        layers: Array<{ digest: string }>;
      };
      expect(parsed.config.digest).toBe(info.configDigest);
      expect(parsed.layers).toHaveLength(info.diffIds.length);
      manifests.push({ layers: parsed.layers.map((l) => l.digest) });
    }
    return manifests;
  }

  beforeAll(async () => {
    tb = await testbed.startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-sync-"));
    downloads = path.join(work, "downloads");
    home = path.join(work, "home");
    registry = testbed.testbedRegistryClient(tb);
    for (const c of Object.values(cases) as Case[]) {
      const made = await addArtifactRun(tb.github, {
        id: c.id,
        metadata: metadataOf(c),
        dir: path.join(work, "fixtures", String(c.id)),
        createdAt: new Date(Date.UTC(2025, 10, 4) + c.id * 60_000)
          .toISOString()
          .replace(".000Z", "Z"),
        ...(c.fixture ? { fixture: c.fixture } : {}),
      });
      fixtures.set(c.id, made);
    }
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("registry engine, legacy and OCI layouts in one artifact: every tag published, the shared base sent once, nothing left on disk", async () => {
    const c = cases.layouts;
    const before = accessLog().length;
    const result = await sync(c);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^\[1\/7\] Locating workflow run for image tag '.*' \.\.\.$/m);
    expect(result.stdout).toContain(
      `Tarball      : presto-coordinator-${tagOf(c)}.tar.gz (streamed from presto-images-${c.id})`,
    );
    expect(result.stdout).toContain("Sync complete: 3 pushed.");
    expect(result.stdout + result.stderr).not.toContain(testbed.REGISTRY_PASSWORD);
    const manifests = await expectPublished(c);
    // The base layer is one blob in all three images, committed once.
    const base = manifests[0]?.layers[0] ?? "";
    expect(manifests.every((m) => m.layers[0] === base)).toBe(true);
    const log = accessLog().slice(before);
    expect(blobCommits(log, base)).toHaveLength(1);
    // Download, push and clean in one pass: the tag's directory is gone, no extracted copy made.
    expect(existsSync(path.join(downloads, tagOf(c)))).toBe(false);
    expect(result.stderr).not.toContain("extracted");

    // Again: every tag is there, nothing is downloaded or written.
    tb.github.resetRequests();
    const mark = accessLog().length;
    const again = await sync(c);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("Nothing to push.");
    expect(tb.github.requests.filter((r) => r.host === "blob")).toEqual([]);
    const writes = accessLog()
      .slice(mark)
      .filter((e) => ["PUT", "POST", "PATCH"].includes(e.method));
    expect(writes).toEqual([]);
  });

  it("--multiarch-index: after the push and the clean, each repository's index names the image, which carries its provenance", async () => {
    const c = cases.index;
    const result = await sync(c, ["--engine", "registry", "--multiarch-index"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("Writing multi-arch indexes ...");
    expect(result.stdout.indexOf("Writing multi-arch indexes")).toBeGreaterThan(
      result.stdout.indexOf("Cleaning up"),
    );
    await expectPublished(c);
    for (const repo of REPOS) {
      const image = await registry.getManifest(
        `${testbed.PROJECT_PATH}/x86/${repo}`,
        gitlabTagOf(c),
      );
      expect(image?.mediaType).toBe(OCI_MANIFEST);
      const annotations = (
        JSON.parse(image?.bytes.toString() ?? "{}") as {
          annotations?: Record<string, string>;
        }
      ).annotations;
      expect(annotations?.["org.opencontainers.image.url"]).toBe(
        `https://github.com/rapidsai/velox-testing/actions/runs/${c.id}`,
      );
      const index = await registry.getManifest(`${testbed.PROJECT_PATH}/${repo}`, gitlabTagOf(c));
      expect(index?.mediaType).toBe(OCI_INDEX);
      const listed = JSON.parse(index?.bytes.toString() ?? "{}") as {
        manifests: Array<{ digest: string; platform: { os: string; architecture: string } }>;
      };
      expect(listed.manifests).toEqual([
        expect.objectContaining({
          digest: image?.digest,
          platform: expect.objectContaining({ os: "linux", architecture: "amd64" }),
        }),
      ]);
    }
  });

  it("a download cut mid-artifact is resumed with Range and the sync completes", async () => {
    const c = cases.cut;
    const size = fixtures.get(c.id)?.size ?? 0;
    tb.github.resetRequests();
    tb.github.injectFault({
      host: "blob",
      match: artifactPath(c),
      cutAfterBytes: Math.floor(size / 2),
    });
    const result = await sync(c);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("Sync complete: 3 pushed.");
    const fetches = tb.github.requests.filter((r) => r.host === "blob");
    expect(fetches).toHaveLength(2);
    expect(fetches[1]?.range).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(fetches[1]?.range ?? "")?.[0])).toBeGreaterThan(0);
    await expectPublished(c);
  });

  it("SIGINT mid-sync: exit 130 within 2 s, the lock released, the part file kept; the next sync resumes it", async () => {
    const c = cases.stopped;
    const size = fixtures.get(c.id)?.size ?? 0;
    const part = path.join(downloads, tagOf(c), `${tagOf(c)}.zip.part`);
    tb.github.injectFault({ host: "blob", match: artifactPath(c), bytesPerSecond: 2 << 20 });
    const running = startBinary(
      [...syncArgs(c, ["--engine", "registry"]), "--log-format", "json"],
      {
        env: { ...tb.env, HOME: home },
        cwd: work,
      },
    );
    let kept = 0;
    try {
      for (let waited = 0; ; waited += 20) {
        kept = await stat(part).then(
          (s) => s.size,
          () => 0,
        );
        if (kept > size / 3) break;
        if (waited > 30_000)
          throw new Error(`the part file never grew: ${running.output().stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const signalled = performance.now();
      running.child.kill("SIGINT");
      const result = await running.result;
      const ms = performance.now() - signalled;
      console.log(`stop time: sync (SIGINT) ${Math.round(ms)} ms`);
      expect(result.code, result.stderr).toBe(130);
      expect(ms).toBeLessThan(2_000);
      expect(plainStderrLines(result.stderr).join("\n")).toMatch(
        /^Interrupted by SIGINT; sync stopped/m,
      );
      expect(result.stderr).toContain("run sync again to resume");
      expect(result.stderr).not.toContain("unexpected failure");
      expect(existsSync(path.join(downloads, LOCK_FILE))).toBe(false);
      expect((await stat(part)).size).toBeGreaterThan(0);
    } finally {
      running.child.kill("SIGKILL");
      tb.github.clearFaults();
    }
    // Nothing is published before the whole artifact is verified.
    const present = await gitlabTags(tb);
    for (const repo of REPOS) expect(present).not.toContain(`x86/${repo}:${gitlabTagOf(c)}`);

    tb.github.resetRequests();
    const resumed = await sync(c);
    expect(resumed.code, resumed.stderr).toBe(0);
    const fetches = tb.github.requests.filter((r) => r.host === "blob");
    expect(fetches).toHaveLength(1);
    expect(fetches[0]?.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(fetches[0]?.bytesSent).toBeLessThan(size);
    await expectPublished(c);
  });

  it("a tarball that fails its checks half-way: its tag is not published, the others are; one line, exit 1", async () => {
    const c = cases.spoiled;
    const mark = accessLog().length;
    const result = await sync(c);
    // Out of the way of the daemon's cycle below.
    tb.github.removeRun(c.id);
    expectOneLineError(
      result,
      new RegExp(
        `1 of 3 image\\(s\\) not pushed \\(the others were\\): .*presto-native-worker-gpu-${tagOf(c)}\\.tar\\.gz`,
      ),
    );
    await expectPublished(c, ["presto-coordinator", "presto-native-worker-cpu"]);
    expect(await gitlabTags(tb)).not.toContain(`x86/presto-native-worker-gpu:${gitlabTagOf(c)}`);
    expect(manifestPuts(accessLog().slice(mark), "presto-native-worker-gpu")).toEqual([]);
  });

  describe.skipIf(dockerGate.skip)(`through a real dockerd ${dockerGate.reason}`, () => {
    let dockerd: Dockerd;
    beforeAll(async () => {
      dockerd = await startDockerd();
    }, 120_000);
    afterAll(async () => {
      await dockerd?.stop();
    });

    it("docker engine, legacy and OCI layouts: each tarball streams into docker load and is pushed once verified", async () => {
      const c = cases.docker;
      const result = await sync(c, ["--engine", "docker"], { DOCKER_HOST: dockerd.dockerHost });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain("(docker engine)");
      expect(result.stdout).toContain("Sync complete: 3 pushed.");
      for (const repo of REPOS) {
        expect(result.stderr).toContain(
          `"msg":"loading ${repo}:${tagOf(c)} into the Docker engine while it is checked"`,
        );
      }
      await expectPublished(c);
      expect(existsSync(path.join(downloads, tagOf(c)))).toBe(false);
    });
  });

  it("daemon --once --no-stream keeps the step-by-step path: download, prepare (an extracted copy), push, clean", async () => {
    const c = cases.noStream;
    const result = await cli(
      testbed.daemonArgs(tb, downloads, ["--once", "--no-stream", "--limit", "50"]),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(
      new RegExp(`"msg":"Extracting ${tagOf(c)}\\.zip to \\S+/${tagOf(c)}/extracted \\.\\.\\."`),
    );
    await expectPublished(c);
    expect(existsSync(path.join(downloads, tagOf(c)))).toBe(false);
  });
});
