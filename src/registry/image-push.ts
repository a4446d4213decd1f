import type { ImageSource } from "../archive/image-source.js";
import type { ImageTarballInfo } from "../archive/image-stream.js";
import { isDamagedInput } from "../errors.js";
import { mapLimit } from "../net/limit.js";
import type { UploadSession } from "./client.js";
import type { BundlePush, Shared, WriteTarget } from "./bundle-push.js";
import {
  findInRegistry,
  pushedLayer,
  putImage,
  type PushedLayer,
  type RepositoryTarget,
} from "./image-writer.js";
import type { UploadedLayer } from "./layer-upload.js";
import { DOCKER_CONFIG, shortDigest } from "./media-types.js";
import { uploadEntries, type Wanted } from "./read-again.js";
import { isTransient } from "./registry-error.js";
import { StreamedLayers } from "./streamed-layers.js";

/**
 * The one registry writer: the images of one run (a push, an artifact), each made whole in its
 * repository and then published by its manifest. However an image is read, every blob it names
 * — layers and config alike — is skipped when its repository has it, mounted when another
 * repository has it (an image of this run sent it, or the layer cache knows where it is), and
 * otherwise read and uploaded; within one run no blob goes up twice.
 *
 * Two ways in, one per kind of source (archive/image-source.ts):
 *   - streamed: {@link ImagePush.onLayer} is asked at each layer's start while the image streams
 *     past (archive/image-stream.ts). A layer known before its bytes are read (its digest is its
 *     name in the OCI layout, or the layer cache knows its legacy path and size) that this run
 *     already sends, or that the registry has or can mount, is only checked as it passes; any
 *     other is compressed (deterministically) and uploaded as it streams.
 *   - known: an image verified before (a prepared tarball on disk) is not streamed at all.
 * Either way {@link ImagePush.complete} then finds every blob still missing and reads the
 * tarball once more for just those (read-again.ts): for a known image that is the only read
 * (B4: only the layers the registry lacks), for a streamed one it covers a guess that was wrong
 * or an upload a cut ended. Blobs publish nothing; the manifest PUT the caller makes is the
 * publication.
 */

export interface ImageRead {
  info: ImageTarballInfo;
  configBytes?: Buffer | undefined;
}

/** How a read again moves: what it has to read, then its running count of bytes. */
export interface ReadProgress {
  planned?(event: { layers: number; toUpload: number; bytesToRead: number }): void;
  read?(bytes: number): void;
}

/** An image whose blobs are all in its repository: publishing it is one manifest PUT. */
export interface ReadyImage {
  /** In manifest order, base first. */
  layers: PushedLayer[];
  config: PushedLayer;
  /** Compressed bytes this image uploaded (layers and config). */
  bytesUploaded: number;
  publish(): Promise<{ digest: string; mediaType: string }>;
}

export class ImagePush {
  private readonly target: RepositoryTarget;
  private readonly streamed: StreamedLayers;
  /** Asked at each layer's start while the image streams past. */
  readonly onLayer: StreamedLayers["onLayer"];

  constructor(
    private readonly bundle: BundlePush,
    private readonly image: WriteTarget,
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
    this.streamed = new StreamedLayers(bundle, image, this.target);
    this.onLayer = this.streamed.onLayer;
  }

  /**
   * The image is verified (streamed through the checks, or known from before): every blob it
   * names is made to be in its repository, reading `source` again for those nothing else
   * provides. What is returned publishes it. Throws a registry failure another try would not cure.
   */
  async complete(
    image: ImageRead,
    source: ImageSource,
    progress?: ReadProgress,
  ): Promise<ReadyImage> {
    const { info } = image;
    const { cache, logger } = this.target;
    if (info.layout === "legacy") this.learnLegacyNames(info);
    const unique = new Map<string, number>();
    info.diffIds.forEach((diffId, index) => {
      if (!unique.has(diffId)) unique.set(diffId, index);
    });
    const concurrency = this.bundle.options.readConcurrency ?? 3;
    const found = await mapLimit([...unique], concurrency, ([diffId, index]) =>
      this.resolve(info.layers[index] as string, diffId),
    );
    await cache.save();
    const done = new Map<string, PushedLayer>();
    const missing: Wanted[] = [];
    for (const [i, [diffId, index]] of [...unique].entries()) {
      const layer = found[i];
      if (layer) done.set(diffId, layer);
      else {
        const path = info.layers[index] as string;
        missing.push({ kind: "layer", path, diffId, size: info.layerSizes[index] });
      }
    }
    // Only an image none of whose layers is new is likely a second name of another one (the
    // java worker is the coordinator re-tagged), whose config a sibling holds: worth a mount.
    const sentAny = [...done.values()].some((l) => l.action === "uploaded") || missing.length > 0;
    const config = await this.claimConfig(info.configDigest, !sentAny);
    let configBytes = image.configBytes;
    const wanted = [...missing];
    if (!config.found && !configBytes)
      wanted.push({ kind: "config", path: info.config, diffId: "" });
    progress?.planned?.({
      layers: unique.size,
      toUpload: missing.length,
      bytesToRead: missing.reduce((sum, m) => sum + (m.size ?? 0), 0),
    });
    try {
      if (wanted.length > 0) {
        const message = `${this.image.label}: reading the tarball again for ${missing.length} layer(s) not yet up`;
        const fields = { repository: this.image.repository, layers: missing.map((m) => m.path) };
        // For a known image this is its one read; after a stream it covers what the stream missed.
        if (image.configBytes) logger.info(fields, message);
        else logger.debug(fields, message);
        const perLayer = new Map<string, number>();
        configBytes =
          (await uploadEntries({
            target: this.target,
            source,
            wanted,
            done,
            configDigest: info.configDigest,
            concurrency,
            gzip: this.bundle.options.gzip,
            chunkSize: this.bundle.options.chunkSize,
            sessions: this.sessionsOf(missing),
            onRead: (diffId, bytes) => {
              perLayer.set(diffId, bytes);
              let sum = 0;
              for (const n of perLayer.values()) sum += n;
              progress?.read?.(sum);
            },
            onLayer: (layer) => this.bundle.share(layer.diffId, this.image.repository, layer),
          })) ?? configBytes;
      }
      const configLayer = config.found ?? (await this.uploadConfig(info.configDigest, configBytes));
      config.settle(configLayer);
      let bytesUploaded = configLayer.action === "uploaded" ? configLayer.size : 0;
      for (const layer of done.values())
        if (layer.action === "uploaded") bytesUploaded += layer.size;
      const layers = info.diffIds.map((diffId) => done.get(diffId) as PushedLayer);
      return {
        layers,
        config: configLayer,
        bytesUploaded,
        publish: () =>
          putImage(
            this.target,
            this.image.tag,
            { digest: configLayer.digest, size: configLayer.size },
            layers,
            this.image.annotations,
          ),
      };
    } catch (err) {
      config.settle(undefined);
      throw err;
    }
  }

  /**
   * What each legacy layer path holds, now that the image is verified: so that the next stream
   * of it knows the layer before reading it, and an upload this stream left under the layer's
   * path is taken up under its diff-id from now on.
   */
  private learnLegacyNames(info: ImageTarballInfo): void {
    const { cache, client } = this.target;
    info.layers.forEach((path, i) => {
      const size = info.layerSizes[i] ?? 0;
      const diffId = info.diffIds[i] ?? "";
      cache.recordAlias(path, size, diffId);
      const byPath = `${path}#${size}`;
      const session = this.bundle.sessions.get(byPath);
      if (!session) return;
      this.bundle.sessions.delete(byPath);
      if (!this.bundle.sessions.has(diffId)) this.bundle.sessions.set(diffId, session);
      cache.recordUpload(client.registry, this.image.repository, byPath, undefined);
      cache.recordUpload(client.registry, this.image.repository, diffId, session.location);
    });
  }

  /** The uploads this run left unfinished for the layers still missing, by diff-id. */
  private sessionsOf(missing: Wanted[]): Map<string, UploadSession> {
    const sessions = new Map<string, UploadSession>();
    for (const item of missing) {
      const session = this.bundle.sessions.get(item.diffId);
      if (session?.repository === this.image.repository) sessions.set(item.diffId, session);
    }
    return sessions;
  }

  /**
   * The config, as a blob like any other: in the repository already, or mounted from where this
   * run (or, by the layer cache, an earlier one) put it, or from a sibling when `reused`. The
   * first image of the run to want a config claims it; the others wait for where it went.
   */
  private async claimConfig(
    digest: string,
    reused: boolean,
  ): Promise<{ found?: PushedLayer; settle(layer: PushedLayer | undefined): void }> {
    const repository = this.image.repository;
    const shared = this.bundle.shared.get(digest);
    let settle: (layer: PushedLayer | undefined) => void = () => undefined;
    if (!shared) {
      const done = new Promise<UploadedLayer | undefined>((resolve) => {
        settle = (layer) => resolve(layer ? { ...layer, diffId: digest } : undefined);
      });
      this.bundle.shared.set(digest, { repository, done });
    }
    try {
      return { ...(await this.findConfig(digest, reused, shared)), settle };
    } catch (err) {
      // The images waiting for this config must not wait for ever.
      settle(undefined);
      throw err;
    }
  }

  private async findConfig(
    digest: string,
    reused: boolean,
    shared: Shared | undefined,
  ): Promise<{ found?: PushedLayer }> {
    const { client, signal, cache } = this.target;
    const repository = this.image.repository;
    const size = await client.blobSize(repository, digest, signal);
    if (size !== undefined) {
      const layer = { digest, size, mediaType: DOCKER_CONFIG };
      cache.record(digest, layer, client.registry, repository);
      return { found: pushedLayer(this.target, digest, layer, "exists") };
    }
    const sent = shared ? await shared.done : undefined;
    const sources = [
      ...(shared && sent ? [shared.repository] : []),
      ...cache.repositoriesWith(digest, client.registry),
      ...(reused ? (this.image.siblings ?? []) : []),
    ];
    for (const from of new Set(sources)) {
      if (from === repository) continue;
      if (await client.mountBlob(repository, digest, from, signal)) {
        const mounted = await client.blobSize(repository, digest, signal);
        const layer = { digest, size: mounted ?? sent?.size ?? 0, mediaType: DOCKER_CONFIG };
        cache.record(digest, layer, client.registry, repository);
        return { found: pushedLayer(this.target, digest, layer, "mounted", from) };
      }
    }
    return {};
  }

  /** The config byte for byte, so the image ID stays what `docker load` shows. */
  private async uploadConfig(digest: string, bytes: Buffer | undefined): Promise<PushedLayer> {
    const { client, signal, cache } = this.target;
    if (!bytes) throw new Error(`${this.image.label}: the config ${digest} was not read`);
    await client.uploadBlob(this.image.repository, digest, bytes.length, () => bytes, signal);
    const layer = { digest, size: bytes.length, mediaType: DOCKER_CONFIG };
    cache.record(digest, layer, client.registry, this.image.repository);
    await cache.save();
    return pushedLayer(this.target, digest, layer, "uploaded");
  }

  /** Where the registry gets this layer from, if not from reading the tarball again. */
  private async resolve(path: string, diffId: string): Promise<PushedLayer | undefined> {
    const own = this.streamed.uploads.get(path);
    if (own) {
      const outcome = await own;
      if (outcome.ok) return pushedLayer(this.target, diffId, outcome.layer, "uploaded");
      // A refusal (denied, a quota) would refuse the next try too; a cut or a 5xx is tried again.
      if (!isTransient(outcome.error) && !isDamagedInput(outcome.error)) throw outcome.error;
    }
    const present = this.streamed.present.get(path);
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
    const known = await findInRegistry(this.target, diffId);
    if (known) this.bundle.share(diffId, this.image.repository, { ...known, diffId });
    return known;
  }
}
