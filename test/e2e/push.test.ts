import { cp, mkdtemp, readFile, rm, writeFile, readdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Dockerode from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectImageTarball } from "../../src/archive/docker-save.js";
import { DockerEngine } from "../../src/docker/engine.js";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { silentLogger } from "../../src/report/logger.js";
import { RegistryClient } from "../../src/registry/client.js";
import { LOCK_FILE } from "../../src/workspace/lock.js";
import { addArtifactRun, type ArtifactFixtureOptions } from "../testbed/artifacts.js";
import { dockerdGate, startDockerd, type Dockerd } from "../testbed/dockerd.js";
import { FlakyProxy } from "../testbed/flaky-proxy.js";
import { startHangingServer } from "../testbed/hanging-server.js";
import * as testbed from "../testbed/index.js";
import type { Testbed } from "../testbed/index.js";
import type { AccessLogEntry } from "../testbed/registry.js";
import * as builds from "../testbed/builds.js";
import { blobCommits } from "../testbed/builds.js";
import { plainStderrLines, runBinary, startBinary } from "./run-cli.js";
import { expectOneLineError, gitlabTags } from "./checks.js";

const gate = testbed.testbedGate();
const dockerGate = gate.skip ? { skip: true, reason: gate.reason } : dockerdGate();
const REPOS = ["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"];

interface Case {
  id: number;
  fixture?: Omit<ArtifactFixtureOptions, "dir" | "metadata">;
}
const cases = {
  registry: { id: 4001, fixture: { ociRepos: ["presto-native-worker-cpu"] } },
  docker: { id: 4002, fixture: { ociRepos: ["presto-native-worker-gpu"] } },
  bad: { id: 4003 },
  down: { id: 4004, fixture: { layerBytes: 4 << 20 } },
  daemon: { id: 4005 },
} satisfies Record<string, Case>;

const metadataOf = (c: Case): RunMetadata => builds.metadataOf("push", c);
const tagOf = (c: Case): string => builds.tagOf(metadataOf(c));
const gitlabTagOf = (c: Case): string => builds.gitlabTagOf(metadataOf(c));

const layerBytesMoved = (log: AccessLogEntry[]) =>
  log.filter(
    (e) =>
      (e.method === "PATCH" && e.path.includes("/blobs/uploads/")) ||
      (e.method === "GET" && e.path.includes("/blobs/sha256:")),
  );

describe.skipIf(gate.skip)(`push and retag on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let downloads: string;
  let home: string;
  let registry: RegistryClient;

  const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
    runBinary([...args, "--log-format", "json"], {
      env: { ...tb.env, HOME: home, DOCKER_HOST: undefined, ...env },
      cwd: work,
      timeoutMs: 240_000,
    });
  const push = (c: Case, extra: string[] = [], env: Record<string, string | undefined> = {}) =>
    cli(
      [
        "push",
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
      ],
      env,
    );
  const accessLog = () => tb.gitlab.registry.accessLog();
  const tagDir = (c: Case) => path.join(downloads, tagOf(c));
  const tarball = (c: Case, repo: string) =>
    path.join(tagDir(c), "extracted", `${repo}-${tagOf(c)}.tar.gz`);

  async function ready(c: Case): Promise<void> {
    const dl = await cli([
      "download",
      tagOf(c),
      ...tb.githubArgs,
      "--output-dir",
      downloads,
      "--limit",
      "50",
    ]);
    expect(dl.code, dl.stderr).toBe(0);
    const prep = await cli(["prepare", tagOf(c), "--downloads-dir", downloads]);
    expect(prep.code, prep.stderr).toBe(0);
  }

  const listed = () => gitlabTags(tb);

  beforeAll(async () => {
    tb = await testbed.startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-push-"));
    downloads = path.join(work, "downloads");
    home = path.join(work, "home");
    registry = testbed.testbedRegistryClient(tb);
    for (const c of Object.values(cases) as Case[]) {
      await addArtifactRun(tb.github, {
        id: c.id,
        metadata: metadataOf(c),
        dir: path.join(work, "fixtures", String(c.id)),
        createdAt: new Date(Date.UTC(2025, 10, 2) + c.id * 60_000)
          .toISOString()
          .replace(".000Z", "Z"),
        ...(c.fixture ? { fixture: c.fixture } : {}),
      });
    }
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("registry engine: download → prepare → push puts every tag in GitLab, a shared base layer goes up once", async () => {
    const c = cases.registry;
    await ready(c);
    const before = accessLog().length;
    const result = await push(c, ["--engine", "registry"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^\[1\/5\] Resolving run metadata from GitHub \.\.\.$/m);
    expect(result.stdout).toContain("Push plan:");
    expect(result.stdout).toContain(
      `Remote tag   : ${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/x86/presto-coordinator:${gitlabTagOf(c)}`,
    );
    expect(result.stdout).toContain(
      "GitLab status: repository not found (will be created on push)",
    );
    expect(result.stdout).toContain(
      `    → run ${c.id} (Presto Build Docker Images), branch=main, conclusion=success`,
    );
    expect(result.stdout).toContain("Push complete: 3 pushed.");
    expect(result.stdout + result.stderr).not.toContain(testbed.REGISTRY_PASSWORD);

    const present = await listed();
    for (const repo of REPOS) expect(present).toContain(`x86/${repo}:${gitlabTagOf(c)}`);

    // Every image is exactly the tarball: same config (image ID) and layer diff IDs.
    const manifests = [];
    for (const repo of REPOS) {
      const info = await inspectImageTarball(tarball(c, repo));
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
      manifests.push(parsed);
    }
    // The base layer is the same blob in all three, committed to the registry once.
    const base = manifests[0]?.layers[0]?.digest ?? "";
    expect(manifests.every((m) => m.layers[0]?.digest === base)).toBe(true);
    const log = accessLog().slice(before);
    expect(blobCommits(log, base)).toHaveLength(1);

    // Second push: every tag is present, nothing is sent.
    const beforeAgain = accessLog().length;
    const again = await push(c, ["--engine", "registry"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(
      "GitLab status: already present (push will overwrite the existing tag)",
    );
    expect(again.stdout).toContain(
      "\nSkipping already-present tags (use --force to push anyway):\n" +
        REPOS.map(
          (repo) =>
            `  ${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/x86/${repo}:${gitlabTagOf(c)}\n`,
        ).join("") +
        "Nothing to push.\n",
    );
    const writes = accessLog()
      .slice(beforeAgain)
      .filter((e) => ["PUT", "POST", "PATCH"].includes(e.method));
    expect(writes).toEqual([]);

    // --force pushes again, but no blob is uploaded a second time.
    const mark = accessLog().length;
    const forced = await push(c, ["--engine", "registry", "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain(
      "WARNING: The following tags already exist in GitLab and will be overwritten:",
    );
    expect(forced.stdout).toContain("Push complete: 3 pushed.");
    const forcedLog = accessLog().slice(mark);
    expect(blobCommits(forcedLog)).toEqual([]);
    expect(layerBytesMoved(forcedLog)).toEqual([]);
    expect(
      forcedLog.filter((e) => e.method === "PUT" && e.path.includes("/manifests/")),
    ).toHaveLength(3);
  });

  it("retag copies the manifest, moves no layer and needs no Docker daemon", async () => {
    const c = cases.registry;
    const source = `${testbed.PROJECT_PATH}/x86/presto-coordinator`;
    const sourceDigest = (await registry.getManifest(source, gitlabTagOf(c)))?.digest;
    expect(sourceDigest).toMatch(/^sha256:/);
    const noDaemon = { DOCKER_HOST: `unix://${path.join(work, "no-docker.sock")}` };
    const mark = accessLog().length;
    const result = await cli(
      [
        "retag",
        `x86/presto-coordinator:${gitlabTagOf(c)}`,
        "x86/presto-coordinator:latest",
        ...tb.gitlabArgs,
        ...tb.registryArgs,
      ],
      noDaemon,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(
      `Retagged ${tb.gitlab.registryHost}/${source}:${gitlabTagOf(c)}`,
    );
    expect((await registry.getManifest(source, "latest"))?.digest).toBe(sourceDigest);
    const log = accessLog().slice(mark);
    expect(layerBytesMoved(log)).toEqual([]);
    expect(blobCommits(log)).toEqual([]);

    // Into another repository: blobs are mounted (linked by the registry), still no bytes move.
    const mark2 = accessLog().length;
    const cross = await cli(
      [
        "retag",
        `x86/presto-coordinator:${gitlabTagOf(c)}`,
        "x86/presto-coordinator-stable:latest",
        ...tb.gitlabArgs,
        ...tb.registryArgs,
      ],
      noDaemon,
    );
    expect(cross.code, cross.stderr).toBe(0);
    expect(cross.stdout).toMatch(/blob\(s\) mounted, 0 copied/);
    const log2 = accessLog().slice(mark2);
    expect(layerBytesMoved(log2)).toEqual([]);
    expect(log2.some((e) => e.method === "POST" && e.path.includes("mount="))).toBe(true);
    expect(
      (
        await registry.getManifest(
          `${testbed.PROJECT_PATH}/x86/presto-coordinator-stable`,
          "latest",
        )
      )?.digest,
    ).toBe(sourceDigest);

    const missing = await cli(
      [
        "retag",
        "x86/presto-coordinator:no-such-tag",
        "latest",
        ...tb.gitlabArgs,
        ...tb.registryArgs,
      ],
      noDaemon,
    );
    expectOneLineError(
      missing,
      /source .*x86\/presto-coordinator:no-such-tag not found in registry/,
    );
  });

  it("refuses bad input with one clear line and pushes nothing", async () => {
    const c = cases.bad;
    await ready(c);

    // Wrong registry password: the message names the registry and the user.
    const mark = accessLog().length;
    const wrong = await push(c, [
      "--engine",
      "registry",
      "--registry-password",
      "not-the-password",
    ]);
    expectOneLineError(
      wrong,
      new RegExp(
        `${tb.gitlab.registryHost}.*${testbed.REGISTRY_USER}|${testbed.REGISTRY_USER}.*${tb.gitlab.registryHost}`,
      ),
    );
    expect(wrong.stderr + wrong.stdout).not.toContain("not-the-password");
    expect(
      accessLog()
        .slice(mark)
        .filter((e) => e.method === "PUT" || e.method === "POST"),
    ).toEqual([]);

    // No Docker engine: say where it was looked for and offer the registry engine.
    const noDaemon = await push(c, ["--engine", "docker"], {
      DOCKER_HOST: `unix://${path.join(work, "no-docker.sock")}`,
    });
    expectOneLineError(noDaemon, /Docker engine.*no-docker\.sock.*DOCKER_HOST.*--engine registry/);

    // A plan entry with a malformed GitLab tag.
    const planPath = path.join(tagDir(c), "upload-plan.json");
    const plan = await readFile(planPath, "utf8");
    await writeFile(
      planPath,
      plan.replace(/"x86\/presto-coordinator:/, '"x86/../../presto-coordinator:'),
    );
    const malformed = await push(c, ["--engine", "registry"]);
    expectOneLineError(
      malformed,
      /upload-plan\.json entry #1 has a malformed GitLab tag 'x86\/\.\.\/\.\.\/presto-coordinator:.*re-run prepare/,
    );
    await writeFile(planPath, plan);

    // A tarball deleted between prepare and push.
    const gone = tarball(c, "presto-native-worker-gpu");
    const saved = path.join(work, "saved.tar.gz");
    await cp(gone, saved);
    await rm(gone);
    const deleted = await push(c, ["--engine", "registry"]);
    expectOneLineError(
      deleted,
      /Image tarball .*presto-native-worker-gpu-.*\.tar\.gz .*is missing — re-run prepare/,
    );
    await cp(saved, gone);

    // Nothing of this tag reached the registry through any of it.
    const present = await listed();
    for (const repo of REPOS) expect(present).not.toContain(`x86/${repo}:${gitlabTagOf(c)}`);
  });

  it("a registry that goes away mid-push gives a clear error, and a rerun completes", async () => {
    const c = cases.down;
    await ready(c);
    const [host, port] = tb.gitlab.registryHost.split(":");
    const proxy = new FlakyProxy({ host: host ?? "127.0.0.1", port: Number(port) });
    await proxy.start();
    try {
      const viaProxy = ["--registry", proxy.host];
      proxy.cutAfterBytes(2 << 20);
      const cut = await push(c, ["--engine", "registry", ...viaProxy]);
      expectOneLineError(cut, new RegExp(`registry ${proxy.host} unreachable .*rerun`));
      await proxy.start();
      const rerun = await push(c, ["--engine", "registry", ...viaProxy]);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(rerun.stdout).toContain("Push complete: 3 pushed.");
      const present = await listed();
      for (const repo of REPOS) expect(present).toContain(`x86/${repo}:${gitlabTagOf(c)}`);
    } finally {
      await proxy.stop();
    }
  });

  describe.skipIf(dockerGate.skip)(`through a real dockerd ${dockerGate.reason}`, () => {
    let dockerd: Dockerd;
    let engine: DockerEngine;
    beforeAll(async () => {
      dockerd = await startDockerd();
      engine = new DockerEngine({ logger: silentLogger(), dockerHost: dockerd.dockerHost });
    }, 120_000);
    afterAll(async () => {
      await dockerd?.stop();
    });
    /** What the engine holds under a name (its ID and layer diff IDs), or undefined for nothing. */
    const inspectImage = async (
      reference: string,
    ): Promise<{ id: string; layers: string[] } | undefined> => {
      try {
        const info = await new Dockerode({ socketPath: dockerd.socket })
          .getImage(reference)
          .inspect();
        return { id: info.Id, layers: info.RootFS?.Layers ?? [] };
      } catch (err) {
        if ((err as { statusCode?: unknown }).statusCode === 404) return undefined;
        throw err;
      }
    };

    it("docker engine: load → tag → push with per-push credentials; the pushed images pull back identical", async () => {
      const c = cases.docker;
      await ready(c);
      const result = await push(c, ["--engine", "docker", "--retag-as-latest"], {
        DOCKER_HOST: dockerd.dockerHost,
      });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain("(docker engine)");
      expect(result.stdout).toContain("Push complete: 3 pushed.");
      expect(result.stdout + result.stderr).not.toContain(testbed.REGISTRY_PASSWORD);
      // One line per image and state at the default level: loading, pushing, pushed with what
      // moved; no line per layer (those are --log-level debug's).
      for (const repo of REPOS) {
        expect(result.stderr).toContain(
          `"msg":"loading ${repo}:${tagOf(c)} into the Docker engine"`,
        );
        expect(result.stdout).toMatch(
          new RegExp(
            `Pushing \\S+/x86/${repo}:\\S+ \\.\\.\\.\\n  archive: .*\\n  pushed sha256:[0-9a-f]{64}: \\d+ layers? sent \\([\\d.]+ [KMG]?i?B before compression\\), \\d+ reused, in [\\d.]+ s`,
          ),
        );
      }
      expect(result.stderr).not.toMatch(/"layer":/);
      // Credentials travelled with the push only: nothing was written under HOME.
      await expect(readdir(path.join(home, ".docker"))).rejects.toThrow();

      const present = await listed();
      for (const repo of REPOS) {
        expect(present).toContain(`x86/${repo}:${gitlabTagOf(c)}`);
        expect(present).toContain(`x86/${repo}:latest`);
      }

      // Forget everything the engine has, then pull each ref back and compare with the tarball.
      for (const repo of REPOS) {
        const remote = `${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/x86/${repo}:${gitlabTagOf(c)}`;
        const info = await inspectImageTarball(tarball(c, repo));
        await engine.removeImage(remote, { force: true });
        await engine.removeImage(`${repo}:${tagOf(c)}`, { force: true });
        expect(await inspectImage(remote)).toBeUndefined();
        await engine.pullImage(remote, {
          username: testbed.REGISTRY_USER,
          password: testbed.REGISTRY_PASSWORD,
          serveraddress: tb.gitlab.registryHost,
        });
        const pulled = await inspectImage(remote);
        expect(pulled?.id).toBe(info.configDigest);
        expect(pulled?.layers).toEqual(info.diffIds);
      }

      // A second push finds every tag present and leaves the engine alone.
      const second = await push(c, ["--engine", "docker"], { DOCKER_HOST: dockerd.dockerHost });
      expect(second.code, second.stderr).toBe(0);
      expect(second.stdout).toContain("Nothing to push.");
    });

    it("docker engine: SIGINT while the engine pushes to a registry that never answers stops within 2 s (130)", async () => {
      const c = cases.docker;
      const hang = await startHangingServer();
      const running = startBinary(
        [
          "push",
          tagOf(c),
          "--engine",
          "docker",
          "--yes",
          "--force",
          "--skip-login",
          "--downloads-dir",
          downloads,
          ...tb.githubArgs,
          ...tb.gitlabArgs,
          "--registry",
          hang.host,
          "--log-format",
          "json",
        ],
        { env: { ...tb.env, HOME: home, DOCKER_HOST: dockerd.dockerHost }, cwd: work },
      );
      try {
        // The engine loaded the image and is now waiting on the registry.
        for (let waited = 0; hang.requests.length === 0; waited += 20) {
          if (waited > 60_000) throw new Error(`dockerd never reached the registry`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
        const signalled = performance.now();
        running.child.kill("SIGINT");
        const result = await running.result;
        const ms = performance.now() - signalled;
        console.log(`stop time: docker-engine push (SIGINT) ${Math.round(ms)} ms`);
        expect(result.code, result.stderr).toBe(130);
        expect(ms).toBeLessThan(2_000);
        expect(plainStderrLines(result.stderr).join("\n")).toMatch(
          /^Interrupted by SIGINT; push stopped/m,
        );
        expect(result.stderr).not.toContain("unexpected failure");
        expect(existsSync(path.join(downloads, LOCK_FILE))).toBe(false);
      } finally {
        running.child.kill("SIGKILL");
        await hang.close();
      }
    });

    it("daemon --once with the docker engine pushes what is missing and leaves no image in the engine", async () => {
      const result = await cli(
        [
          "daemon",
          "--once",
          "--engine",
          "docker",
          "--downloads-dir",
          downloads,
          "--limit",
          "50",
          ...tb.githubArgs,
          ...tb.gitlabArgs,
          ...tb.registryArgs,
        ],
        { DOCKER_HOST: dockerd.dockerHost },
      );
      expect(result.code, result.stderr).toBe(0);
      const present = await listed();
      for (const repo of REPOS)
        expect(present).toContain(`x86/${repo}:${gitlabTagOf(cases.daemon)}`);
      for (const repo of REPOS) {
        const remote = `${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/x86/${repo}:${gitlabTagOf(cases.daemon)}`;
        expect(await inspectImage(remote)).toBeUndefined();
        expect(await inspectImage(`${repo}:${tagOf(cases.daemon)}`)).toBeUndefined();
      }
    });

    it("retag --engine docker keeps the original's pull, tag and push", async () => {
      const c = cases.docker;
      const result = await cli(
        [
          "retag",
          `x86/presto-coordinator:${gitlabTagOf(c)}`,
          "x86/presto-coordinator:via-docker",
          "--engine",
          "docker",
          ...tb.gitlabArgs,
          ...tb.registryArgs,
        ],
        { DOCKER_HOST: dockerd.dockerHost },
      );
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^\[1\/3\] Pulling /m);
      const source = `${testbed.PROJECT_PATH}/x86/presto-coordinator`;
      const pushed = await registry.getManifest(source, "via-docker");
      const original = await registry.getManifest(source, gitlabTagOf(c));
      const config = (m: typeof pushed) =>
        (JSON.parse(m?.bytes.toString() ?? "{}") as { config?: { digest: string } }).config?.digest;
      expect(config(pushed)).toBe(config(original));
    });

    it("docker engine: a wrong registry password is refused at login, naming the registry and the user", async () => {
      if (!existsSync(path.join(tagDir(cases.bad), "upload-plan.json"))) await ready(cases.bad);
      const wrong = await push(
        cases.bad,
        ["--engine", "docker", "--registry-password", "nope-nope"],
        {
          DOCKER_HOST: dockerd.dockerHost,
        },
      );
      expectOneLineError(
        wrong,
        new RegExp(
          `registry ${tb.gitlab.registryHost} refused the credentials of user ${testbed.REGISTRY_USER}`,
        ),
      );
      expect(wrong.stdout).not.toContain("Pushing");
      expect(wrong.stdout + wrong.stderr).not.toContain("nope-nope");
    });
  });
});
