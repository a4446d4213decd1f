import type { ImageTarget } from "../archive/image-source.js";
import { limiter } from "../net/limit.js";
import type { Logger } from "../report/logger.js";
import type { RegistryClient, UploadSession } from "./client.js";
import type { GzipOptions } from "./gzip.js";
import type { LayerCache } from "./layer-cache.js";
import type { UploadedLayer } from "./layer-upload.js";

/** What the images of one run share while the registry writer (image-push.ts) puts them in. */

export interface BundlePushOptions {
  client: RegistryClient;
  cache: LayerCache;
  logger: Logger;
  signal?: AbortSignal | undefined;
  gzip?: GzipOptions | undefined;
  chunkSize?: number | undefined;
  /** Uploads at once while a tarball streams (one streaming, the others finishing); default 2. */
  concurrency?: number;
  /** Layers compressed and uploaded, or checked, at once in a read again; default 3. */
  readConcurrency?: number;
}

/** Where an image goes, as the registry writer needs it. */
export type WriteTarget = Pick<
  ImageTarget,
  "repository" | "tag" | "siblings" | "label" | "annotations"
>;

/** An image as read: its inspection, and its config's bytes when the read kept them. */
/** A blob of this run: where it went (or goes), and what it turned out to be. */
export interface Shared {
  repository: string;
  done: Promise<UploadedLayer | undefined>;
}

export class BundlePush {
  /** Blobs of this run going up or gone up (or found), by diff-id, blob digest or config digest. */
  readonly shared = new Map<string, Shared>();
  readonly slots: ReturnType<typeof limiter>;
  /** Uploads left unfinished, by the key each was started under. */
  readonly sessions = new Map<string, UploadSession>();

  constructor(readonly options: BundlePushOptions) {
    this.slots = limiter(options.concurrency ?? 2);
  }

  /** A blob in `repository` from now on (the first to say so is kept). */
  share(key: string, repository: string, layer: UploadedLayer): void {
    if (!this.shared.has(key)) this.shared.set(key, { repository, done: Promise.resolve(layer) });
  }

  /** A blob going up to `repository`: the images after wait for it rather than send it too. */
  shareWhenDone(key: string, repository: string, done: Promise<UploadedLayer | undefined>): void {
    this.shared.set(key, { repository, done });
  }
}
