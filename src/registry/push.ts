import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { inspectImageTarball, type ImageTarballInfo } from "../archive/docker-save.js";
import { GUNZIP_CHUNK } from "../archive/gzip-check.js";
import { readImageConfig } from "../archive/image-config.js";
import { readSavedEntries } from "../archive/saved-entries.js";
import { describeError } from "../errors.js";
import { mapLimit } from "../net/limit.js";
import type { Logger } from "../report/logger.js";
import type { RegistryClient, UploadSession } from "./client.js";
import type { GzipOptions } from "./gzip.js";
import {
  findInRegistry,
  mountFromSiblings,
  pushedLayer,
  putImage,
  type PushedLayer,
  type RepositoryTarget,
} from "./image-writer.js";
import type { LayerCache } from "./layer-cache.js";
import { uploadLayer } from "./layer-upload.js";
import { retryTransient } from "./transport.js";

export type { LayerAction, PushedLayer } from "./image-writer.js";

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

export interface Wanted {
  kind: "layer" | "config";
  path: string;
  diffId: string;
  /** Bytes of the entry in the tar (uncompressed), when known. */
  size?: number | undefined;
}

/**
 * Pushes a `docker save` tarball straight to a registry, with no Docker daemon. Layers the
 * registry already has in the repository are skipped (HEAD), layers it has elsewhere are
 * mounted, and only the rest are read from the tarball (archive/saved-entries.ts), compressed
 * (deterministically, so a layer keeps its digest from push to push) and uploaded, several at
 * once. The config goes up byte for byte, so the image ID stays what `docker load` shows.
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
    const bytes = configBytes;
    await client.uploadBlob(repository, info.configDigest, bytes.length, () => bytes, signal);
    bytesUploaded += bytes.length;
  }

  if (info.layout === "legacy") {
    // What each legacy layer path holds, so that a streaming sync of the next build knows it.
    info.layers.forEach((path, i) =>
      options.cache.recordAlias(path, info.layerSizes[i] ?? 0, info.diffIds[i] ?? ""),
    );
    await options.cache.save();
  }
  const layers = info.diffIds.map((diffId) => done.get(diffId) as PushedLayer);
  const config = { digest: info.configDigest, size: configBytes?.length ?? configInRegistry ?? 0 };
  const manifest = await putImage(options, options.tag, config, layers, options.annotations);
  options.onProgress?.({ type: "manifest", digest: manifest.digest });
  // The caller reports the image with what moved; this record is for --log-level debug.
  logger.debug(
    {
      repository,
      tag: options.tag,
      digest: manifest.digest,
      uploaded: layers.filter((l) => l.action === "uploaded").length,
      mounted: layers.filter((l) => l.action === "mounted").length,
      existing: layers.filter((l) => l.action === "exists").length,
      bytesUploaded,
    },
    `pushed ${client.registry}/${repository}:${options.tag}`,
  );
  return {
    manifestDigest: manifest.digest,
    manifestMediaType: manifest.mediaType,
    configDigest: info.configDigest,
    layers,
    bytesUploaded,
  };
}

/** diff-id → index of its first occurrence: a layer listed twice goes up once. */
function uniqueLayers(info: ImageTarballInfo): Map<string, number> {
  const unique = new Map<string, number>();
  info.diffIds.forEach((diffId, index) => {
    if (!unique.has(diffId)) unique.set(diffId, index);
  });
  return unique;
}

/** Where a tarball's bytes come from: a file, or its entry in a zip. */
export interface TarballSource {
  /** Opens the `.tar.gz` bytes from their start. */
  open: () => Readable;
  /** Names it in messages. */
  label: string;
}

export interface UploadEntriesOptions {
  target: RepositoryTarget;
  source: TarballSource;
  /** The layers (and the config) to read and upload. */
  wanted: Wanted[];
  /** Filled in as layers go up. */
  done: Map<string, PushedLayer>;
  /** The image's config digest, when the config is wanted. */
  configDigest?: string;
  concurrency: number;
  gzip?: GzipOptions | undefined;
  chunkSize?: number | undefined;
  /** Uploads left unfinished, by diff-id: taken up, and kept up to date. */
  sessions?: Map<string, UploadSession>;
  onRead?: (diffId: string, bytes: number) => void;
  onLayer?: (layer: PushedLayer) => void;
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
  const tarball = options.tarball;
  return uploadEntries({
    target: options,
    source: {
      open: () => createReadStream(tarball, { highWaterMark: GUNZIP_CHUNK }),
      label: tarball,
    },
    wanted,
    done,
    configDigest: info.configDigest,
    concurrency,
    gzip: options.gzip,
    chunkSize: options.chunkSize,
    onRead: (diffId, bytes) => options.onProgress?.({ type: "read", diffId, bytes }),
    onLayer: (layer) => options.onProgress?.({ type: "layer", layer }),
  });
}

/**
 * The passes over a tarball for the entries still wanted, until every one is in or a failure is
 * final. Unfinished uploads are kept in the layer cache when it ends without them, so that the
 * next push (within a day) takes each up where the registry stands.
 */
export async function uploadEntries(options: UploadEntriesOptions): Promise<Buffer | undefined> {
  const { target, wanted, done } = options;
  const { cache, client, repository } = target;
  // Uploads a pass left unfinished: the next pass takes each up where the registry stands, and
  // so does the next push when this one ends before they are done (stopped, or failed for good).
  const sessions = options.sessions ?? new Map<string, UploadSession>();
  for (const item of wanted) {
    const location = cache.upload(client.registry, repository, item.diffId);
    if (location && !sessions.has(item.diffId)) {
      sessions.set(item.diffId, { repository, location, offset: 0 });
    }
  }
  try {
    return await passes(options, sessions);
  } finally {
    for (const item of wanted.filter((w) => w.kind === "layer")) {
      const location = done.has(item.diffId) ? undefined : sessions.get(item.diffId)?.location;
      cache.recordUpload(client.registry, repository, item.diffId, location);
    }
    // Best effort on the way out of a failure: the failure itself is what the caller must see.
    await cache.save().catch(() => undefined);
  }
}

async function passes(
  options: UploadEntriesOptions,
  sessions: Map<string, UploadSession>,
): Promise<Buffer | undefined> {
  const { target, source, wanted, done } = options;
  let configBytes: Buffer | undefined;
  const byPath = new Map(wanted.map((w) => [w.path, w]));
  await retryTransient(
    async () => {
      const left = wanted.filter((w) =>
        w.kind === "config" ? configBytes === undefined : !done.has(w.diffId),
      );
      if (left.length === 0) return;
      const read = {
        open: source.open,
        label: source.label,
        wanted: left.map((w) => w.path),
        concurrency: options.concurrency,
        signal: target.signal,
      };
      await readSavedEntries(read, async (path, body) => {
        const item = byPath.get(path) as Wanted;
        if (item.kind === "config") {
          configBytes = await readImageConfig(source.label, options.configDigest ?? "", body);
          return;
        }
        const layer = await uploadLayer(
          {
            client: target.client,
            repository: target.repository,
            tarball: source.label,
            signal: target.signal,
            gzip: options.gzip,
            onRead: (bytes) => options.onRead?.(item.diffId, bytes),
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
        target.cache.record(item.diffId, layer, target.client.registry, target.repository);
        const pushed = pushedLayer(target, item.diffId, layer, "uploaded");
        done.set(pushed.diffId, pushed);
        options.onLayer?.(pushed);
        await target.cache.save();
      });
    },
    {
      policy: { ...target.client.retryPolicy, attempts: STREAM_ATTEMPTS },
      signal: target.signal,
      onRetry: ({ attempt, error }) =>
        target.logger.warn(
          { repository: target.repository, attempt, err: describeError(error) },
          "layer upload interrupted; reading the tarball again for the layers not yet up (resuming their uploads)",
        ),
    },
  );
  return configBytes;
}
