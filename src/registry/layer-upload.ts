import { LayerCheck, compressionOf, type LayerVerdict } from "../archive/layer-check.js";
import { DamagedInputError, REDOWNLOAD_HINT, SyncError } from "../errors.js";
import { MiB } from "../util/bytes.js";
import { DEFAULT_CHUNK_SIZE } from "./blob-upload.js";
import type { RegistryClient, UploadSession } from "./client.js";
import { deterministicGzip, type GzipOptions } from "./gzip.js";
import type { CachedLayer } from "./layer-cache.js";
import { DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD, shortDigest } from "./media-types.js";

export interface LayerUploadOptions {
  client: RegistryClient;
  repository: string;
  /** The tarball the layer comes from, for error messages. */
  tarball: string;
  signal?: AbortSignal | undefined;
  gzip?: GzipOptions | undefined;
  /** Running count of the layer's bytes read from the tarball. */
  onRead?: (bytes: number) => void;
  /** The upload an earlier pass left of this layer: resumed rather than started over. */
  session?: UploadSession | undefined;
  onSession?: (session: UploadSession | undefined) => void;
  /** Bytes per upload request; the client's default unless given. */
  chunkSize?: number | undefined;
}

export interface LayerEntry {
  /** The layer's path inside the tarball. */
  path: string;
  /** What it must hash to; empty when not known yet (a legacy layout's layer before its config). */
  diffId: string;
  /** Its size in the tarball (uncompressed), when known: it sets the upload's chunk size. */
  size?: number | undefined;
}

/** A layer that went up, and the diff-id its bytes turned out to have. */
export interface UploadedLayer extends CachedLayer {
  diffId: string;
}

/**
 * Uploads one layer from its tar entry. An uncompressed layer tar is gzipped here; a layer saved
 * already compressed (Docker's containerd image store keeps layers as pulled) goes up as it is.
 * Either way its bytes are checked while they go (decompressed where needed, hashed, read as a
 * tar) and the upload is committed only when they are a tar, and the one the diff-id names when
 * one is given: the check prepare made is of the file as it was then, this one of the bytes that
 * really went up. `verdict` is that check made by whoever reads the tar (the streaming sync's
 * image reader); without it, the check is made here.
 */
export async function uploadLayer(
  options: LayerUploadOptions,
  entry: LayerEntry,
  body: AsyncIterable<unknown>,
  verdict?: Promise<LayerVerdict>,
): Promise<UploadedLayer> {
  const { client, repository, signal } = options;
  const source = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await source.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : first.value;
  const check = verdict ? undefined : new LayerCheck();
  await check?.write(head);
  if (check?.unsupported) {
    const found = await check.end();
    throw new SyncError(`${options.tarball}: layer ${entry.path} ${found.problem ?? ""}`, {
      hint: "run the tool on Node.js 22.15 or later",
    });
  }
  const compression = check ? (check.compression ?? "none") : compressionOf(head);
  let read = head.length;
  options.onRead?.(read);
  async function* entryBytes(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    for (let next = await source.next(); !next.done; next = await source.next()) {
      read += next.value.length;
      await check?.write(next.value);
      options.onRead?.(read);
      yield next.value;
    }
  }
  const blobSource =
    compression === "none" ? deterministicGzip(entryBytes(), options.gzip) : entryBytes();
  const mediaType = compression === "zstd" ? OCI_LAYER_ZSTD : DOCKER_LAYER_GZIP;
  const label = entry.diffId ? shortDigest(entry.diffId) : entry.path;
  let diffId = entry.diffId;
  const blob = await client.uploadBlobStream(repository, blobSource, {
    ...(signal ? { signal } : {}),
    description: `layer ${label}`,
    session: options.session,
    chunkSize: options.chunkSize ?? chunkSizeFor(entry.size),
    ...(options.onSession ? { onSession: options.onSession } : {}),
    beforeCommit: async () => {
      // Checked before the upload is committed, so a damaged tarball never reaches the registry
      // under a name that would make later pushes trust it.
      const found = await (verdict ?? (check as LayerCheck).end());
      if (found.problem !== undefined) {
        const Failure = found.unsupported ? SyncError : DamagedInputError;
        throw new Failure(`${options.tarball}: layer ${entry.path} ${found.problem}`, {
          hint: found.unsupported ? "run the tool on Node.js 22.15 or later" : REDOWNLOAD_HINT,
        });
      }
      if (entry.diffId && found.diffId !== entry.diffId) {
        throw new DamagedInputError(
          `${options.tarball}: layer ${entry.path} does not match its diff-id ${shortDigest(entry.diffId)}`,
          { hint: REDOWNLOAD_HINT },
        );
      }
      diffId = found.diffId ?? entry.diffId;
    },
  });
  return { digest: blob.digest, size: blob.size, mediaType, diffId };
}

/**
 * A cut re-sends at most the chunk in flight; every chunk costs a round trip (and, on
 * Distribution's filesystem storage, a few fsyncs). A 64th of the layer bounds what a cut costs
 * to under 2 % of it, 16 MiB at most caps the memory a layer holds (two chunks) and what a cut
 * re-sends, and 4 MiB at least keeps small layers from paying a round trip per few hundred KiB
 * over a VPN's latency.
 */
export function chunkSizeFor(layerBytes: number | undefined): number {
  if (layerBytes === undefined) return DEFAULT_CHUNK_SIZE;
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, Math.ceil(layerBytes / 64 / MiB) * MiB));
}
const MIN_CHUNK = 4 * MiB;
const MAX_CHUNK = 16 * MiB;
