import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SyncError } from "../../src/errors.js";
import type { FetchLike } from "../../src/net/http.js";
import { silentLogger } from "../../src/report/logger.js";
import { RegistryClient } from "../../src/registry/client.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { DOCKER_MANIFEST, OCI_INDEX } from "../../src/registry/media-types.js";
import { pushTarball, type PushResult } from "../testbed/push-tarball.js";
import { retag } from "../../src/registry/retag.js";
import {
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  startTestbed,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import { writeDockerSaveTarball } from "../testbed/image-fixtures.js";
import type { AccessLogEntry } from "../testbed/registry.js";

const gate = testbedGate();
const repo = (name: string): string => `${PROJECT_PATH}/${name}`;

/** Anything that moved blob bytes: uploads (POST without mount, PATCH, PUT) and blob reads. */
function blobTraffic(entries: AccessLogEntry[]): AccessLogEntry[] {
  return entries.filter(
    (e) =>
      e.method === "PATCH" ||
      (e.method === "PUT" && e.path.includes("/blobs/")) ||
      (e.method === "POST" && e.path.includes("/blobs/uploads") && !e.path.includes("mount=")) ||
      (e.method === "GET" && e.path.includes("/blobs/")),
  );
}

describe.skipIf(gate.skip)(`retag through the registry API ${gate.reason}`, () => {
  let tb: Testbed;
  let dir: string;
  let client: RegistryClient;
  let amd64: PushResult;
  let arm64: PushResult;
  const logger = silentLogger();
  const since = (mark: number): AccessLogEntry[] => tb.gitlab.registry.accessLog().slice(mark);

  beforeAll(async () => {
    tb = await startTestbed();
    dir = await mkdtemp(path.join(tmpdir(), "registry-retag-test-"));
    client = new RegistryClient({
      fetch: globalThis.fetch,
      registry: tb.gitlab.registryHost,
      username: REGISTRY_USER,
      password: REGISTRY_PASSWORD,
      logger,
      retry: { attempts: 2, baseDelayMs: 20, maxDelayMs: 50 },
    });
    const cache = LayerCache.inMemory();
    const push = async (arch: string, tag: string): Promise<PushResult> => {
      const image = await writeDockerSaveTarball(path.join(dir, `${arch}.tar.gz`), {
        repoTag: `presto-coordinator:${tag}`,
        layout: "legacy",
        gzip: true,
        architecture: arch,
        layers: [
          { files: { "etc/os-release": "ID=fixture\n" } },
          { sizeBytes: 256 << 10, seed: arch.length },
        ],
      });
      return pushTarball({
        client,
        tarball: image.file,
        repository: repo(`x86/presto-coordinator`),
        tag,
        cache,
        logger,
      });
    };
    amd64 = await push("amd64", "presto-1-velox-1");
    arm64 = await push("arm64", "presto-1-velox-1-arm64");
  });
  afterAll(async () => {
    await tb?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("tags latest within the repository without moving a blob", async () => {
    const mark = tb.gitlab.registry.accessLog().length;
    const result = await retag({
      client,
      sourceRepo: repo("x86/presto-coordinator"),
      sourceRef: "presto-1-velox-1",
      targetRepo: repo("x86/presto-coordinator"),
      targetTag: "latest",
      logger,
    });
    expect(result).toMatchObject({
      digest: amd64.manifestDigest,
      mediaType: DOCKER_MANIFEST,
      unchanged: false,
    });
    expect(await client.manifestDigest(repo("x86/presto-coordinator"), "latest")).toBe(
      amd64.manifestDigest,
    );
    expect(blobTraffic(since(mark))).toEqual([]);

    const again = await retag({
      client,
      sourceRepo: repo("x86/presto-coordinator"),
      sourceRef: "presto-1-velox-1",
      targetRepo: repo("x86/presto-coordinator"),
      targetTag: "latest",
      logger,
    });
    expect(again.unchanged).toBe(true);
  });

  it("copies to another repository by mounting: the same digest, no layer bytes", async () => {
    const mark = tb.gitlab.registry.accessLog().length;
    const result = await retag({
      client,
      sourceRepo: repo("x86/presto-coordinator"),
      sourceRef: amd64.manifestDigest,
      targetRepo: repo("release/presto-coordinator"),
      targetTag: "1.0",
      logger,
    });
    expect(result.digest).toBe(amd64.manifestDigest);
    expect(result.mountedBlobs).toBe(3);
    expect(result.copiedBlobs).toBe(0);
    const log = since(mark);
    expect(blobTraffic(log)).toEqual([]);
    expect(
      log.filter((e) => e.method === "POST" && e.path.includes("mount=") && e.status === 201),
    ).toHaveLength(3);
    const manifest = await client.getManifest(repo("release/presto-coordinator"), "1.0");
    expect(manifest?.digest).toBe(amd64.manifestDigest);
    const layers = JSON.parse(manifest?.bytes.toString() ?? "{}") as {
      layers: Array<{ digest: string }>;
    };
    for (const layer of layers.layers) {
      expect(await client.blobExists(repo("release/presto-coordinator"), layer.digest)).toBe(true);
    }
  });

  it("copies a multi-platform index with its child manifests", async () => {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          {
            mediaType: DOCKER_MANIFEST,
            digest: amd64.manifestDigest,
            size: await sizeOf(amd64),
            platform: { architecture: "amd64", os: "linux" },
          },
          {
            mediaType: DOCKER_MANIFEST,
            digest: arm64.manifestDigest,
            size: await sizeOf(arm64),
            platform: { architecture: "arm64", os: "linux" },
          },
        ],
      }),
    );
    const indexDigest = await client.putManifest(
      repo("x86/presto-coordinator"),
      "multi",
      index,
      OCI_INDEX,
    );
    const mark = tb.gitlab.registry.accessLog().length;
    const result = await retag({
      client,
      sourceRepo: repo("x86/presto-coordinator"),
      sourceRef: "multi",
      targetRepo: repo("multi/presto-coordinator"),
      targetTag: "multi",
      logger,
    });
    expect(result).toMatchObject({ digest: indexDigest, mediaType: OCI_INDEX });
    expect(blobTraffic(since(mark))).toEqual([]);
    for (const child of [amd64, arm64]) {
      const got = await client.getManifest(repo("multi/presto-coordinator"), child.manifestDigest);
      expect(got?.digest).toBe(child.manifestDigest);
    }
  });

  it("copies the blobs through itself when the registry will not mount them", async () => {
    // Without `mount`, the registry opens a plain upload session: what a refused mount looks like.
    const noMount: FetchLike = async (input, init) => {
      const url = new URL(String(input instanceof Request ? input.url : input));
      url.searchParams.delete("mount");
      url.searchParams.delete("from");
      return fetch(url, init);
    };
    const stubborn = new RegistryClient({
      registry: tb.gitlab.registryHost,
      username: REGISTRY_USER,
      password: REGISTRY_PASSWORD,
      logger,
      fetch: noMount,
    });
    const result = await retag({
      client: stubborn,
      sourceRepo: repo("x86/presto-coordinator"),
      sourceRef: "presto-1-velox-1-arm64",
      targetRepo: repo("copied/presto-coordinator"),
      targetTag: "arm",
      logger,
    });
    expect(result).toMatchObject({ digest: arm64.manifestDigest, mountedBlobs: 0, copiedBlobs: 3 });
    expect(await client.manifestDigest(repo("copied/presto-coordinator"), "arm")).toBe(
      arm64.manifestDigest,
    );
  });

  it("says clearly when the source does not exist", async () => {
    const error = await retag({
      client,
      sourceRepo: repo("x86/presto-coordinator"),
      sourceRef: "no-such-tag",
      targetRepo: repo("x86/presto-coordinator"),
      targetTag: "latest",
      logger,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SyncError);
    expect((error as SyncError).message).toBe(
      `source ${repo("x86/presto-coordinator")}:no-such-tag not found in registry ${tb.gitlab.registryHost}`,
    );
    expect((error as SyncError).hint).toMatch(/gitlab-list/);
    expect(await client.manifestDigest(repo("x86/presto-coordinator"), "latest")).toBe(
      amd64.manifestDigest,
    );
  });

  async function sizeOf(result: PushResult): Promise<number> {
    const manifest = await client.getManifest(
      repo("x86/presto-coordinator"),
      result.manifestDigest,
    );
    return manifest?.bytes.length ?? 0;
  }
});
