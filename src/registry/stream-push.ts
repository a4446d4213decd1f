import type { LayerHook, LayerSink, LayerStart, SavedImage } from "../archive/image-stream.js";
import type { LayerVerdict } from "../archive/layer-check.js";
import { describeError, isDamagedInput } from "../errors.js";
import { limiter } from "../net/limit.js";
import type { Logger } from "../report/logger.js";
import { Channel } from "../util/channel.js";
import type { RegistryClient, UploadSession } from "./client.js";
import type { GzipOptions } from "./gzip.js";
import {
  ensureConfig,
  findInRegistry,
  pushedLayer,
  putImage,
  type PushedLayer,
  type RepositoryTarget,
} from "./image-writer.js";
import type { LayerCache } from "./layer-cache.js";
import { uploadLayer, type UploadedLayer } from "./layer-upload.js";
import { DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD, shortDigest } from "./media-types.js";
import { uploadEntries, type TarballSource, type Wanted } from "./push.js";
import { isTransient } from "./registry-error.js";

/**
 * The registry engine fed by a stream: the images of one artifact, each read once as it arrives
 * (archive/image-stream.ts), their layers compressed and uploaded while they stream past. At a
 * layer's start the engine decides, from what the layer is known to be before its bytes are
 * read, whether they need to go up at all:
 *
 *   - its digest is its name (OCI layout), or the layer cache knows its legacy path and size
 *     from an earlier read (Docker names legacy layers after their chain of diff-ids): then a
 *     layer another image of this artifact already sends, or one the registry has (HEAD) or can
 *     mount, is only checked as it passes — the shared base goes up once;
 *   - otherwise it is compressed (deterministically) and uploaded as it streams.
 *
 * Blobs are content-addressed: uploading them publishes nothing. Once the image is verified
 * whole, {@link ImagePush.complete} makes sure every layer is in its repository — mounting what
 * a sibling sent, and reading the tarball again (from the artifact on disk) for any layer whose
 * guess was wrong or whose upload a cut ended — and puts the config. The manifest, which is the
 * publication, is put only when the caller says the artifact is verified too.
 */

export interface BundlePushOptions {
  client: RegistryClient;
  cache: LayerCache;
  logger: Logger;
  signal?: AbortSignal | undefined;
  gzip?: GzipOptions;
  chunkSize?: number;
  /** Uploads at once (one streaming, the others finishing their last chunks); default 2. */
  concurrency?: number;
}

export interface ImageTarget {
  /** Full repository path, `hercules/veloxtesting/x86/presto-coordinator`. */
  repository: string;
  tag: string;
  /** The other repositories of the artifact: mount sources. */
  siblings: string[];
  /** Names the tarball in messages. */
  label: string;
  /** Provenance on the manifest (see image-manifest.ts). */
  annotations?: Readonly<Record<string, string>> | undefined;
}

/** An image whose blobs are all in its repository: publishing it is one manifest PUT. */
export interface ReadyImage {
  layers: PushedLayer[];
  /** Compressed bytes this image uploaded (layers and config). */
  bytesUploaded: number;
  publish(): Promise<{ digest: string; mediaType: string }>;
}

type Outcome = { ok: true; layer: UploadedLayer } | { ok: false; error: unknown };

interface Shared {
  repository: string;
  done: Promise<UploadedLayer | undefined>;
}

export class BundlePush {
  /** Layers of this artifact going up or gone up, by diff-id (and by blob digest). */
  readonly shared = new Map<string, Shared>();
  readonly slots: ReturnType<typeof limiter>;
  /** Uploads left unfinished, by the key each was started under. */
  readonly sessions = new Map<string, UploadSession>();

  constructor(readonly options: BundlePushOptions) {
    this.slots = limiter(options.concurrency ?? 2);
  }

  image(target: ImageTarget): ImagePush {
    return new ImagePush(this, target);
  }
}

export class ImagePush {
  /** This image's own uploads, by layer path. */
  private readonly uploads = new Map<string, Promise<Outcome>>();
  /** Layers the registry already had when they streamed past, by layer path. */
  private readonly present = new Map<string, PushedLayer>();
  private readonly target: RepositoryTarget;
  readonly onLayer: LayerHook = (layer) => this.layer(layer);

  constructor(
    private readonly bundle: BundlePush,
    private readonly image: ImageTarget,
  ) {
    const { client, cache, logger, signal } = bundle.options;
    this.target = {
      client,
      cache,
      logger,
      signal,
      repository: image.repository,
      siblings: image.siblings,
    };
  }

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
      // artifact on disk (complete()) only if the registry lacks it.
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
        this.share(layer.digest, layer);
        this.share(layer.diffId, layer);
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

  /** An upload an earlier run of this sync left (a stop, a restart), kept in the layer cache. */
  private resumable(key: string): UploadSession | undefined {
    const { cache, client } = this.bundle.options;
    const location = cache.upload(client.registry, this.image.repository, key);
    return location ? { repository: this.image.repository, location, offset: 0 } : undefined;
  }

  private shareWhenDone(key: string, outcome: Promise<Outcome>): void {
    this.bundle.shared.set(key, {
      repository: this.image.repository,
      done: outcome.then((o) => (o.ok ? o.layer : undefined)),
    });
  }

  private share(key: string, layer: UploadedLayer): void {
    if (!this.bundle.shared.has(key)) {
      this.bundle.shared.set(key, {
        repository: this.image.repository,
        done: Promise.resolve(layer),
      });
    }
  }

  /**
   * The image is verified: every layer it names is made to be in its repository (mounted from
   * the sibling that sent it, or read again from `source` and sent), and its config put. What is
   * returned publishes it. Throws a registry failure that another try would not cure.
   */
  async complete(image: SavedImage, source: TarballSource): Promise<ReadyImage> {
    const { info, configBytes } = image;
    const { cache } = this.target;
    if (info.layout === "legacy") {
      info.layers.forEach((path, i) =>
        cache.recordAlias(path, info.layerSizes[i] ?? 0, info.diffIds[i] ?? ""),
      );
    }
    const done = new Map<string, PushedLayer>();
    const missing: Wanted[] = [];
    for (const [index, diffId] of info.diffIds.entries()) {
      if (done.has(diffId) || missing.some((m) => m.diffId === diffId)) continue;
      const path = info.layers[index] as string;
      const layer = await this.resolve(path, diffId);
      if (layer) done.set(diffId, layer);
      else missing.push({ kind: "layer", path, diffId, size: info.layerSizes[index] });
    }
    if (missing.length > 0) {
      this.target.logger.info(
        { repository: this.image.repository, layers: missing.map((m) => m.path) },
        `${this.image.label}: reading the tarball again for ${missing.length} layer(s) not yet up`,
      );
      // The uploads this stream left unfinished are taken up where the registry stands.
      const sessions = new Map<string, UploadSession>();
      for (const item of missing) {
        const session =
          this.bundle.sessions.get(item.diffId) ??
          this.bundle.sessions.get(`${item.path}#${item.size ?? 0}`);
        if (session) sessions.set(item.diffId, session);
      }
      await uploadEntries({
        target: this.target,
        source,
        wanted: missing,
        done,
        concurrency: 1,
        gzip: this.bundle.options.gzip,
        chunkSize: this.bundle.options.chunkSize,
        sessions,
      });
    }
    let bytesUploaded = 0;
    for (const layer of done.values()) if (layer.action === "uploaded") bytesUploaded += layer.size;
    // Only an image whose every layer was already there is likely a second name of another one
    // (the java worker is the coordinator re-tagged), whose config a sibling holds: worth a mount.
    const reused = bytesUploaded === 0;
    bytesUploaded += await ensureConfig(this.target, info.configDigest, configBytes, reused);
    const layers = info.diffIds.map((diffId) => done.get(diffId) as PushedLayer);
    const config = { digest: info.configDigest, size: configBytes.length };
    return {
      layers,
      bytesUploaded,
      publish: () => putImage(this.target, this.image.tag, config, layers, this.image.annotations),
    };
  }

  /** Where the registry gets this layer from, if not from reading the tarball again. */
  private async resolve(path: string, diffId: string): Promise<PushedLayer | undefined> {
    const own = this.uploads.get(path);
    if (own) {
      const outcome = await own;
      if (outcome.ok) return pushedLayer(this.target, diffId, outcome.layer, "uploaded");
      // A refusal (denied, a quota) would refuse the next try too; a cut or a 5xx is tried again.
      if (!isTransient(outcome.error) && !isDamagedInput(outcome.error)) throw outcome.error;
    }
    const present = this.present.get(path);
    if (present) return { ...present, diffId };
    const shared = this.bundle.shared.get(diffId);
    const layer = await shared?.done;
    if (shared && layer) {
      const { client, signal } = this.target;
      if (shared.repository === this.image.repository) {
        return pushedLayer(this.target, diffId, layer, "exists");
      }
      if (await client.mountBlob(this.image.repository, layer.digest, shared.repository, signal)) {
        this.target.cache.record(diffId, layer, client.registry, this.image.repository);
        return pushedLayer(this.target, diffId, layer, "mounted", shared.repository);
      }
      this.target.logger.debug(
        { repository: this.image.repository, digest: shortDigest(layer.digest) },
        "mount refused; looking elsewhere",
      );
    }
    return this.found(diffId);
  }
}
