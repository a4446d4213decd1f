import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { inspectImageTarball, type ImageTarballInfo } from "../archive/docker-save.js";
import { GUNZIP_CHUNK, checkedGunzip, gzipFailure } from "../archive/gzip-check.js";
import { DamagedInputError, SyncError, describeError } from "../errors.js";
import { limiter, mapLimit } from "../net/limit.js";
import type { Logger } from "../report/logger.js";
import type { RegistryClient, UploadSession } from "./client.js";
import type { GzipOptions } from "./gzip.js";
import { imageManifest } from "./image-manifest.js";
import type { CachedLayer, LayerCache } from "./layer-cache.js";
import { REDOWNLOAD_HINT, uploadLayer } from "./layer-upload.js";
import { shortDigest } from "./media-types.js";
import { retryTransient } from "./transport.js";

export type LayerAction = "uploaded" | "exists" | "mounted";

export interface PushedLayer {
  diffId: string;
  /** Digest of the compressed blob in the registry. */
  digest: string;
  size: number;
  mediaType: string;
  action: LayerAction;
}

export interface PushResult {
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  /** In manifest order, base first. */
  layers: PushedLayer[];
  /** Compressed bytes sent (layers and config); 0 when everything was already there. */
  bytesUploaded: number;
}

export type PushProgress =
  /** After the registry was asked about every layer: what is left to send. */
  | { type: "planned"; layers: number; toUpload: number; bytesToRead: number }
  /** Running count of one layer's bytes read from the tarball. */
  | { type: "read"; diffId: string; bytes: number }
  | { type: "layer"; layer: PushedLayer }
  | { type: "manifest"; digest: string };

export interface PushTarballOptions {
  client: RegistryClient;
  /** A `docker save … | gzip` file, legacy or OCI layout. */
  tarball: string;
  /** Full repository path, e.g. `hercules/veloxtesting/x86/presto-coordinator`. */
  repository: string;
  tag: string;
  cache: LayerCache;
  logger: Logger;
  signal?: AbortSignal;
  onProgress?: (event: PushProgress) => void;
  /** Repositories that may hold the same layers (the other images of a build): mount sources. */
  siblings?: string[];
  /** The tarball's inspection from `prepare`, which saves reading the file once more. */
  info?: ImageTarballInfo;
  /** Layers compressed and uploaded, or checked, at once; default 3. */
  concurrency?: number;
  gzip?: GzipOptions;
  /** Bytes per upload request (a cut re-sends at most one); the client's default unless given. */
  chunkSize?: number;
  annotations?: Readonly<Record<string, string>>; // on the manifest; the config stays as it is
}

const DEFAULT_CONCURRENCY = 3;
/** Tries of the streaming pass: a cut stream cannot be replayed, so the pass starts over. */
const STREAM_ATTEMPTS = 3;

/** tar-stream's entry stream (a streamx Readable). */
type EntryBody = tar.ExtractEvents["entry"][1];

interface Wanted {
  kind: "layer" | "config";
  path: string;
  diffId: string;
  /** Bytes of the entry in the tar (uncompressed), when known. */
  size?: number | undefined;
}

/**
 * Pushes a `docker save` tarball straight to a registry, with no Docker daemon. Layers the
 * registry already has in the repository are skipped (HEAD), layers it has elsewhere are
 * mounted, and only the rest are read from the tarball, compressed (deterministically, so a
 * layer keeps its digest from push to push) and uploaded, several at once. The config goes up
 * byte for byte, so the image ID stays what `docker load` shows.
 */
export async function pushTarball(options: PushTarballOptions): Promise<PushResult> {
  const { client, repository, logger, signal } = options;
  const info = options.info ?? (await inspectImageTarball(options.tarball, { signal }));
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const unique = uniqueLayers(info);
  const done = new Map<string, PushedLayer>();

  const found = await mapLimit([...unique.keys()], concurrency, (diffId) =>
    findInRegistry(options, diffId),
  );
  for (const layer of found) if (layer) done.set(layer.diffId, layer);
  for (const layer of done.values()) options.onProgress?.({ type: "layer", layer });
  await options.cache.save();

  const missing = [...unique.entries()].filter(([diffId]) => !done.has(diffId));
  let configInRegistry = await client.blobSize(repository, info.configDigest, signal);
  // Every layer already there or mounted: likely the same image under a second name (the java
  // worker is the coordinator re-tagged), whose config a sibling holds too. Only then is a
  // config mount worth its requests; otherwise the config is a new blob of its own.
  if (configInRegistry === undefined && missing.length === 0) {
    configInRegistry = await mountFromSiblings(options, info.configDigest);
  }
  const configPresent = configInRegistry !== undefined;
  options.onProgress?.({
    type: "planned",
    layers: unique.size,
    toUpload: missing.length,
    bytesToRead: missing.reduce((sum, [, index]) => sum + (info.layerSizes[index] ?? 0), 0),
  });

  let configBytes: Buffer | undefined;
  if (missing.length > 0 || !configPresent) {
    const wanted: Wanted[] = missing.map(([diffId, index]) => ({
      kind: "layer",
      path: info.layers[index] as string,
      diffId,
      size: info.layerSizes[index],
    }));
    if (!configPresent) wanted.push({ kind: "config", path: info.config, diffId: "" });
    configBytes = await uploadFromTarball(options, info, wanted, done, concurrency);
  }

  let bytesUploaded = [...done.values()]
    .filter((l) => l.action === "uploaded")
    .reduce((sum, l) => sum + l.size, 0);
  if (configBytes) {
    await client.uploadBlob(
      repository,
      info.configDigest,
      configBytes.length,
      () => configBytes,
      signal,
    );
    bytesUploaded += configBytes.length;
  }

  const layers = info.diffIds.map((diffId) => done.get(diffId) as PushedLayer);
  const config = { digest: info.configDigest, size: configBytes?.length ?? configInRegistry ?? 0 };
  const { bytes, mediaType } = imageManifest(config, layers, options.annotations);
  const manifestDigest = await client.putManifest(
    repository,
    options.tag,
    bytes,
    mediaType,
    signal,
  );
  options.onProgress?.({ type: "manifest", digest: manifestDigest });
  // The caller reports the image with what moved; this record is for --log-level debug.
  logger.debug(
    {
      repository,
      tag: options.tag,
      digest: manifestDigest,
      uploaded: layers.filter((l) => l.action === "uploaded").length,
      mounted: layers.filter((l) => l.action === "mounted").length,
      existing: layers.filter((l) => l.action === "exists").length,
      bytesUploaded,
    },
    `pushed ${client.registry}/${repository}:${options.tag}`,
  );
  return {
    manifestDigest,
    manifestMediaType: mediaType,
    configDigest: info.configDigest,
    layers,
    bytesUploaded,
  };
}

/** Mounts a blob from the first sibling repository that has it; its size, or undefined. */
async function mountFromSiblings(
  options: PushTarballOptions,
  digest: string,
): Promise<number | undefined> {
  const { client, repository, signal } = options;
  for (const from of (options.siblings ?? []).filter((r) => r !== repository)) {
    if (await client.mountBlob(repository, digest, from, signal)) {
      options.logger.info({ repository, digest, from }, `config ${shortDigest(digest)} mounted`);
      return client.blobSize(repository, digest, signal);
    }
  }
  return undefined;
}

/** diff-id → index of its first occurrence: a layer listed twice goes up once. */
function uniqueLayers(info: ImageTarballInfo): Map<string, number> {
  const unique = new Map<string, number>();
  info.diffIds.forEach((diffId, index) => {
    if (!unique.has(diffId)) unique.set(diffId, index);
  });
  return unique;
}

/**
 * Whether the registry can have the layer without its bytes: already in the repository, or
 * mountable from a repository the cache (or the caller) names. Needs the compressed digest,
 * which only the cache knows before the layer has been compressed.
 */
async function findInRegistry(
  options: PushTarballOptions,
  diffId: string,
): Promise<PushedLayer | undefined> {
  const { client, cache, repository, signal } = options;
  const cached = cache.get(diffId);
  if (!cached) return undefined;
  const registry = client.registry;
  if (await client.blobExists(repository, cached.digest, signal)) {
    cache.record(diffId, cached, registry, repository);
    return pushed(options, diffId, cached, "exists");
  }
  cache.forget(diffId, registry, repository);
  const sources = [
    ...new Set([...cache.repositoriesWith(diffId, registry), ...(options.siblings ?? [])]),
  ];
  for (const from of sources.filter((r) => r !== repository)) {
    if (await client.mountBlob(repository, cached.digest, from, signal)) {
      cache.record(diffId, cached, registry, repository);
      return pushed(options, diffId, cached, "mounted", from);
    }
    cache.forget(diffId, registry, from);
  }
  return undefined;
}

function pushed(
  options: PushTarballOptions,
  diffId: string,
  layer: CachedLayer,
  action: LayerAction,
  from?: string,
): PushedLayer {
  // One line per layer only at debug: at the default level each image is one line.
  options.logger.debug(
    {
      repository: options.repository,
      diffId,
      digest: layer.digest,
      size: layer.size,
      ...(from ? { from } : {}),
    },
    `layer ${shortDigest(layer.digest)} ${action}`,
  );
  return { diffId, digest: layer.digest, size: layer.size, mediaType: layer.mediaType, action };
}

/**
 * Reads the tarball for the layers (and config) the registry lacks, uploading each as it comes
 * out. A transient failure in the middle of a streamed upload restarts the pass for the layers
 * not yet done; anything else, or too many failures, ends the push. Returns the config bytes
 * when they were wanted.
 */
async function uploadFromTarball(
  options: PushTarballOptions,
  info: ImageTarballInfo,
  wanted: Wanted[],
  done: Map<string, PushedLayer>,
  concurrency: number,
): Promise<Buffer | undefined> {
  let configBytes: Buffer | undefined;
  const { cache, client, repository } = options;
  // Uploads a pass left unfinished: the next pass takes each up where the registry stands, and
  // so does the next push when this one ends before they are done (stopped, or failed for good).
  const sessions = new Map<string, UploadSession>();
  for (const item of wanted) {
    const location = cache.upload(client.registry, repository, item.diffId);
    if (location) sessions.set(item.diffId, { repository, location, offset: 0 });
  }
  try {
    await passes(options, info, wanted, done, concurrency, sessions, (bytes) => {
      configBytes = bytes;
    });
  } finally {
    for (const item of wanted.filter((w) => w.kind === "layer")) {
      const location = done.has(item.diffId) ? undefined : sessions.get(item.diffId)?.location;
      cache.recordUpload(client.registry, repository, item.diffId, location);
    }
    // Best effort on the way out of a failure: the failure itself is what the caller must see.
    await cache.save().catch(() => undefined);
  }
  return configBytes;
}

/** The passes over the tarball, until every wanted entry is in or a failure is final. */
async function passes(
  options: PushTarballOptions,
  info: ImageTarballInfo,
  wanted: Wanted[],
  done: Map<string, PushedLayer>,
  concurrency: number,
  sessions: Map<string, UploadSession>,
  onConfig: (bytes: Buffer) => void,
): Promise<void> {
  let configBytes: Buffer | undefined;
  await retryTransient(
    async () => {
      const left = wanted.filter((w) =>
        w.kind === "config" ? configBytes === undefined : !done.has(w.diffId),
      );
      if (left.length === 0) return;
      await readTarball(options, left, concurrency, async (item, body) => {
        if (item.kind === "config") {
          configBytes = await readConfig(options.tarball, info, body);
          onConfig(configBytes);
          return;
        }
        const layer = await uploadLayer(
          {
            client: options.client,
            repository: options.repository,
            tarball: options.tarball,
            signal: options.signal,
            gzip: options.gzip,
            onRead: (bytes) => options.onProgress?.({ type: "read", diffId: item.diffId, bytes }),
            session: sessions.get(item.diffId),
            chunkSize: options.chunkSize,
            onSession: (session) => {
              if (session) sessions.set(item.diffId, session);
              else sessions.delete(item.diffId);
            },
          },
          item,
          body,
        );
        options.cache.record(item.diffId, layer, options.client.registry, options.repository);
        const pushedLayer = pushed(options, item.diffId, layer, "uploaded");
        done.set(pushedLayer.diffId, pushedLayer);
        options.onProgress?.({ type: "layer", layer: pushedLayer });
        await options.cache.save();
      });
    },
    {
      policy: { ...options.client.retryPolicy, attempts: STREAM_ATTEMPTS },
      signal: options.signal,
      onRetry: ({ attempt, error }) =>
        options.logger.warn(
          { repository: options.repository, attempt, err: describeError(error) },
          "layer upload interrupted; reading the tarball again for the layers not yet up (resuming their uploads)",
        ),
    },
  );
}

/**
 * Streams the tarball once, handing each wanted entry's body to `handle` (at most `concurrency`
 * at once; the tar is read in order, so an entry waits for a free slot). Stops reading as soon
 * as every wanted entry has been seen.
 */
async function readTarball(
  options: PushTarballOptions,
  wanted: Wanted[],
  concurrency: number,
  handle: (item: Wanted, body: EntryBody) => Promise<void>,
): Promise<void> {
  const byPath = new Map(wanted.map((w) => [w.path, w]));
  const slots = limiter(concurrency);
  const jobs: Array<Promise<void>> = [];
  // Stops the read when every wanted entry is in or one failed; the caller's signal stops it too.
  const controller = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  let failure: Error | undefined;
  let allSeen = false;

  const extract = tar.extract();
  extract.on("entry", (header, body, next) => {
    body.on("error", () => undefined);
    const item = byPath.get(header.name.replace(/^(\.\/)+/, ""));
    if (!item || failure !== undefined) {
      body.on("end", () => next());
      body.resume();
      return;
    }
    byPath.delete(item.path);
    // The tar stays where it is (no `next()`) until this entry has a slot and its body is read.
    const job = slots(async () => {
      // A failure or an abort ended the read while the entry waited: its body is gone.
      if (signal.aborted) return;
      body.on("end", () => {
        if (byPath.size > 0) return next();
        // Nothing more to read: the rest of the tar (often gigabytes of other layers) is skipped.
        allSeen = true;
        controller.abort();
      });
      await handle(item, body);
    });
    jobs.push(job);
    job.catch((err: unknown) => {
      failure ??= err instanceof Error ? err : new Error(String(err));
      controller.abort();
    });
  });

  const [magic, gunzip] = checkedGunzip();
  try {
    await pipeline(
      createReadStream(options.tarball, { highWaterMark: GUNZIP_CHUNK }),
      magic,
      gunzip,
      extract,
      {
        signal,
      },
    );
  } catch (err) {
    if (!allSeen && failure === undefined) {
      options.signal?.throwIfAborted();
      failure =
        gzipFailure(options.tarball, err) ??
        new SyncError(`cannot read ${options.tarball} (${describeError(err)})`, {
          hint: REDOWNLOAD_HINT,
          cause: err,
        });
    }
  }
  await Promise.allSettled(jobs);
  if (failure !== undefined) throw failure;
  options.signal?.throwIfAborted();
  if (byPath.size > 0) {
    throw new DamagedInputError(
      `${options.tarball} changed while pushing: ${[...byPath.keys()].join(", ")} is gone`,
      { hint: REDOWNLOAD_HINT },
    );
  }
}

async function readConfig(file: string, info: ImageTarballInfo, body: EntryBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  const bytes = Buffer.concat(chunks);
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  if (digest !== info.configDigest) {
    throw new DamagedInputError(`${file}: the image config changed since it was checked`, {
      hint: REDOWNLOAD_HINT,
    });
  }
  return bytes;
}
