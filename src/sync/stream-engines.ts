/**
 * The two engines as the streaming sync drives them: each image of the artifact is handed over
 * as a stream of its tarball's bytes while they come out of the zip, checked on the way
 * (archive/image-stream.ts), and published only when the sync says so.
 *   registry  layers compressed and uploaded while they stream past (registry/stream-push.ts);
 *             publishing is the manifest PUT.
 *   docker    the tarball streams into `docker load` while it is checked alongside; publishing
 *             is `docker tag` + `docker push`; an image that is not published is removed again.
 */
import path from "node:path";
import { PassThrough, type Writable } from "node:stream";
import { assertRepoTag, type ImageTarballInfo } from "../archive/docker-save.js";
import { createImageStream } from "../archive/image-stream.js";
import { taskProgress } from "../docker/progress.js";
import { progressTask } from "../domain/events.js";
import { LayerCache, LAYER_CACHE_FILE } from "../registry/layer-cache.js";
import { learnFromRegistry } from "../registry/layer-learning.js";
import type { TarballSource } from "../registry/push.js";
import { BundlePush } from "../registry/stream-push.js";
import { Tee } from "../util/tee.js";
import {
  DockerSide,
  pushedItem,
  type EngineName,
  type PushedItem,
  type PusherOptions,
} from "./push-engines.js";

/** One image of the artifact: where its tarball is in the zip and where it goes. */
export interface StreamItem {
  gitlabTag: string;
  /** The tarball's name inside the zip, which also names it in messages. */
  entry: string;
  /** `<repo>:<image tag>`: the RepoTag the tarball must carry. */
  localRef: string;
  repository: string;
  tag: string;
  remoteRef: string;
  siblings: string[];
  /** Provenance for the manifest (registry engine; the Docker engine writes its own manifest). */
  annotations?: Record<string, string> | undefined;
}

export interface PublishableImage {
  info: ImageTarballInfo;
  publish(): Promise<PushedItem>;
}

export interface StreamedImage {
  /** The tarball's bytes go in here. */
  sink: Writable;
  /** Settles once the tarball has been read to its end (verified or not). */
  parsed: Promise<unknown>;
  /** Resolves once the tarball is read and verified (RepoTags included), its tag's blobs or load in place. */
  ready(source: TarballSource): Promise<PublishableImage>;
  /** The image will not be published: whatever of it sits in an engine is removed. */
  discard(): Promise<void>;
}

export interface ArtifactPush {
  begin(item: StreamItem): StreamedImage;
}

export interface StreamEngine {
  readonly name: EngineName;
  login(signal: AbortSignal): Promise<void>;
  check(signal: AbortSignal): Promise<void>;
  /** The images of one artifact, handed over in the order they come. */
  artifact(signal: AbortSignal, items: readonly StreamItem[]): Promise<ArtifactPush>;
}

export function createStreamEngine(engine: EngineName, options: PusherOptions): StreamEngine {
  return engine === "registry" ? registryStream(options) : dockerStream(options);
}

function registryStream(options: PusherOptions): StreamEngine {
  const { logger, registry } = options;
  return {
    name: "registry",
    login: (signal) => registry.login(signal),
    check: () => Promise.resolve(),
    async artifact(signal, items) {
      const cache = await LayerCache.open(path.join(options.stateDir, LAYER_CACHE_FILE), logger);
      const repositories = [...new Set(items.map((item) => item.repository))];
      const tag = items[0]?.tag ?? "";
      await learnFromRegistry({ client: registry, cache, logger, repositories, tag, signal });
      const bundle = new BundlePush({ client: registry, cache, logger, signal });
      return {
        begin(item) {
          const started = Date.now();
          const push = bundle.image({
            repository: item.repository,
            tag: item.tag,
            siblings: item.siblings,
            label: item.entry,
            annotations: item.annotations,
          });
          const stream = createImageStream(item.entry, push.onLayer);
          return {
            sink: stream.sink,
            parsed: stream.result.catch(() => undefined),
            async ready(source) {
              const saved = await stream.result;
              assertRepoTag(saved.info, item.localRef, item.entry);
              const image = await push.complete(saved, source);
              return {
                info: saved.info,
                async publish() {
                  const manifest = await image.publish();
                  const sent = image.layers.filter((l) => l.action === "uploaded").length;
                  return pushedItem(manifest.digest, {
                    sent,
                    reused: image.layers.length - sent,
                    bytes: image.bytesUploaded,
                    bytesKind: "compressed",
                    seconds: (Date.now() - started) / 1000,
                  });
                },
              };
            },
            // Blobs publish nothing, and a later push may use them: nothing to take back.
            discard: () => Promise.resolve(),
          };
        },
      };
    },
  };
}

function dockerStream(options: PusherOptions): StreamEngine {
  const { logger, progress } = options;
  const side = new DockerSide(options);
  return {
    name: "docker",
    login: () => side.login(),
    check: () => side.docker().ping(),
    artifact(signal) {
      return Promise.resolve({
        begin(item) {
          const started = Date.now();
          const check = createImageStream(item.entry);
          const toEngine = new PassThrough({ highWaterMark: 1 << 20 });
          const loadTask = `load ${item.localRef}`;
          logger.info(
            { image: item.localRef, entry: item.entry },
            `loading ${item.localRef} into the Docker engine while it is checked`,
          );
          const load = progressTask(progress, loadTask, () =>
            side.docker().loadImageStream(toEngine, item.entry, {
              signal,
              onProgress: (event) => progress(taskProgress(loadTask, event)),
            }),
          );
          // An engine that gave up reads no more: the check must not wait for it.
          load.catch(() => toEngine.destroy());
          return {
            sink: new Tee([check.sink, toEngine]),
            parsed: check.result.catch(() => undefined),
            async ready() {
              const saved = await check.result;
              assertRepoTag(saved.info, item.localRef, item.entry);
              const source = side.loadedSource(await load, item.localRef, item.entry);
              return {
                info: saved.info,
                publish: () => side.publish(item, source, signal, started),
              };
            },
            async discard() {
              const loaded = await load.catch(() => undefined);
              if (loaded) await side.remove([...loaded.references, ...loaded.imageIds]);
            },
          };
        },
      });
    },
  };
}
