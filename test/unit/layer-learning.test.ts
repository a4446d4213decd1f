/**
 * What the registry teaches the layer cache (issue 24), without a registry: which pairs an
 * image's manifest and config may teach, how the cache keeps them apart from its own, and a
 * learned pair that turns out wrong.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/report/logger.js";
import type { RegistryClient } from "../../src/registry/client.js";
import { findInRegistry } from "../../src/registry/image-writer.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { layerPairs } from "../../src/registry/layer-learning.js";
import {
  DOCKER_LAYER,
  DOCKER_LAYER_GZIP,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD,
} from "../../src/registry/media-types.js";
import { tempDir } from "./helpers.js";

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const REGISTRY = "registry.example:5005";

describe("layerPairs", () => {
  it("pairs each layer with the diff-id at its place, in the cache's Docker names", () => {
    const pairs = layerPairs(
      [
        { mediaType: OCI_LAYER_GZIP, digest: digest("a"), size: 10 },
        { mediaType: DOCKER_LAYER_GZIP, digest: digest("b"), size: 20 },
        { mediaType: OCI_LAYER, digest: digest("3"), size: 30 },
      ],
      [digest("1"), digest("2"), digest("3")],
    );
    expect(pairs).toEqual([
      [digest("1"), { digest: digest("a"), size: 10, mediaType: DOCKER_LAYER_GZIP, learned: true }],
      [digest("2"), { digest: digest("b"), size: 20, mediaType: DOCKER_LAYER_GZIP, learned: true }],
      [digest("3"), { digest: digest("3"), size: 30, mediaType: DOCKER_LAYER, learned: true }],
    ]);
  });

  it("teaches nothing from an image whose manifest and config disagree", () => {
    const layer = { mediaType: DOCKER_LAYER_GZIP, digest: digest("a"), size: 1 };
    expect(layerPairs([layer], [digest("1"), digest("2")])).toMatch(/1 layer\(s\) but 2/);
    expect(layerPairs([{ ...layer, mediaType: OCI_LAYER_ZSTD }], [digest("1")])).toMatch(/zstd/);
    expect(layerPairs([{ ...layer, mediaType: "text/plain" }], [digest("1")])).toMatch(/text/);
    // An uncompressed layer's blob is its diff-id, or the pair is a lie.
    expect(layerPairs([{ ...layer, mediaType: DOCKER_LAYER }], [digest("1")])).toMatch(
      /not the diff-id/,
    );
  });
});

describe("the layer cache and learned pairs", () => {
  it("keeps its own pair over a learned one, proves a learned one by a push, and saves both", async () => {
    const dir = await tempDir("layer-learning-");
    const file = path.join(dir, "registry-layers.json");
    const cache = await LayerCache.open(file);
    const own = { digest: digest("a"), size: 10, mediaType: DOCKER_LAYER_GZIP };
    cache.record(digest("1"), own, REGISTRY, "p/x86/coordinator");
    // Another compression of the same layer in the registry: this host's own stays.
    const other = { digest: digest("b"), size: 11, mediaType: DOCKER_LAYER_GZIP };
    expect(cache.learn(digest("1"), other, REGISTRY, "p/x86/worker")).toBe(false);
    expect(cache.get(digest("1"))).toEqual(own);
    expect(cache.learnedFrom(REGISTRY)).toBe(false);

    expect(cache.learn(digest("2"), other, REGISTRY, "p/x86/worker")).toBe(true);
    expect(cache.get(digest("2"))).toEqual({ ...other, learned: true });
    expect(cache.repositoriesWith(digest("2"), REGISTRY)).toEqual(["p/x86/worker"]);
    expect(cache.learnedFrom(REGISTRY)).toBe(true);
    expect(cache.learnedFrom("elsewhere:5000")).toBe(false);
    cache.recordLearned(REGISTRY, "p/x86/worker", digest("f"));
    await cache.save();

    const again = await LayerCache.open(file);
    expect(again.get(digest("2"))).toEqual({ ...other, learned: true });
    expect(again.hasLearned(REGISTRY, "p/x86/worker", digest("f"))).toBe(true);
    expect(again.hasLearned(REGISTRY, "p/x86/coordinator", digest("f"))).toBe(false);
    // Found in the registry by this host: no longer only learned.
    again.record(digest("2"), other, REGISTRY, "p/x86/coordinator");
    expect(again.get(digest("2"))).toEqual(other);
    expect(JSON.parse(await readFile(file, "utf8"))).toHaveProperty("learnedImages");
  });

  it("drops a learned pair whose blob is not the size it was said to be, so the layer is sent", async () => {
    const cache = LayerCache.inMemory();
    const learned = { digest: digest("b"), size: 11, mediaType: DOCKER_LAYER_GZIP };
    cache.learn(digest("2"), learned, REGISTRY, "p/x86/worker");
    const asked: string[] = [];
    const mounted = new Set<string>();
    const client = {
      registry: REGISTRY,
      blobSize: (repository: string, blob: string) => {
        asked.push(`HEAD ${repository} ${blob}`);
        const holds = mounted.has(repository) || repository === "p/x86/worker";
        return Promise.resolve(holds ? 999 : undefined);
      },
      mountBlob: (repository: string, blob: string, from: string) => {
        asked.push(`MOUNT ${repository} ${blob} ${from}`);
        mounted.add(repository);
        return Promise.resolve(true);
      },
    } as unknown as RegistryClient;
    const target = { client, cache, logger: silentLogger(), repository: "p/x86/coordinator" };
    expect(await findInRegistry(target, digest("2"))).toBeUndefined();
    expect(cache.get(digest("2"))).toBeUndefined();
    expect(asked).toEqual([
      `HEAD p/x86/coordinator ${digest("b")}`,
      `MOUNT p/x86/coordinator ${digest("b")} p/x86/worker`,
      `HEAD p/x86/coordinator ${digest("b")}`,
    ]);
  });
});
