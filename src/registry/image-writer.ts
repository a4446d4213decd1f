import type { Logger } from "../report/logger.js";
import type { RegistryClient } from "./client.js";
import { imageManifest, type Descriptor } from "./image-manifest.js";
import type { CachedLayer, LayerCache } from "./layer-cache.js";
import { shortDigest } from "./media-types.js";

/**
 * The registry writer's dealings with one repository (image-push.ts): finding a layer the
 * registry can have without its bytes, naming what happened to each blob, and publishing the
 * image with its manifest.
 */

export type LayerAction = "uploaded" | "exists" | "mounted";

export interface PushedLayer {
  diffId: string;
  /** Digest of the compressed blob in the registry. */
  digest: string;
  size: number;
  mediaType: string;
  action: LayerAction;
  /** Referenced thanks to what the registry taught (layer-learning.ts), not this host's own pushes. */
  learned?: boolean;
}

/** One repository being written, and what is needed to talk about it. */
export interface RepositoryTarget {
  client: RegistryClient;
  /** Full repository path, e.g. `hercules/veloxtesting/x86/presto-coordinator`. */
  repository: string;
  cache: LayerCache;
  logger: Logger;
  signal?: AbortSignal | undefined;
  /** Repositories that may hold the same layers (the other images of a build): mount sources. */
  siblings?: string[] | undefined;
}

/**
 * Whether the registry can have the layer without its bytes: already in the repository, or
 * mountable from a repository the cache (or the caller) names. Needs the compressed digest,
 * which only the cache knows before the layer has been compressed.
 */
export async function findInRegistry(
  target: RepositoryTarget,
  diffId: string,
): Promise<PushedLayer | undefined> {
  const { client, cache, repository, signal } = target;
  const cached = cache.get(diffId);
  if (!cached) return undefined;
  const registry = client.registry;
  const held = await client.blobSize(repository, cached.digest, signal);
  if (held !== undefined) {
    if (!sizeHolds(target, diffId, cached, held)) return undefined;
    cache.record(diffId, cached, registry, repository);
    return pushedLayer(target, diffId, cached, "exists");
  }
  cache.forget(diffId, registry, repository);
  const sources = [
    ...new Set([...cache.repositoriesWith(diffId, registry), ...(target.siblings ?? [])]),
  ];
  for (const from of sources.filter((r) => r !== repository)) {
    if (await client.mountBlob(repository, cached.digest, from, signal)) {
      // A learned pair is proven by the blob's size before a manifest relies on it.
      const size = cached.learned ? await client.blobSize(repository, cached.digest, signal) : 0;
      if (cached.learned && !sizeHolds(target, diffId, cached, size)) return undefined;
      cache.record(diffId, cached, registry, repository);
      return pushedLayer(target, diffId, cached, "mounted", from);
    }
    cache.forget(diffId, registry, from);
  }
  return undefined;
}

/**
 * Whether the registry's blob is the size the cache says: one that is not holds other bytes than
 * the cache thinks (a wrong pair, learned or stale), so the pair is dropped and the layer sent.
 */
function sizeHolds(
  target: RepositoryTarget,
  diffId: string,
  cached: CachedLayer,
  held: number | undefined,
): boolean {
  if (held === cached.size) return true;
  target.logger.warn(
    { repository: target.repository, diffId, digest: cached.digest, expected: cached.size, held },
    `blob ${shortDigest(cached.digest)} is not the size recorded for its layer; sending the layer instead`,
  );
  target.cache.drop(diffId);
  return false;
}

/** A layer's fate, logged at debug (at the default level each image is one line). */
export function pushedLayer(
  target: RepositoryTarget,
  diffId: string,
  layer: CachedLayer,
  action: LayerAction,
  from?: string,
): PushedLayer {
  target.logger.debug(
    {
      repository: target.repository,
      diffId,
      digest: layer.digest,
      size: layer.size,
      ...(from ? { from } : {}),
    },
    `layer ${shortDigest(layer.digest)} ${action}`,
  );
  const { digest, size, mediaType } = layer;
  return { diffId, digest, size, mediaType, action, ...(layer.learned ? { learned: true } : {}) };
}

/**
 * Publishes the image: its manifest (image-manifest.ts, the one place a manifest is made) put
 * under `tag`. Every blob it names must be in the repository by now.
 */
export async function putImage(
  target: RepositoryTarget,
  tag: string,
  config: Descriptor,
  layers: readonly PushedLayer[],
  /** Provenance on the manifest (an OCI manifest then); the config stays as it is. */
  annotations?: Readonly<Record<string, string>>,
): Promise<{ digest: string; mediaType: string }> {
  const { bytes, mediaType } = imageManifest(config, layers, annotations);
  const digest = await target.client.putManifest(
    target.repository,
    tag,
    bytes,
    mediaType,
    target.signal,
  );
  return { digest, mediaType };
}
