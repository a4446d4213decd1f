import type { ImageSource } from "../archive/image-source.js";
import { readImageConfig } from "../archive/image-config.js";
import { readSavedEntries } from "../archive/saved-entries.js";
import { describeError } from "../errors.js";
import type { UploadSession } from "./client.js";
import type { GzipOptions } from "./gzip.js";
import { pushedLayer, type PushedLayer, type RepositoryTarget } from "./image-writer.js";
import { uploadLayer } from "./layer-upload.js";
import { retryTransient } from "./transport.js";

/**
 * Reading a known image's tarball again for the entries a registry still lacks: the layers (and
 * the config) that were neither in the registry nor sent while the image streamed past. One
 * pass over the tarball skips everything else; a transient failure starts a new pass for what
 * is still missing, taking up the uploads the last one left.
 */

/** Tries of a pass over the tarball: a cut stream cannot be replayed, so the pass starts over. */
const STREAM_ATTEMPTS = 3;

export interface Wanted {
  kind: "layer" | "config";
  path: string;
  diffId: string;
  /** Bytes of the entry in the tar (uncompressed), when known. */
  size?: number | undefined;
}

export interface UploadEntriesOptions {
  target: RepositoryTarget;
  source: ImageSource;
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
