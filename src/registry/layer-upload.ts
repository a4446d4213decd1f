import { LayerCheck } from "../archive/layer-check.js";
import { DamagedInputError, SyncError } from "../errors.js";
import type { RegistryClient } from "./client.js";
import { deterministicGzip, type GzipOptions } from "./gzip.js";
import type { CachedLayer } from "./layer-cache.js";
import { DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD, shortDigest } from "./media-types.js";

export const REDOWNLOAD_HINT = "the artifact is damaged; re-run download --force";

export interface LayerUploadOptions {
  client: RegistryClient;
  repository: string;
  /** The tarball the layer comes from, for error messages. */
  tarball: string;
  signal?: AbortSignal | undefined;
  gzip?: GzipOptions | undefined;
  /** Running count of the layer's bytes read from the tarball. */
  onRead?: (bytes: number) => void;
}

export interface LayerEntry {
  /** The layer's path inside the tarball. */
  path: string;
  diffId: string;
}

/**
 * Uploads one layer from its tar entry. An uncompressed layer tar is gzipped here; a layer saved
 * already compressed (Docker's containerd image store keeps layers as pulled) goes up as it is.
 * Either way its bytes are checked while they go (decompressed where needed, hashed, read as a
 * tar) and the upload is committed only when they are the tar the diff-id names: the check
 * prepare made is of the file as it was then, this one of the bytes that really went up.
 */
export async function uploadLayer(
  options: LayerUploadOptions,
  entry: LayerEntry,
  body: AsyncIterable<unknown>,
): Promise<CachedLayer> {
  const { client, repository, signal } = options;
  const source = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await source.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : first.value;
  const check = new LayerCheck();
  await check.write(head);
  if (check.unsupported) {
    const verdict = await check.end();
    throw new SyncError(`${options.tarball}: layer ${entry.path} ${verdict.problem ?? ""}`, {
      hint: "run the tool on Node.js 22.15 or later",
    });
  }
  const compression = check.compression ?? "none";
  let read = head.length;
  options.onRead?.(read);
  async function* entryBytes(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    for (let next = await source.next(); !next.done; next = await source.next()) {
      read += next.value.length;
      await check.write(next.value);
      options.onRead?.(read);
      yield next.value;
    }
  }
  const blobSource =
    compression === "none" ? deterministicGzip(entryBytes(), options.gzip) : entryBytes();
  const mediaType = compression === "zstd" ? OCI_LAYER_ZSTD : DOCKER_LAYER_GZIP;
  const blob = await client.uploadBlobStream(repository, blobSource, {
    ...(signal ? { signal } : {}),
    description: `layer ${shortDigest(entry.diffId)}`,
    beforeCommit: async () => {
      // Checked before the upload is committed, so a damaged tarball never reaches the registry
      // under a name that would make later pushes trust it.
      const verdict = await check.end();
      if (verdict.problem !== undefined) {
        throw new DamagedInputError(`${options.tarball}: layer ${entry.path} ${verdict.problem}`, {
          hint: REDOWNLOAD_HINT,
        });
      }
      if (verdict.diffId !== entry.diffId) {
        throw new DamagedInputError(
          `${options.tarball}: layer ${entry.path} does not match its diff-id ${shortDigest(entry.diffId)}`,
          { hint: REDOWNLOAD_HINT },
        );
      }
    },
  });
  return { digest: blob.digest, size: blob.size, mediaType };
}
