/**
 * GitLab as the layer cache (issue 24): a host with no state of its own (empty downloads and
 * state directory) pushes a build whose base layer the registry already holds from the build
 * before, and sends only the build's own layers — as a host that kept the earlier build's state
 * does. Both `docker save` layouts, the streaming sync and the step-by-step push. Bytes are
 * counted at a front in front of the registry, whatever the tool says of itself.
 */
import { readdir, rm } from "node:fs/promises";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { silentLogger } from "../../src/report/logger.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { learnFromRegistry } from "../../src/registry/layer-learning.js";
import { DOCKER_LAYER_GZIP } from "../../src/registry/media-types.js";
import { addArtifactRun, type ArtifactFixtureOptions } from "../testbed/artifacts.js";
import { CuttingProxy } from "../testbed/cutting-proxy.js";
import {
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  startTestbed,
  testbedRegistryClient,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import type { AccessLogEntry } from "../testbed/registry.js";
import { makeMetadata } from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { runBinary } from "./run-cli.js";

const gate = testbedGate();
const REPOS = ["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"];
const BASE_BYTES = 2 << 20;
const OWN_BYTES = 192 << 10;

type Layout = "legacy" | "oci";
type Path = "sync" | "push";

/** Build `n` of a family: every build of one family shares its (large) base layer and Presto ref. */
function metadataOf(family: number, n: number): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`learn-${family}`),
    veloxRef: ref(`learn-v-${family}-${n}`),
    platform: "linux/amd64",
    mode: "all_native",
  });
}
const tagOf = (family: number, n: number) => metadataOf(family, n)["Image tag"] ?? "";

const blobCommits = (log: AccessLogEntry[]) =>
  log
    .filter((e) => e.method === "PUT" && decodeURIComponent(e.path).includes("digest=sha256:"))
    .map((e) => /digest=(sha256:[0-9a-f]{64})/.exec(decodeURIComponent(e.path))?.[1] ?? "");

describe.skipIf(gate.skip)(`GitLab as the layer cache ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let front: CuttingProxy;
  let families = 0;

  const cli = (args: string[]) =>
    runBinary([...args, "--log-format", "json"], {
      env: { ...tb.env, HOME: path.join(work, "home"), DOCKER_HOST: undefined },
      cwd: work,
      timeoutMs: 120_000,
    });
  const common = (downloads: string) => [
    "--downloads-dir",
    downloads,
    ...tb.githubArgs,
    ...tb.gitlabArgs,
    "--registry",
    front.host,
    "--registry-username",
    REGISTRY_USER,
    "--registry-password",
    REGISTRY_PASSWORD,
    "--limit",
    "100",
  ];

  /** The last lines of the push of a build by `pushBuild`. */
  let said = "";

  /** Pushes a build by `path` from `downloads`; the bytes its requests carried to the registry. */
  async function pushBuild(family: number, n: number, how: Path, downloads: string) {
    const tag = tagOf(family, n);
    front.resetCounts();
    if (how === "sync") {
      const done = await cli(["sync", tag, ...common(downloads), "--engine", "registry", "--yes"]);
      expect(done.code, done.stderr).toBe(0);
      said = done.stdout;
    } else {
      const fetched = await cli(["download", tag, "--output-dir", downloads, ...tb.githubArgs]);
      expect(fetched.code, fetched.stderr).toBe(0);
      const prepared = await cli(["prepare", tag, "--downloads-dir", downloads]);
      expect(prepared.code, prepared.stderr).toBe(0);
      const pushed = await cli([
        "push",
        tag,
        ...common(downloads),
        "--engine",
        "registry",
        "--yes",
      ]);
      expect(pushed.code, pushed.stderr).toBe(0);
      said = pushed.stdout;
    }
    return front.bodyBytes;
  }

  /** A family of builds sharing one base layer, in one layout, served by the GitHub stand-in. */
  async function family(layout: Layout, builds: number): Promise<number> {
    families += 1;
    const id = families;
    for (let n = 1; n <= builds; n += 1) {
      const fixture: Omit<ArtifactFixtureOptions, "dir" | "metadata"> = {
        baseLayer: { sizeBytes: BASE_BYTES, seed: 1000 + id },
        layerBytes: OWN_BYTES,
        layerSeed: (id * 10 + n) * 100,
        ociRepos: layout === "oci" ? REPOS : [],
      };
      await addArtifactRun(tb.github, {
        id: 9000 + id * 10 + n,
        metadata: metadataOf(id, n),
        dir: path.join(work, "fixtures", `${id}-${n}`),
        createdAt: new Date(Date.UTC(2025, 10, 5) + (id * 10 + n) * 60_000)
          .toISOString()
          .replace(".000Z", "Z"),
        fixture,
      });
    }
    return id;
  }

  /** Every blob digest the registry stores now. */
  async function storedBlobs(): Promise<Set<string>> {
    const root = path.join(tb.gitlab.registry.storageDir, "docker/registry/v2/blobs/sha256");
    const found = new Set<string>();
    for (const prefix of await readdir(root).catch(() => [] as string[])) {
      for (const hex of await readdir(path.join(root, prefix))) found.add(`sha256:${hex}`);
    }
    return found;
  }

  beforeAll(async () => {
    tb = await startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-learn-"));
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    front = new CuttingProxy({ host, port: Number(port) });
    await front.start();
  });
  afterAll(async () => {
    await front?.stop();
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const layout of ["legacy", "oci"] as const) {
    it(`${layout} layout: a cold host's sync and step-by-step push of the next build send what a warm host sends`, async () => {
      // The warm host: build 1, then build 2 with build 1's state kept.
      const warmFamily = await family(layout, 2);
      const warmDir = path.join(work, `warm-${layout}`);
      await pushBuild(warmFamily, 1, "sync", warmDir);
      const warm = await pushBuild(warmFamily, 2, "sync", warmDir);
      // Its own three layers and three configs, not the base.
      expect(warm).toBeGreaterThan(3 * OWN_BYTES);
      expect(warm).toBeLessThan(BASE_BYTES);

      for (const how of ["sync", "push"] as const) {
        const id = await family(layout, 2);
        await pushBuild(id, 1, "sync", path.join(work, `first-${layout}-${how}`));
        const held = await storedBlobs();
        const mark = tb.gitlab.registry.accessLog().length;
        // Another host, nothing of its own: empty downloads and state directory.
        const cold = await pushBuild(id, 2, how, path.join(work, `cold-${layout}-${how}`));
        expect(cold, `${how}: ${cold} bytes against the warm host's ${warm}`).toBeLessThanOrEqual(
          warm * 1.05,
        );
        const sentAgain = blobCommits(tb.gitlab.registry.accessLog().slice(mark)).filter((d) =>
          held.has(d),
        );
        expect(sentAgain, `${how}: blobs the registry held, uploaded again`).toEqual([]);
        // Each image's line says how many of its layers the registry's own images taught.
        expect(said).toMatch(
          /pushed .*1 layer sent, 1 reused \(1 known from the registry's images\)/,
        );
      }
    });
  }

  it("a cold daemon --once counts the layers the registry taught, and status --json shows them", async () => {
    const id = await family("oci", 2);
    await pushBuild(id, 1, "sync", path.join(work, "daemon-first"));
    const downloads = path.join(work, "daemon-cold");
    const once = await cli(["daemon", "--once", ...common(downloads), "--engine", "registry"]);
    expect(once.code, once.stderr).toBe(0);
    const status = await cli(["status", "--downloads-dir", downloads, "--json"]);
    expect(status.code, status.stderr).toBe(0);
    const cycle = (JSON.parse(status.stdout) as { last_cycle: Record<string, number> }).last_cycle;
    // The base, found through build 1's images by the first image; its siblings mount it from
    // that one, as they would a base this host had sent.
    expect(cycle.pushed).toBe(3);
    expect(cycle.layers_from_registry).toBe(1);
    const text = await cli(["status", "--downloads-dir", downloads]);
    expect(text.stdout).toContain("1 layer(s) not sent: the registry's own images held them");
  });

  it("learns from an image only when its manifest and config agree, and never reads one twice", async () => {
    const id = await family("oci", 1);
    await pushBuild(id, 1, "sync", path.join(work, "agree"));
    const client = testbedRegistryClient(tb);
    const repository = `${PROJECT_PATH}/x86/presto-learn-disagree`;
    const gitlabTag = tagOf(id, 1).replace(/-linux-amd64$/, "");
    const good = await client.getManifest(`${PROJECT_PATH}/x86/presto-coordinator`, gitlabTag);
    const manifest = JSON.parse(good?.bytes.toString() ?? "{}") as {
      config: { digest: string; size: number };
      layers: Array<{ digest: string; size: number; mediaType: string }>;
    };
    // The same blobs in another repository, under a manifest that lists one layer fewer than
    // its config's diff-ids: it teaches nothing.
    const from = `${PROJECT_PATH}/x86/presto-coordinator`;
    for (const digest of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      expect(await client.mountBlob(repository, digest, from)).toBe(true);
    }
    const mediaType = good?.mediaType ?? "";
    const short = { ...manifest, layers: manifest.layers.slice(1) };
    await client.putManifest(repository, "short", Buffer.from(JSON.stringify(short)), mediaType);
    const cache = LayerCache.inMemory();
    const learn = () =>
      learnFromRegistry({
        client,
        cache,
        logger: silentLogger(),
        repositories: [repository],
        tag: "short",
      });
    expect(await learn()).toEqual({ images: 1, learned: 0, refused: 1 });
    expect(cache.knownLayers()).toBe(0);

    // The agreeing image teaches every pair, once.
    await client.putManifest(repository, "whole", good?.bytes ?? Buffer.alloc(0), mediaType);
    const taught = await learn();
    expect(taught).toEqual({ images: 1, learned: manifest.layers.length, refused: 0 });
    // In the cache's own (Docker) names, whatever the manifest called them.
    const config = JSON.parse(
      (await client.getVerifiedBlob(repository, manifest.config.digest, 1 << 20)).toString(),
    ) as { rootfs: { diff_ids: string[] } };
    for (const [i, diffId] of config.rootfs.diff_ids.entries()) {
      expect(cache.get(diffId)).toEqual({
        digest: manifest.layers[i]?.digest,
        size: manifest.layers[i]?.size,
        mediaType: DOCKER_LAYER_GZIP,
        learned: true,
      });
    }
    expect(await learn()).toEqual({ images: 0, learned: 0, refused: 0 });
  });
});
