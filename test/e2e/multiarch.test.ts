import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import Dockerode from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { expectedImages } from "../../src/domain/images.js";
import { RegistryClient } from "../../src/registry/client.js";
import { OCI_INDEX, OCI_MANIFEST } from "../../src/registry/media-types.js";
import { addArtifactRun, type ArtifactFixture } from "../testbed/artifacts.js";
import { CuttingProxy, registryErrorBody, type FrontRequest } from "../testbed/cutting-proxy.js";
import { dockerdGate, startDockerd, type Dockerd } from "../testbed/dockerd.js";
import { inspectImageTarball } from "../../src/archive/docker-save.js";
import * as testbed from "../testbed/index.js";
import type { Testbed } from "../testbed/index.js";
import { makeMetadata, type Platform, type WorkerVariant } from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { gitlabTags } from "./checks.js";
import { runBinary, startBinary } from "./run-cli.js";

const gate = testbed.testbedGate();
const dockerGate = gate.skip ? { skip: true, reason: gate.reason } : dockerdGate();

interface Build {
  id: number;
  platform: Platform;
  /** Builds with the same label are of the same refs: one GitLab tag. */
  refs: string;
  variant?: WorkerVariant;
  generatedAt?: string;
  /** The images' architecture when it is not the platform's: a build that went wrong. */
  architecture?: string;
}

/** Two builds of the same refs, one per platform: the workflow's two runs of one commit pair. */
const builds = {
  x86: {
    id: 7001,
    platform: "linux/amd64",
    refs: "multiarch",
    generatedAt: "2025-11-05T10:00:00Z",
  },
  arm: {
    id: 7002,
    platform: "linux/arm64",
    refs: "multiarch",
    generatedAt: "2025-11-05T11:30:00Z",
  },
} satisfies Record<string, Build>;
const REPOS = ["presto-coordinator", "presto-native-worker-cpu"];

function metadataOf(b: Build): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`${b.refs}-presto`),
    veloxRef: ref(`${b.refs}-velox`),
    platform: b.platform,
    mode: "single",
    workerVariant: b.variant ?? "native_cpu",
    ...(b.generatedAt ? { generatedAt: b.generatedAt } : {}),
  });
}
const imageTagOf = (b: Build) => metadataOf(b)["Image tag"] ?? "";
const gitlabTagsOf = (b: Build) => expectedImages(metadataOf(b)).map((i) => i.gitlabTag);
/** The GitLab tag of a build: its image tag without the platform suffix, shared by the pair. */
const tagOf = (b: Build) => expectedImages(metadataOf(b))[0]?.tag ?? "";
const TAG = tagOf(builds.x86);
const runUrl = (b: Build) => `https://github.com/rapidsai/velox-testing/actions/runs/${b.id}`;

/** `docker pull --platform`, and what the engine then has under the name. */
async function pullAs(docker: Dockerode, reference: string, platform: Platform, registry: string) {
  const authconfig = {
    username: testbed.REGISTRY_USER,
    password: testbed.REGISTRY_PASSWORD,
    serveraddress: registry,
  };
  const stream = await docker.pull(reference, { platform, authconfig });
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())),
  );
  return docker.getImage(reference).inspect();
}

interface Index {
  mediaType: string;
  manifests: Array<{
    mediaType: string;
    digest: string;
    size: number;
    platform: { architecture: string; os: string };
    annotations?: Record<string, string>;
  }>;
  annotations?: Record<string, string>;
}

describe.skipIf(gate.skip)(`multi-architecture tags on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let registry: RegistryClient;
  const fixtures = new Map<number, ArtifactFixture>();
  const add = async (b: Build): Promise<ArtifactFixture> => {
    const fixture = await addArtifactRun(tb.github, {
      id: b.id,
      metadata: metadataOf(b),
      dir: path.join(work, "fixtures", String(b.id)),
      createdAt: new Date(Date.UTC(2025, 10, 5) + b.id * 60_000)
        .toISOString()
        .replace(".000Z", "Z"),
      ...(b.architecture ? { fixture: { architecture: b.architecture } } : {}),
    });
    fixtures.set(b.id, fixture);
    return fixture;
  };

  const cli = (args: string[]) =>
    runBinary([...args, "--log-format", "json"], { env: tb.env, cwd: work, timeoutMs: 240_000 });
  /** One daemon per platform, each with its own downloads directory: the scaling recipe. */
  const daemon = (platform: string, extra: string[] = []) =>
    cli([...daemonCommand(platform), ...extra]);
  const daemonCommand = (platform: string) => [
    "daemon",
    "--once",
    "--platform",
    platform,
    "--multiarch-index",
    "--engine",
    "registry",
    "--downloads-dir",
    path.join(work, platform.replace("/", "-")),
    "--limit",
    "50",
    ...tb.githubArgs,
    ...tb.gitlabArgs,
    ...tb.registryArgs,
  ];
  const manifest = async (repo: string, reference: string) => {
    const got = await registry.getManifest(`${testbed.PROJECT_PATH}/${repo}`, reference);
    return (
      got && { ...got, json: JSON.parse(got.bytes.toString("utf8")) as Record<string, unknown> }
    );
  };
  const index = async (repo: string, reference = TAG): Promise<Index | undefined> => {
    const got = await manifest(repo, reference);
    if (!got) return undefined;
    expect(got.mediaType).toBe(OCI_INDEX);
    return got.json as unknown as Index;
  };
  const configOf = async (b: Build, repo: string) => {
    const tarball = fixtures
      .get(b.id)
      ?.tarballs.find((t) => path.basename(t).startsWith(`${repo}-`));
    return (await inspectImageTarball(tarball ?? "")).configDigest;
  };

  /** The manual path: download, prepare, then push with `--multiarch-index`. */
  const pushByHand = async (b: Build, engine: "docker" | "registry", env = {}) => {
    const run = (args: string[]) =>
      runBinary([...args, "--log-format", "json"], {
        env: { ...tb.env, ...env },
        cwd: work,
        timeoutMs: 240_000,
      });
    const downloads = path.join(work, `by-hand-${b.id}`);
    const github = ["--limit", "50", ...tb.githubArgs];
    expect(
      (await run(["download", imageTagOf(b), "--output-dir", downloads, ...github])).code,
    ).toBe(0);
    expect((await run(["prepare", imageTagOf(b), "--downloads-dir", downloads])).code).toBe(0);
    const pushed = await run([
      "push",
      imageTagOf(b),
      "--downloads-dir",
      downloads,
      "--engine",
      engine,
      "--yes",
      "--multiarch-index",
      ...github,
      ...tb.gitlabArgs,
      ...tb.registryArgs,
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    return pushed;
  };

  beforeAll(async () => {
    tb = await testbed.startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-multiarch-"));
    registry = testbed.testbedRegistryClient(tb);
    for (const b of [builds.x86, builds.arm]) await add(b);
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("--platform keeps one platform: gh-list and xref see only its builds, its daemon syncs only them", async () => {
    const listed = await cli(["gh-list", "--platform", "linux/arm64", "--json", ...tb.githubArgs]);
    expect(listed.code, listed.stderr).toBe(0);
    const runs = (JSON.parse(listed.stdout) as { runs: Array<{ id: number }> }).runs;
    expect(runs.map((r) => r.id)).toEqual([builds.arm.id]);

    const xref = await cli([
      "xref",
      "--platform",
      "linux/amd64",
      "--json",
      ...tb.githubArgs,
      ...tb.gitlabArgs,
    ]);
    expect(xref.code, xref.stderr).toBe(0);
    const missing = (JSON.parse(xref.stdout) as { missing: Array<{ image_tag: string }> }).missing;
    expect(missing.map((m) => m.image_tag)).toEqual([imageTagOf(builds.x86)]);

    const bad = await cli(["xref", "--platform", "linux/s390x", ...tb.githubArgs]);
    expect(bad.code).toBe(2);

    const x86 = await daemon("linux/amd64");
    expect(x86.code, x86.stderr).toBe(0);
    const present = await gitlabTags(tb);
    for (const t of gitlabTagsOf(builds.x86)) expect(present).toContain(t);
    for (const t of gitlabTagsOf(builds.arm)) expect(present).not.toContain(t);
  });

  it("an x86-only build gives an index with one entry; the images carry their provenance, configs untouched", async () => {
    for (const repo of REPOS) {
      const image = await manifest(`x86/${repo}`, TAG);
      expect(image?.mediaType).toBe(OCI_MANIFEST);
      const json = image?.json as {
        config: { digest: string };
        annotations: Record<string, string>;
      };
      // The image ID is the tarball's: provenance lives on the manifest, not in the config.
      expect(json.config.digest).toBe(await configOf(builds.x86, repo));
      expect(json.annotations).toEqual({
        "org.opencontainers.image.created": "2025-11-05T10:00:00Z",
        "org.opencontainers.image.source": "https://github.com/prestodb/presto",
        "org.opencontainers.image.revision": ref("multiarch-presto"),
        "org.opencontainers.image.version": TAG,
        "org.opencontainers.image.url": runUrl(builds.x86),
        "org.opencontainers.image.description": `Velox rapidsai/velox@${ref("multiarch-velox")}, platform linux/amd64, bundle single, run ${builds.x86.id}`,
      });

      const one = await index(repo);
      expect(one?.manifests).toHaveLength(1);
      expect(one?.manifests[0]).toMatchObject({
        digest: image?.digest,
        mediaType: OCI_MANIFEST,
        platform: { os: "linux", architecture: "amd64" },
        annotations: json.annotations,
      });
      expect(one?.annotations?.["org.opencontainers.image.revision"]).toBe(ref("multiarch-presto"));
      expect(one?.annotations?.["org.opencontainers.image.version"]).toBe(TAG);
    }
  });

  it("the arm build arriving later: each index gains the arm entry and keeps the x86 one", async () => {
    const before = await index("presto-coordinator");
    const arm = await daemon("linux/arm64");
    expect(arm.code, arm.stderr).toBe(0);
    for (const repo of REPOS) {
      const both = await index(repo);
      expect(both?.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`)).toEqual([
        "linux/amd64",
        "linux/arm64",
      ]);
      const armImage = await manifest(`arm/${repo}`, TAG);
      expect(both?.manifests[1]?.digest).toBe(armImage?.digest);
      expect(both?.manifests[1]?.annotations?.["org.opencontainers.image.description"]).toContain(
        `platform linux/arm64, bundle single, run ${builds.arm.id}`,
      );
      // Shared across both builds: kept on the index; the newer `created` of the two.
      expect(both?.annotations).toMatchObject({
        "org.opencontainers.image.created": "2025-11-05T11:30:00Z",
        "org.opencontainers.image.source": "https://github.com/prestodb/presto",
        "org.opencontainers.image.version": TAG,
      });
      expect(both?.annotations?.["org.opencontainers.image.url"]).toBeUndefined();
    }
    expect((await index("presto-coordinator"))?.manifests[0]).toEqual(before?.manifests[0]);

    // Every image is in GitLab and no tag is unaccounted for: an index is not an "extra".
    const xref = await cli(["xref", "--list-extra", "--json", ...tb.githubArgs, ...tb.gitlabArgs]);
    const seen = JSON.parse(xref.stdout) as { missing: unknown[]; extra: string[] };
    expect(seen.missing).toEqual([]);
    expect(seen.extra).toEqual([]);

    // Nothing new: the indexes are left as they are.
    const digest = (await manifest("presto-coordinator", TAG))?.digest;
    const again = await daemon("linux/arm64");
    expect(again.code, again.stderr).toBe(0);
    expect((await manifest("presto-coordinator", TAG))?.digest).toBe(digest);
  });

  it("--multiarch-index turned on later writes the index of a build already in GitLab without a download; push --multiarch-index merges into it", async () => {
    const late = {
      x86: { id: 7003, platform: "linux/amd64", refs: "multiarch-late" },
      arm: { id: 7004, platform: "linux/arm64", refs: "multiarch-late" },
    } satisfies Record<string, Build>;
    const lateTag = tagOf(late.x86);
    for (const b of [late.x86, late.arm]) await add(b);
    const dir = path.join(work, "late-x86");
    const x86Daemon = (extra: string[]) =>
      cli([
        "daemon",
        "--once",
        "--platform",
        "linux/amd64",
        "--engine",
        "registry",
        "--downloads-dir",
        dir,
        "--limit",
        "50",
        ...tb.githubArgs,
        ...tb.gitlabArgs,
        ...tb.registryArgs,
        ...extra,
      ]);
    const plain = await x86Daemon([]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(await manifest("presto-coordinator", lateTag)).toBeUndefined();

    tb.github.resetRequests();
    const turnedOn = await x86Daemon(["--multiarch-index"]);
    expect(turnedOn.code, turnedOn.stderr).toBe(0);
    expect(tb.github.requests.filter((r) => r.host === "blob")).toEqual([]);
    for (const repo of REPOS) {
      const one = await index(repo, lateTag);
      expect(one?.manifests.map((m) => m.platform.architecture)).toEqual(["amd64"]);
      expect(one?.manifests[0]?.annotations?.["org.opencontainers.image.url"]).toBe(
        runUrl(late.x86),
      );
    }

    const pushed = await pushByHand(late.arm, "registry");
    expect(pushed.stdout).toContain("Writing multi-arch indexes ...");
    expect(pushed.stdout).toContain(
      `  multi-arch ${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/presto-coordinator:${lateTag}: linux/amd64, linux/arm64\n    index sha256:`,
    );
    for (const repo of REPOS) {
      const both = await index(repo, lateTag);
      expect(both?.manifests.map((m) => m.platform.architecture)).toEqual(["amd64", "arm64"]);
    }
  });

  it("an index that cannot be written fails the build with one clear line; the next cycles retry the index alone, with back-off", async () => {
    const wrong = {
      x86: { id: 7009, platform: "linux/amd64", refs: "multiarch-wrong" },
      // The arm run built amd64 images.
      arm: { id: 7010, platform: "linux/arm64", refs: "multiarch-wrong", architecture: "amd64" },
    } satisfies Record<string, Build>;
    for (const b of [wrong.x86, wrong.arm]) await add(b);
    try {
      await wrongBuild(wrong);
    } finally {
      // Out of the way of the tests that follow.
      for (const b of [wrong.x86, wrong.arm]) tb.github.removeRun(b.id);
    }
  });

  async function wrongBuild(wrong: { x86: Build; arm: Build }): Promise<void> {
    expect((await daemon("linux/amd64")).code).toBe(0);
    const backoff = ["--retry-backoff", "600"];
    const failed = await daemon("linux/arm64", backoff);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(
      new RegExp(
        `x86/presto-coordinator:${tagOf(wrong.x86)} and \\S+/arm/presto-coordinator:${tagOf(wrong.x86)} are both linux/amd64 images`,
      ),
    );
    expect(failed.stderr).toContain(`${imageTagOf(wrong.arm)}: index failed: `);
    // The images are in and their download is gone; only the index is left, retried after the
    // back-off, never downloaded again.
    for (const t of gitlabTagsOf(wrong.arm)) expect(await gitlabTags(tb)).toContain(t);
    expect(existsSync(path.join(work, "linux-arm64", imageTagOf(wrong.arm)))).toBe(false);
    tb.github.resetRequests();
    const waiting = await daemon("linux/arm64", backoff);
    expect(waiting.code).toBe(1);
    // Within the back-off: not tried again.
    expect(waiting.stderr).toMatch(/"summary":\{[^}]*"failed":0,"deferred":1/);
    const retried = await daemon("linux/arm64", [...backoff, "--retry-now"]);
    expect(retried.code).toBe(1);
    expect(retried.stderr).toContain(`${imageTagOf(wrong.arm)}: index failed: `);
    expect(tb.github.requests.filter((r) => r.host === "blob")).toEqual([]);
    const status = await cli([
      "status",
      "--json",
      "--downloads-dir",
      path.join(work, "linux-arm64"),
    ]);
    const failures = (
      JSON.parse(status.stdout) as { failures: Array<{ image_tag: string; attempts: number }> }
    ).failures;
    expect(failures).toEqual([
      expect.objectContaining({ image_tag: imageTagOf(wrong.arm), attempts: 2 }),
    ]);
    // The x86 index is left as it was: one good entry.
    expect((await index("presto-coordinator", tagOf(wrong.x86)))?.manifests).toHaveLength(1);
  }

  it("a daemon killed between pushing its images and writing the index: the next cycle finds the index one platform short and repairs it", async () => {
    const pair = {
      x86: { id: 7011, platform: "linux/amd64", refs: "multiarch-killed" },
      arm: { id: 7012, platform: "linux/arm64", refs: "multiarch-killed" },
    } satisfies Record<string, Build>;
    const tag = tagOf(pair.x86);
    for (const b of [pair.x86, pair.arm]) await add(b);
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const front = new CuttingProxy({ host, port: Number(port) });
    await front.start();
    try {
      expect((await daemon("linux/amd64")).code).toBe(0);
      // The arm daemon goes through a front that holds its first index write: it is killed
      // there, its images pushed and the index still x86 alone.
      const indexWrite = new RegExp(
        `^/v2/${testbed.PROJECT_PATH}/presto-[a-z-]+/manifests/${tag}$`,
      );
      let reached: () => void = () => undefined;
      const held = new Promise<void>((resolve) => (reached = resolve));
      front.hold({
        match: (r) => r.method === "PUT" && indexWrite.test(r.path),
        release: new Promise(() => undefined),
        onHeld: () => reached(),
      });
      const killed = startBinary(
        [...daemonCommand("linux/arm64"), "--registry", front.host, "--log-format", "json"],
        { env: tb.env, cwd: work, timeoutMs: 240_000 },
      );
      await held;
      killed.child.kill("SIGKILL");
      await killed.result;
      for (const repo of REPOS) {
        expect(await manifest(`arm/${repo}`, tag)).toBeDefined();
        const short = await index(repo, tag);
        expect(short?.manifests.map((m) => m.platform.architecture)).toEqual(["amd64"]);
      }

      const next = await daemon("linux/arm64");
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).toContain(
        `${imageTagOf(pair.arm)}: the indexes presto-coordinator:${tag}, presto-native-worker-cpu:${tag} lack an image the registry holds; writing again`,
      );
      for (const repo of REPOS) {
        const both = await index(repo, tag);
        expect(both?.manifests.map((m) => m.platform.architecture)).toEqual(["amd64", "arm64"]);
        expect(both?.manifests[1]?.digest).toBe((await manifest(`arm/${repo}`, tag))?.digest);
      }
      // Checked once and found whole: the cycle after that writes nothing.
      const digest = (await manifest("presto-coordinator", tag))?.digest;
      expect((await daemon("linux/arm64")).code).toBe(0);
      expect((await manifest("presto-coordinator", tag))?.digest).toBe(digest);
    } finally {
      await front.stop();
      for (const b of [pair.x86, pair.arm]) tb.github.removeRun(b.id);
    }
  });

  it.each([
    ["DIGEST_INVALID", 7013],
    ["MANIFEST_UNKNOWN", 7015],
  ])(
    "two daemons, one per platform, writing one index at once: the write the registry answers %s is read again and merged; both succeed",
    async (code, id) => {
      const pair = {
        x86: { id, platform: "linux/amd64", refs: `multiarch-race-${id}` },
        arm: { id: id + 1, platform: "linux/arm64", refs: `multiarch-race-${id}` },
      } satisfies Record<string, Build>;
      const tag = tagOf(pair.x86);
      for (const b of [pair.x86, pair.arm]) await add(b);
      const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
      const front = new CuttingProxy({ host, port: Number(port) });
      await front.start();
      // The first index write (whichever daemon's) waits at the front until the other daemon's
      // write of the same index arrives; the other goes through, and the first is answered as
      // Distribution answers a write whose child it read while the other writer rewrote it.
      const path = `/v2/${testbed.PROJECT_PATH}/presto-coordinator/manifests/${tag}`;
      const isWrite = (r: FrontRequest) => r.method === "PUT" && r.path === path;
      let first: FrontRequest | undefined;
      let second: () => void = () => undefined;
      front.hold({
        match: isWrite,
        release: new Promise<void>((resolve) => (second = resolve)),
        onHeld: (r) => (first = r),
      });
      front.hold({ match: isWrite, release: Promise.resolve(), onHeld: () => second() });
      front.intercept({
        match: (r) => r === first,
        answer: { status: 400, body: registryErrorBody(code, `${code} while rewritten`) },
      });
      try {
        const viaFront = ["--registry", front.host];
        const [x86, arm] = await Promise.all([
          daemon("linux/amd64", viaFront),
          daemon("linux/arm64", viaFront),
        ]);
        expect(front.intercepted.map((r) => r.path)).toEqual([path]);
        expect(x86.code, x86.stderr).toBe(0);
        expect(arm.code, arm.stderr).toBe(0);
        expect(`${x86.stderr}${arm.stderr}`).toContain(
          `presto-coordinator:${tag}: the registry answered ${code} while another writer may be at it; reading it again`,
        );
        for (const repo of REPOS) {
          const both = await index(repo, tag);
          expect(both?.manifests.map((m) => m.platform.architecture)).toEqual(["amd64", "arm64"]);
        }
      } finally {
        await front.stop();
        for (const b of [pair.x86, pair.arm]) tb.github.removeRun(b.id);
      }
    },
  );

  it("retag copies an index with its manifests: latest and another repository point at both platforms", async () => {
    const source = await manifest("presto-coordinator", TAG);
    const latest = await cli([
      "retag",
      `presto-coordinator:${TAG}`,
      "latest",
      ...tb.gitlabArgs,
      ...tb.registryArgs,
    ]);
    expect(latest.code, latest.stderr).toBe(0);
    expect((await manifest("presto-coordinator", "latest"))?.digest).toBe(source?.digest);

    const copy = await cli([
      "retag",
      `presto-coordinator:${TAG}`,
      "mirror/presto-coordinator:both",
      ...tb.gitlabArgs,
      ...tb.registryArgs,
    ]);
    expect(copy.code, copy.stderr).toBe(0);
    const copied = await index("mirror/presto-coordinator", "both");
    expect(copied).toEqual(source?.json);
    for (const entry of copied?.manifests ?? []) {
      expect((await manifest("mirror/presto-coordinator", entry.digest))?.digest).toBe(
        entry.digest,
      );
    }
  });

  describe.skipIf(dockerGate.skip)(`pulled by a real dockerd ${dockerGate.reason}`, () => {
    let dockerd: Dockerd;
    beforeAll(async () => {
      dockerd = await startDockerd();
    }, 120_000);
    afterAll(async () => {
      await dockerd?.stop();
    });

    it("docker pull --platform linux/amd64 and linux/arm64 of the one tag each get their own image", async () => {
      const docker = new Dockerode({ socketPath: dockerd.socket });
      for (const b of [builds.arm, builds.x86]) {
        for (const repo of REPOS) {
          const reference = `${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/${repo}:${TAG}`;
          const pulled = await pullAs(docker, reference, b.platform, tb.gitlab.registryHost);
          expect(pulled.Id).toBe(await configOf(b, repo));
          expect(`${pulled.Os}/${pulled.Architecture}`).toBe(b.platform);
        }
      }
    });

    it("an x86 image pushed by dockerd (its own schema 2 manifest, no annotations) and an arm one by the registry engine share one index; each platform pulls", async () => {
      const pair = {
        x86: { id: 7005, platform: "linux/amd64", refs: "multiarch-docker", variant: "java" },
        arm: { id: 7006, platform: "linux/arm64", refs: "multiarch-docker", variant: "java" },
      } satisfies Record<string, Build>;
      for (const b of [pair.x86, pair.arm]) await add(b);
      await pushByHand(pair.x86, "docker", { DOCKER_HOST: dockerd.dockerHost });
      const arm = await daemon("linux/arm64");
      expect(arm.code, arm.stderr).toBe(0);

      const both = await index("presto-coordinator", tagOf(pair.x86));
      expect(both?.manifests.map((m) => m.mediaType)).toEqual([
        "application/vnd.docker.distribution.manifest.v2+json",
        OCI_MANIFEST,
      ]);
      // dockerd took no annotations, but the index entry knows which run built its image.
      expect(both?.manifests[0]?.annotations?.["org.opencontainers.image.url"]).toBe(
        runUrl(pair.x86),
      );
      const docker = new Dockerode({ socketPath: dockerd.socket });
      const reference = `${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/presto-coordinator:${tagOf(pair.x86)}`;
      for (const b of [pair.arm, pair.x86]) {
        const pulled = await pullAs(docker, reference, b.platform, tb.gitlab.registryHost);
        expect(pulled.Id).toBe(await configOf(b, "presto-coordinator"));
      }
    });
  });
});
