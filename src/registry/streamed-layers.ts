import type { LayerHook, LayerSink, LayerStart } from "../archive/image-stream.js";
import type { LayerVerdict } from "../archive/layer-check.js";
import { describeError } from "../errors.js";
import { Channel } from "../util/channel.js";
import type { UploadSession } from "./client.js";
import type { BundlePush, WriteTarget } from "./bundle-push.js";
import { findInRegistry, type PushedLayer, type RepositoryTarget } from "./image-writer.js";
import { uploadLayer, type UploadedLayer } from "./layer-upload.js";
import { DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD } from "./media-types.js";

/** How an upload that started while its layer streamed past ended. */
export type Outcome = { ok: true; layer: UploadedLayer } | { ok: false; error: unknown };

/**
 * What the registry writer does while an image streams past (archive/image-stream.ts asks at
 * each layer's start): a layer known before its bytes are read that this run already sends, or
 * that the registry has or can mount, is left to the checks; any other is compressed and
 * uploaded as it streams. What became of each is kept for the image's completion.
 */
export class StreamedLayers {
  /** This image's own uploads, by layer path. */
  readonly uploads = new Map<string, Promise<Outcome>>();
  /** Layers the registry already had when they streamed past, by layer path. */
  readonly present = new Map<string, PushedLayer>();
  readonly onLayer: LayerHook = (layer) => this.layer(layer);

  constructor(
    private readonly bundle: BundlePush,
    private readonly image: WriteTarget,
    private readonly target: RepositoryTarget,
  ) {}

  private async layer(start: LayerStart): Promise<LayerSink | undefined> {
    const { cache } = this.bundle.options;
    const compressed = start.compression !== "none";
    // What the bytes are known to be before they are read: a diff-id, or a compressed blob's digest.
    const key = start.namedDigest ?? (compressed ? undefined : cache.alias(start.path, start.size));
    if (key && this.bundle.shared.has(key)) return undefined;
    if (key) {
      const found = compressed ? await this.blobPresent(key, start) : await this.found(key);
      if (found) {
        this.present.set(start.path, found);
        return undefined;
      }
    } else if (!compressed && cache.learnedFrom(this.target.client.registry)) {
      // Known only by its bytes, and the registry taught layers it holds: only checked as it
      // passes, then looked up by the diff-id it turned out to have, and read again from the
      // source only if the registry lacks it (ImagePush.complete).
      return undefined;
    }
    return this.upload(start, key, compressed ? undefined : key);
  }

  /** A diff-id the registry has in this repository, or can mount (the layer cache says where). */
  private async found(diffId: string): Promise<PushedLayer | undefined> {
    const found = await findInRegistry(this.target, diffId);
    if (found) await this.bundle.options.cache.save();
    return found;
  }

  /** A compressed layer goes up as it is, so its name is its blob's digest. */
  private async blobPresent(digest: string, start: LayerStart): Promise<PushedLayer | undefined> {
    const { client, signal } = this.target;
    const size = await client.blobSize(this.image.repository, digest, signal);
    if (size === undefined) return undefined;
    const mediaType = start.compression === "zstd" ? OCI_LAYER_ZSTD : DOCKER_LAYER_GZIP;
    return { diffId: "", digest, size, mediaType, action: "exists" };
  }

  /**
   * Compresses and uploads the layer as it streams past (waiting for a free upload slot).
   * `known` is what the layer is known by before it is read (a diff-id, or a compressed blob's
   * digest), `diffId` what its bytes must hash to.
   */
  private async upload(
    start: LayerStart,
    known: string | undefined,
    diffId: string | undefined,
  ): Promise<LayerSink> {
    const { cache, client, gzip, chunkSize, signal, logger } = this.bundle.options;
    const channel = new Channel<Buffer>(4);
    let settle!: (verdict: LayerVerdict) => void;
    const verdict = new Promise<LayerVerdict>((resolve) => (settle = resolve));
    const key = known ?? `${start.path}#${start.size}`;
    const repository = this.image.repository;
    let started!: () => void;
    const slot = new Promise<void>((resolve) => (started = resolve));
    const outcome = this.bundle.slots(async (): Promise<Outcome> => {
      started();
      try {
        const layer = await uploadLayer(
          {
            client,
            repository,
            tarball: this.image.label,
            signal,
            gzip,
            chunkSize,
            session: this.bundle.sessions.get(key) ?? this.resumable(key),
            onSession: (session) => {
              if (session) this.bundle.sessions.set(key, session);
              else this.bundle.sessions.delete(key);
            },
          },
          { path: start.path, diffId: diffId ?? "", size: start.size },
          channel,
          verdict,
        );
        cache.record(layer.diffId, layer, client.registry, repository);
        if (!start.namedDigest) cache.recordAlias(start.path, start.size, layer.diffId);
        cache.recordUpload(client.registry, repository, key, undefined);
        await cache.save();
        this.bundle.share(layer.digest, repository, layer);
        this.bundle.share(layer.diffId, repository, layer);
        return { ok: true, layer };
      } catch (error) {
        // The reader goes on through the tar; it must not wait for this upload any more.
        channel.cancel();
        const location = this.bundle.sessions.get(key)?.location;
        cache.recordUpload(client.registry, repository, key, location);
        await cache.save().catch(() => undefined);
        if (!signal?.aborted) {
          logger.warn(
            { repository, layer: start.path, err: describeError(error) },
            `upload of layer ${start.path} stopped; it is sent again once the image is read`,
          );
        }
        return { ok: false, error };
      }
    });
    this.uploads.set(start.path, outcome);
    if (known) this.shareWhenDone(known, outcome);
    await slot;
    return {
      write: (chunk) => channel.push(chunk),
      end: (found) => {
        settle(found);
        // A layer known only now, by its bytes: the images after this one wait for this upload
        // rather than start their own (the shared base of a legacy-layout bundle).
        if (!known && found.diffId && !found.problem) {
          if (!this.bundle.shared.has(found.diffId)) this.shareWhenDone(found.diffId, outcome);
          cache.recordAlias(start.path, start.size, found.diffId);
        }
        channel.end();
      },
      fail: (err) => {
        settle({ compression: start.compression, problem: `is cut short (${err.message})` });
        channel.fail(err);
      },
    };
  }

  /** An upload an earlier run of this sync left (a stop, a restart), kept in the layer cache. */ private resumable(
    key: string,
  ): UploadSession | undefined {
    const { cache, client } = this.bundle.options;
    const location = cache.upload(client.registry, this.image.repository, key);
    return location ? { repository: this.image.repository, location, offset: 0 } : undefined;
  }

  private shareWhenDone(key: string, outcome: Promise<Outcome>): void {
    const done = outcome.then((o) => (o.ok ? o.layer : undefined));
    this.bundle.shareWhenDone(key, this.image.repository, done);
  }
}
