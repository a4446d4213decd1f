import { z } from "zod";
import { describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import { MiB } from "../util/bytes.js";
import { parseJsonBytes } from "../util/text.js";
import type { RegistryClient } from "./client.js";
import type { CachedLayer, LayerCache } from "./layer-cache.js";
import {
  DOCKER_LAYER,
  DOCKER_LAYER_GZIP,
  IMAGE_MANIFESTS,
  OCI_LAYER,
  OCI_LAYER_GZIP,
} from "./media-types.js";

/**
 * GitLab as the layer cache. Each image a registry holds says which compressed blob holds which
 * layer: its manifest lists the layer blobs in order, its config's `rootfs.diff_ids` the
 * uncompressed digests in the same order. Read back (two small GETs an image), those pairs go
 * into the {@link LayerCache}, so a host with no state of its own — a fresh CI job, a new volume,
 * the second daemon of a platform split — finds a base layer the registry already holds by its
 * diff-id and references it (HEAD, or a mount from a sibling) instead of compressing and sending
 * it again.
 *
 * Trusted is what `docker pull` trusts: the registry's own record of what its blobs hold (and
 * `docker pull` then checks each layer against the config as it extracts). Here an image teaches
 * only when its manifest and config agree (as many layers as diff-ids, every layer of a type this
 * tool writes: gzip, or uncompressed with the blob digest equal to the diff-id), the config's
 * bytes match its digest, and a learned blob is checked for its size before a push relies on it
 * (image-writer.ts `findInRegistry`); the manifest a push writes is always its own.
 */

export interface LearnOptions {
  client: RegistryClient;
  cache: LayerCache;
  logger: Logger;
  /** The repositories to learn from: the one pushed to first, then its siblings of the bundle. */
  repositories: readonly string[];
  /** The tag being pushed: tags sharing the longest start with it are read first (same refs). */
  tag: string;
  /** Images read at most in one call; default {@link DEFAULT_MAX_IMAGES}. */
  maxImages?: number;
  signal?: AbortSignal | undefined;
}

export interface LearnResult {
  /** Registry images whose manifest and config were read. */
  images: number;
  /** diff-id → blob pairs the cache did not know before. */
  learned: number;
  /** Images read that taught nothing (manifest and config disagree, or a layer type not accepted). */
  refused: number;
}

/** A few kilobytes an image; enough to find a bundle's base in the last builds of its repositories. */
export const DEFAULT_MAX_IMAGES = 8;
/** Tags looked at per repository: a listing is one request, whatever its length. */
const TAGS_LISTED = 1000;
/** An image config is kilobytes; a registry answering with more is not sending a config. */
const CONFIG_LIMIT = 4 * MiB;

/** Layer media types whose blobs this tool writes or references, in the cache's (Docker) names. */
const ACCEPTED_LAYERS: Record<string, string> = {
  [DOCKER_LAYER_GZIP]: DOCKER_LAYER_GZIP,
  [OCI_LAYER_GZIP]: DOCKER_LAYER_GZIP,
  [DOCKER_LAYER]: DOCKER_LAYER,
  [OCI_LAYER]: DOCKER_LAYER,
};

const DIGEST = z.string().regex(/^sha256:[0-9a-f]{64}$/);
const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  config: z.object({ digest: DIGEST }),
  layers: z.array(
    z.object({ mediaType: z.string(), digest: DIGEST, size: z.number().int().nonnegative() }),
  ),
});
const configSchema = z.object({
  rootfs: z.object({ type: z.literal("layers"), diff_ids: z.array(DIGEST) }),
});

/**
 * Learns the layers of up to `maxImages` images the repositories hold that the cache has not
 * read before: the tags most like `tag` first (a build of the same Presto ref shares its layers),
 * then the rest. A failure to read is logged and passed over (it counts as read, so a registry
 * that fails every read costs the budget and no more): learning only saves work, so it never
 * fails a push, except when it is stopped.
 */
export async function learnFromRegistry(options: LearnOptions): Promise<LearnResult> {
  const result: LearnResult = { images: 0, learned: 0, refused: 0 };
  const budget = options.maxImages ?? DEFAULT_MAX_IMAGES;
  if (budget <= 0) return result;
  for (const { repository, tag } of await candidates(options)) {
    if (result.images >= budget) break;
    let taught: number | undefined;
    try {
      taught = await learnImage(options, repository, tag);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      options.logger.debug(
        { repository, tag, err: describeError(err) },
        "could not read a registry image for its layers",
      );
      taught = -1;
    }
    if (taught === undefined) continue;
    result.images += 1;
    if (taught < 0) result.refused += 1;
    else result.learned += taught;
  }
  if (result.images > 0) {
    options.logger.info(
      { ...result, repositories: options.repositories },
      `learned ${result.learned} layer(s) from ${result.images} image(s) in the registry`,
    );
  }
  return result;
}

/** (repository, tag) pairs to read, most promising first. */
async function candidates(
  options: LearnOptions,
): Promise<Array<{ repository: string; tag: string; order: number }>> {
  const found: Array<{ repository: string; tag: string; order: number }> = [];
  for (const [rank, repository] of options.repositories.entries()) {
    let tags: string[] = [];
    try {
      tags = await options.client.listTags(repository, TAGS_LISTED, options.signal);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      options.logger.warn(
        { repository, err: describeError(err) },
        `could not list ${repository} to learn its layers; layers it holds may be sent again`,
      );
    }
    for (const tag of tags) found.push({ repository, tag, order: rank });
  }
  const shared = (tag: string) => commonPrefix(tag, options.tag);
  return found.sort((a, b) => shared(b.tag) - shared(a.tag) || a.order - b.order);
}

function commonPrefix(a: string, b: string): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n += 1;
  return n;
}

/**
 * Reads one image: the count of pairs it taught, -1 when it taught nothing (disagreeing or of a
 * type not accepted), `undefined` when it was not read (gone, a list, or already learned).
 */
async function learnImage(
  options: LearnOptions,
  repository: string,
  tag: string,
): Promise<number | undefined> {
  const { client, cache, signal } = options;
  const registry = client.registry;
  const digest = await client.manifestDigest(repository, tag, signal);
  if (!digest || cache.hasLearned(registry, repository, digest)) return undefined;
  const manifest = await client.getManifest(repository, digest, IMAGE_MANIFESTS, signal);
  if (!manifest || !IMAGE_MANIFESTS.includes(manifest.mediaType)) return undefined;
  cache.recordLearned(registry, repository, digest);
  const parsed = manifestSchema.safeParse(parseJsonBytes(manifest.bytes));
  if (!parsed.success) return refuse(options, repository, tag, "not an image manifest");
  // Every blob already known (an image this host pushed): its config would teach nothing.
  if (parsed.data.layers.every((layer) => cache.knowsBlob(layer.digest))) return 0;
  const configBytes = await client.getVerifiedBlob(
    repository,
    parsed.data.config.digest,
    CONFIG_LIMIT,
    signal,
  );
  const config = configSchema.safeParse(parseJsonBytes(configBytes));
  if (!config.success) return refuse(options, repository, tag, "its config names no layers");
  const pairs = layerPairs(parsed.data.layers, config.data.rootfs.diff_ids);
  if (typeof pairs === "string") return refuse(options, repository, tag, pairs);
  let learned = 0;
  for (const [diffId, layer] of pairs) {
    if (cache.learn(diffId, layer, registry, repository)) learned += 1;
  }
  return learned;
}

/** The image's diff-id → blob pairs, or why they cannot be trusted. */
export function layerPairs(
  layers: ReadonlyArray<{ mediaType: string; digest: string; size: number }>,
  diffIds: readonly string[],
): Array<[string, CachedLayer]> | string {
  if (layers.length !== diffIds.length) {
    return `${layers.length} layer(s) but ${diffIds.length} diff-id(s)`;
  }
  const pairs: Array<[string, CachedLayer]> = [];
  for (const [i, layer] of layers.entries()) {
    const diffId = diffIds[i] as string;
    const mediaType = ACCEPTED_LAYERS[layer.mediaType];
    if (!mediaType) return `layer ${i + 1} is ${layer.mediaType}`;
    if (mediaType === DOCKER_LAYER && layer.digest !== diffId) {
      return `uncompressed layer ${i + 1} is not the diff-id its config names`;
    }
    pairs.push([diffId, { digest: layer.digest, size: layer.size, mediaType, learned: true }]);
  }
  return pairs;
}

function refuse(options: LearnOptions, repository: string, tag: string, why: string): number {
  options.logger.debug({ repository, tag, why }, "a registry image taught nothing");
  return -1;
}
