import { knownFile } from "../../src/archive/image-source.js";
import type { ImageTarballInfo } from "../../src/archive/image-stream.js";
import type { Logger } from "../../src/report/logger.js";
import { BundlePush } from "../../src/registry/bundle-push.js";
import type { RegistryClient } from "../../src/registry/client.js";
import { ImagePush } from "../../src/registry/image-push.js";
import type { PushedLayer } from "../../src/registry/image-writer.js";
import type { LayerCache } from "../../src/registry/layer-cache.js";

/** What one tarball's push did: its manifest, and each blob's fate. */
export interface PushResult {
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  /** In manifest order, base first. */
  layers: PushedLayer[];
  /** Compressed bytes sent (layers and config); 0 when everything was already there. */
  bytesUploaded: number;
}

export interface PushTarballOptions {
  client: RegistryClient;
  tarball: string;
  repository: string;
  tag: string;
  cache: LayerCache;
  logger: Logger;
  signal?: AbortSignal;
  siblings?: string[];
  /** Prepare's inspection; without it the file is inspected first, as `push` does. */
  info?: ImageTarballInfo;
  chunkSize?: number;
  annotations?: Readonly<Record<string, string>>;
}

/**
 * One tarball on disk into one repository through the registry writer, as `push` drives it for
 * each image (a file source, known once inspected): the tests' way to write an image.
 */
export async function pushTarball(options: PushTarballOptions): Promise<PushResult> {
  const { client, cache, logger, signal } = options;
  const image = await knownFile(options.tarball, options.info, signal);
  const bundle = new BundlePush({
    client,
    cache,
    logger,
    signal,
    ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
  });
  const push = new ImagePush(bundle, {
    repository: options.repository,
    tag: options.tag,
    siblings: options.siblings ?? [],
    label: options.tarball,
    annotations: options.annotations,
  });
  const ready = await push.complete({ info: image.info }, image.source);
  const manifest = await ready.publish();
  return {
    manifestDigest: manifest.digest,
    manifestMediaType: manifest.mediaType,
    configDigest: image.info.configDigest,
    layers: ready.layers,
    bytesUploaded: ready.bytesUploaded,
  };
}
