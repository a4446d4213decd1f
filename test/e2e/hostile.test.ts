/**
 * Issue 13 on the testbed (the stand-ins and the real registry): an image that would not verify
 * is never published, the daemon recovers by itself from what a crash or a full disk leaves, a
 * stop is reported as a stop, the state directory is locked, usage errors are usage errors, and
 * what servers say reaches the terminal printable.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { inspectImageTarball } from "../../src/archive/docker-save.js";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { expectedImages } from "../../src/domain/images.js";
import { DamagedInputError, SyncError } from "../../src/errors.js";
import { createGithubClient } from "../../src/github/client.js";
import { GitlabRegistryClient } from "../../src/gitlab/client.js";
import { DaemonHealth } from "../../src/report/health.js";
import { silentLogger } from "../../src/report/logger.js";
import { logSteps } from "../../src/report/steps.js";
import { RegistryClient } from "../../src/registry/client.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { pushTarball } from "../testbed/push-tarball.js";
import { runCycle, type DaemonServices, type DaemonSettings } from "../../src/sync/daemon.js";
import type { ImageSink } from "../../src/archive/image-source.js";
import { FailureState } from "../../src/workspace/failures.js";
import { MetadataCache } from "../../src/workspace/state.js";
import { addArtifactRun, type ArtifactFixtureOptions } from "../testbed/artifacts.js";
import { layerTar, sha256, writeHostileSave } from "../testbed/hostile-images.js";
import {
  daemonArgs as testbedDaemonArgs,
  PROJECT_PATH,
  REGISTRY_USER,
  startTestbed,
  testbedRegistryClient,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import {
  BUILD_JOB_NAME,
  WORKFLOW_NAME,
  makeFixtureRun,
  makeMetadata,
  renderJobLog,
} from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { expectOneLineError, gitlabTags } from "./checks.js";
import { plainStderrLines, runBinary, startBinary } from "./run-cli.js";

const gate = testbedGate();
const logger = silentLogger();
const isRoot = process.getuid?.() === 0;
// eslint-disable-next-line no-control-regex -- what must never reach a terminal raw
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/;

function records(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function until(what: string, check: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.skipIf(gate.skip)(`hostile input on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;

  beforeAll(async () => {
    tb = await startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-hostile-"));
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const cli = (args: string[], env: Record<string, string> = tb.env) =>
    runBinary(args, { env, cwd: work, timeoutMs: 120_000 });

  /** A successful run with a real artifact, gone from the stand-in when the test ends. */
  async function build(
    id: number,
    fixture: (tag: string) => Omit<ArtifactFixtureOptions, "dir" | "metadata"> = () => ({}),
  ): Promise<{ tag: string; metadata: RunMetadata; gitlabTags: string[]; zip: string }> {
    const metadata = makeMetadata({
      prestoRef: ref(`hostile-${id}`),
      veloxRef: ref(`hostile-v-${id}`),
      platform: "linux/amd64",
      mode: "single",
      workerVariant: "native_cpu",
    });
    const made = await addArtifactRun(tb.github, {
      id,
      metadata,
      dir: path.join(work, "fixtures", String(id)),
      createdAt: new Date(Date.UTC(2025, 11, 1) + id * 60_000).toISOString().replace(".000Z", "Z"),
      fixture: fixture(metadata["Image tag"] ?? ""),
    });
    onTestFinished(() => tb.github.removeRun(id));
    return {
      tag: metadata["Image tag"] ?? "",
      metadata,
      gitlabTags: expectedImages(metadata).map((i) => i.gitlabTag),
      zip: made.zip,
    };
  }

  async function freshDir(name: string): Promise<string> {
    const dir = path.join(work, name);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  const daemonArgs = (downloads: string, extra: string[]) =>
    testbedDaemonArgs(tb, downloads, ["--limit", "50", ...extra]);
  const daemonOnce = (downloads: string, extra: string[] = []) =>
    cli(daemonArgs(downloads, ["--once", ...extra]));
  /** A daemon that runs a cycle, then waits an hour: it holds its locks until stopped. */
  const daemonRunning = (downloads: string, extra: string[] = []) =>
    startBinary(daemonArgs(downloads, ["--interval", "3600", ...extra]), {
      env: tb.env,
      cwd: work,
      timeoutMs: 120_000,
    });

  describe("nothing unverified is published (failure 3)", () => {
    /** A coordinator image whose one layer is stored gzipped, its content not its diff-id's. */
    async function spoiled(file: string, repoTag: string): Promise<void> {
      const promised = await layerTar({ "etc/os-release": "ID=fixture\n" });
      const delivered = await layerTar({ "etc/os-release": "ID=evil\n" });
      await writeHostileSave(file, repoTag, [
        { stored: zlib.gzipSync(delivered), diffId: sha256(promised) },
      ]);
    }

    it("prepare refuses a gzip-compressed layer that does not match its diff-id; push has nothing to publish", async () => {
      const b = await build(7101, (tag) => ({
        mutateTarball: async (repo, file) => {
          if (repo === "presto-coordinator") await spoiled(file, `${repo}:${tag}`);
        },
      }));
      const downloads = await freshDir("failure-3");
      const args = ["--downloads-dir", downloads];
      const dl = await cli(["download", b.tag, ...tb.githubArgs, "--output-dir", downloads]);
      expect(dl.code, dl.stderr).toBe(0);
      expectOneLineError(
        await cli(["prepare", b.tag, ...args]),
        /presto-coordinator-.*: layer 0\/layer\.tar does not match its diff-id sha256:[0-9a-f]{64} \(its gzip-decompressed bytes hash to sha256:/,
      );
      expect(await readdir(path.join(downloads, b.tag))).not.toContain("upload-plan.json");
      const push = await cli([
        "push",
        b.tag,
        ...args,
        ...tb.githubArgs,
        ...tb.gitlabArgs,
        ...tb.registryArgs,
        "--engine",
        "registry",
        "--yes",
      ]);
      expectOneLineError(push, /No upload plan/);
      const present = await gitlabTags(tb);
      for (const t of b.gitlabTags) expect(present).not.toContain(t);
    });

    it("the registry engine itself checks every layer before the manifest: no inspection, a stale one, or a good compressed layer", async () => {
      const dir = await freshDir("engine-check");
      const client = testbedRegistryClient(tb, {
        logger,
        retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
      });
      const good = await layerTar({ "opt/app": "the real layer\n".repeat(100) });
      const evil = await layerTar({ "opt/app": "another layer\n".repeat(100) });
      const file = path.join(dir, "image.tar.gz");
      const repository = `${PROJECT_PATH}/hostile/engine`;
      const push = (tag: string, info?: Awaited<ReturnType<typeof inspectImageTarball>>) =>
        pushTarball({
          client,
          tarball: file,
          repository,
          tag,
          cache: LayerCache.inMemory(),
          logger,
          ...(info ? { info } : {}),
        }).catch((err: unknown) => err);

      // A good layer stored gzipped (the containerd image store's way) goes up and pulls back.
      await writeHostileSave(file, "engine:good", [{ stored: zlib.gzipSync(good) }]);
      const info = await inspectImageTarball(file);
      const pushed = await push("good", info);
      expect(pushed).toMatchObject({ manifestDigest: expect.stringMatching(/^sha256:/) });
      const manifest = JSON.parse(
        (await client.getManifest(repository, "good"))?.bytes.toString() ?? "{}",
      ) as { layers: Array<{ digest: string }> };
      const blob = await client.getBlob(repository, manifest.layers[0]?.digest ?? "");
      const chunks: Buffer[] = [];
      for await (const chunk of blob) chunks.push(chunk as Buffer);
      expect(sha256(zlib.gunzipSync(Buffer.concat(chunks)))).toBe(sha256(good));

      // The same file, now holding another layer under the old diff-id: without an inspection
      // the push inspects and refuses; with the stale one (as prepare recorded it), the upload
      // itself is refused before it is committed. No manifest names either.
      await writeHostileSave(file, "engine:good", [
        { stored: zlib.gzipSync(evil), diffId: sha256(good) },
      ]);
      const uninspected = await push("uninspected");
      expect(uninspected).toBeInstanceOf(DamagedInputError);
      expect((uninspected as Error).message).toMatch(/does not match its diff-id/);
      const stale = await push("stale", { ...info });
      expect(stale).toBeInstanceOf(DamagedInputError);
      expect((stale as Error).message).toMatch(/layer 0\/layer\.tar does not match its diff-id/);
      expect(await client.getManifest(repository, "uninspected")).toBeUndefined();
      expect(await client.getManifest(repository, "stale")).toBeUndefined();
      expect(await client.blobExists(repository, sha256(zlib.gzipSync(evil)))).toBe(false);
    });
  });

  describe("the daemon recovers by itself", () => {
    it("a complete <tag>.zip without metadata.json is checked and kept, or replaced when it is not the artifact (failure 6)", async () => {
      const kept = await build(7201);
      const replaced = await build(7202);
      const downloads = await freshDir("failure-6");
      for (const b of [kept, replaced]) {
        const dir = path.join(downloads, b.tag);
        await mkdir(dir, { recursive: true });
        // Killed after the rename, before metadata.json: the zip is there, nothing else.
        const bytes = await readFile(b.zip);
        const middle = Math.floor(bytes.length / 2);
        if (b === replaced) bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
        await writeFile(path.join(dir, `${b.tag}.zip`), bytes);
      }
      tb.github.resetRequests();
      const result = await daemonOnce(downloads);
      expect(result.code, result.stderr).toBe(0);
      const present = await gitlabTags(tb);
      for (const t of [...kept.gitlabTags, ...replaced.gitlabTags]) expect(present).toContain(t);
      const fetched = tb.github.requests
        .filter((r) => r.host === "blob" && r.path.startsWith("/artifacts/"))
        .map((r) => r.path);
      expect(fetched).toEqual(["/artifacts/72020.zip"]);
      const messages = records(result.stderr).map((r) => String(r.msg));
      expect(messages).toContainEqual(
        expect.stringMatching(
          /without its metadata\.json .* it matches the artifact, so it is kept/,
        ),
      );
      expect(messages).toContainEqual(
        expect.stringMatching(
          /does not match the artifact \(digest mismatch.*\); downloading it again/,
        ),
      );
    });

    it.runIf(isRoot)(
      "a disk too full to extract keeps the artifact, and holds no image back for it",
      async () => {
        // An incompressible 4 MiB image: the zip is about as large as what it extracts to.
        const b = await build(7301, () => ({ layerBytes: 4 << 20 }));
        const zipMiB = (await readFile(b.zip)).length / (1 << 20);
        const disk = await freshDir("full-disk");
        // Room for the download and its 64 MiB margin, not for the extraction and the margin too.
        const size = Math.ceil(64 + zipMiB * 1.5 + 1);
        execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}m`, "tmpfs", disk]);
        try {
          // The step-by-step path extracts; the streaming one (the default) writes no copy.
          const result = await daemonOnce(disk, ["--no-stream"]);
          expect(result.code).toBe(1);
          // The disk's fault, not the image's: the cycle says so, and no back-off waits once it is freed.
          const errors = plainStderrLines(result.stderr).filter((l) => l.startsWith("Error: "));
          expect(errors, result.stderr).toHaveLength(1);
          expect(errors[0]).toMatch(/^Error: daemon --once: cycle failed: not enough disk space/);
          expect(existsSync(path.join(disk, ".state", "failures.json"))).toBe(false);
          const left = await readdir(path.join(disk, b.tag));
          expect(left).toContain(`${b.tag}.zip`);
          expect(left).toContain("metadata.json");
        } finally {
          execFileSync("umount", [disk]);
        }
      },
    );

    it("an artifact is deleted after a push-stage failure only when the failure proves it bad; /healthz tells", async () => {
      const bad = await build(7401);
      const downloads = await freshDir("push-stage");
      const state = path.join(downloads, ".state");
      let failWith: Error = new Error("unset");
      const sink: ImageSink = {
        name: "registry",
        login: () => Promise.resolve(),
        check: () => Promise.resolve(),
        batch: () =>
          Promise.resolve({
            begin: () => ({
              parsed: Promise.resolve(),
              ready: () => Promise.reject(failWith),
              discard: () => Promise.resolve(),
            }),
          }),
      };
      const services: DaemonServices = {
        github: {
          options: {
            repo: "rapidsai/velox-testing",
            workflow: "presto-build-images.yml",
            branch: undefined,
            limit: 50,
            ghToken: undefined,
            githubApiUrl: tb.github.url,
          },
          client: createGithubClient({
            baseUrl: tb.github.url,
            token: tb.env.GH_TOKEN,
            logger,
            fetch: globalThis.fetch,
          }),
          cache: new MetadataCache(state, logger),
        },
        gitlab: {
          options: {
            gitlabHost: tb.gitlab.url,
            gitlabProject: PROJECT_PATH,
            gitlabToken: undefined,
          },
          client: new GitlabRegistryClient({
            host: tb.gitlab.url,
            token: tb.env.GITLAB_TOKEN ?? "",
            logger,
            fetch: globalThis.fetch,
          }),
        },
        push: {
          registryClient: new RegistryClient({
            registry: tb.gitlab.registryHost,
            logger,
            fetch: globalThis.fetch,
          }),
          // The step-by-step path is under test (settings.stream is false).
          sink,
        },
        // No back-off, so the second cycle tries again at once.
        failures: new FailureState(state, { baseSeconds: 0, maxSeconds: 0 }, logger),
        steps: logSteps,
        progress: () => () => undefined,
      };
      const settings: DaemonSettings = {
        downloadsDir: downloads,
        intervalSeconds: 3600,
        pollIntervalSeconds: 0,
        once: true,
        skipLogin: true,
        forcePush: false,
        retagAsLatest: false,
        registry: tb.gitlab.registryHost,
        registryProject: PROJECT_PATH,
        username: REGISTRY_USER,
        stream: false,
      };
      const ctx = { logger, signal: new AbortController().signal };
      const health = new DaemonHealth();

      failWith = new SyncError("no space left on the disk holding /var/lib/docker");
      const full = await runCycle(ctx, services, settings, 1);
      expect(full).toMatchObject({ result: "partial", failed: 1, synced: 0 });
      expect(await readdir(path.join(downloads, bad.tag))).toEqual(
        expect.arrayContaining([`${bad.tag}.zip`, "metadata.json", "extracted"]),
      );
      health.record(full);
      expect(health.status()).toMatchObject({
        code: 503,
        body: { status: "failing", lastCycle: { failedTags: [bad.tag] } },
      });

      failWith = new DamagedInputError("layer 0/layer.tar does not match its diff-id");
      const damaged = await runCycle(ctx, services, settings, 2);
      expect(damaged).toMatchObject({ result: "partial", failed: 1 });
      expect(existsSync(path.join(downloads, bad.tag))).toBe(false);
    });

    it("SIGTERM mid-download is reported as a stop: no 'done', no 'cycle ok'", async () => {
      const b = await build(7501, () => ({ layerBytes: 3 << 20 }));
      const downloads = await freshDir("sigterm");
      tb.github.injectFault({
        match: "/artifacts/",
        host: "blob",
        bytesPerSecond: 256 * 1024,
        times: Infinity,
      });
      onTestFinished(() => tb.github.clearFaults());
      tb.github.resetRequests();
      const daemon = daemonRunning(downloads);
      try {
        await until("the artifact download to start", () =>
          tb.github.requests.some(
            (r) => r.host === "blob" && r.path.includes("/artifacts/") && r.bytesSent > 100_000,
          ),
        );
        daemon.child.kill("SIGTERM");
        const result = await daemon.result;
        const all = records(result.stderr);
        const summary = all.find((r) => r.summary)?.summary as Record<string, unknown>;
        expect(summary).toMatchObject({ result: "stopped" });
        const messages = all.map((r) => String(r.msg));
        expect(messages).toContainEqual(expect.stringMatching(/^cycle 1 stopped by a signal: /));
        expect(messages.filter((m) => / ok: |: done$/.test(m))).toEqual([]);
        expect(messages).toContainEqual(
          expect.stringMatching(new RegExp(`^download presto-images-7501: stopped at `)),
        );
        expect(existsSync(path.join(downloads, b.tag, `${b.tag}.zip`))).toBe(false);
      } finally {
        daemon.child.kill("SIGKILL");
      }
    });

    it("the lock covers the state directory when --state-dir is elsewhere", async () => {
      const state = await freshDir("shared-state");
      const first = daemonRunning(await freshDir("lock-a"), ["--state-dir", state]);
      try {
        await until("the first daemon's state lock", () =>
          existsSync(path.join(state, ".gh-gitlab-sync.lock")),
        );
        const second = await daemonOnce(await freshDir("lock-b"), ["--state-dir", state]);
        expectOneLineError(
          second,
          new RegExp(`^Error: ${state} is in use by 'daemon' \\(pid ${first.child.pid} `),
        );
        first.child.kill("SIGTERM");
        await first.result;
      } finally {
        first.child.kill("SIGKILL");
      }
    });
  });

  describe("usage errors are usage errors", () => {
    it("a bad --registry port and a hexadecimal number: exit 2, one line, before any token is asked for", async () => {
      expectOneLineError(
        await cli(["daemon", "--once", "--registry", "localhost:99999"], {}),
        /--registry must be host\[:port\]/,
        2,
      );
      expectOneLineError(
        await cli(["gh-list", "--limit", "0x10"], {}),
        /--limit must be a whole number/,
        2,
      );
    });

    it("a lock path that is a directory, and a downloads directory that cannot be written", async () => {
      const dir = await freshDir("lock-is-dir");
      await mkdir(path.join(dir, ".gh-gitlab-sync.lock"));
      expectOneLineError(
        await cli(["prepare", "presto-a-velox-b-linux-amd64", "--downloads-dir", dir]),
        /\.gh-gitlab-sync\.lock is a directory, not this tool's lock file — remove that directory/,
        2,
      );
      const readOnly = await freshDir("read-only");
      if (isRoot) {
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", readOnly]);
      } else {
        execFileSync("chmod", ["555", readOnly]);
      }
      try {
        expectOneLineError(
          await cli([
            "download",
            "presto-a-velox-b-linux-amd64",
            ...tb.githubArgs,
            "--output-dir",
            readOnly,
          ]),
          /^Error: cannot write to .*read-only.* \((read-only file system|permission denied)\) — give --output-dir a directory this user can write to$/,
          2,
        );
      } finally {
        if (isRoot) execFileSync("umount", [readOnly]);
        else execFileSync("chmod", ["755", readOnly]);
      }
    });
  });

  describe("what servers say reaches the terminal printable", () => {
    it("control sequences in metadata and titles are escaped; an invalid tag is invalid, not missing; two blocks are an error naming both tags", async () => {
      const hostile = makeMetadata({
        prestoRef: ref("printable"),
        veloxRef: ref("printable-v"),
        platform: "linux/amd64",
        mode: "single",
        workerVariant: "native_cpu",
      });
      hostile["Presto repository"] = "prestodb/presto\u001b]0;pwned\u0007\u0000";
      const escaping = await makeFixtureRun({
        id: 7601,
        metadata: hostile,
        createdAt: "2025-12-02T00:00:00Z",
      });
      escaping.run.display_title = "Build \u001b[2J\u001b[31mred";
      const invalid = { ...hostile, "Image tag": "../../etc/x" };
      const twice = makeMetadata({
        prestoRef: ref("twice"),
        veloxRef: ref("twice-v"),
        platform: "linux/amd64",
        mode: "single",
        workerVariant: "native_cpu",
      });
      const other = { ...twice, "Image tag": "presto-other-velox-other-linux-amd64" };
      const twoBlocks = await makeFixtureRun({
        id: 7603,
        metadata: twice,
        createdAt: "2025-12-02T00:02:00Z",
      });
      const buildJob = twoBlocks.jobs.find((job) => job.name === BUILD_JOB_NAME);
      if (!buildJob) throw new Error("fixture has no build job");
      // The step prints a second, different block right after the first.
      const log = renderJobLog(twice);
      const end = log.indexOf("\n", log.indexOf("Generated at      :")) + 1;
      const second = Object.entries(other)
        .map(([k, v]) => `2025-12-02T00:02:00.5000000Z ${k.padEnd(18)}: ${v}\n`)
        .join("");
      buildJob.log = Buffer.from(log.slice(0, end) + second + log.slice(end));
      tb.github.addRun(escaping);
      tb.github.addRun(
        await makeFixtureRun({ id: 7602, metadata: invalid, createdAt: "2025-12-02T00:01:00Z" }),
      );
      tb.github.addRun(twoBlocks);
      onTestFinished(() => {
        for (const id of [7601, 7602, 7603]) tb.github.removeRun(id);
      });
      const state = ["--state-dir", await freshDir("printable-state")];

      const list = await cli(["gh-list", ...tb.githubArgs, "--limit", "50", ...state]);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).not.toMatch(RAW_CONTROL);
      expect(list.stderr).not.toMatch(RAW_CONTROL);
      expect(list.stdout).toContain("Presto repository : prestodb/presto\\x1b]0;pwned\\x07\\x00");
      expect(list.stdout).toContain("7601: Build \\x1b[2J\\x1b[31mred");
      expect(list.stdout).toContain("Image tag         : ../../etc/x");
      expect(list.stdout).toContain("  (not a valid image tag, so it is not mirrored)");
      expect(list.stdout).toContain(
        `(metadata unavailable: run 7603: its log holds two different metadata blocks (image tags '${twice["Image tag"]}' and 'presto-other-velox-other-linux-amd64'))`,
      );

      const xref = await cli([
        "xref",
        ...tb.githubArgs,
        ...tb.gitlabArgs,
        "--limit",
        "50",
        ...state,
      ]);
      expect(xref.code, xref.stderr).toBe(0);
      expect(xref.stdout).not.toMatch(RAW_CONTROL);
      expect(xref.stdout).toContain(`run 7602 (${WORKFLOW_NAME}): invalid image tag '../../etc/x'`);
      expect(xref.stdout).not.toContain("missing tag: x86/presto-coordinator:../../etc/x");
      const json = await cli([
        "xref",
        ...tb.githubArgs,
        ...tb.gitlabArgs,
        "--limit",
        "50",
        "--json",
        ...state,
      ]);
      const parsed = JSON.parse(json.stdout) as {
        invalid_tags: Array<{ run_id: number; image_tag: string }>;
        metadata_failures: Array<{ run_id: number; error: string }>;
      };
      expect(parsed.invalid_tags).toEqual([{ run_id: 7602, image_tag: "../../etc/x" }]);
      expect(parsed.metadata_failures.map((f) => f.run_id)).toContain(7603);
      expect(plainStderrLines(xref.stderr).filter((l) => l.startsWith("Error"))).toEqual([]);
    });
  });
});
