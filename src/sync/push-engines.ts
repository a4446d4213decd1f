/**
 * The two ways an image reaches the registry, behind one small interface so the push step and the
 * daemon do not care which is in use:
 *   docker    load → tag → push through the Docker engine's API (dockerode), credentials per push;
 *   registry  the `docker save` tarball straight to the registry over the distribution API.
 */
import path from "node:path";
import { inspectImageTarball, type ImageTarballInfo } from "../archive/docker-save.js";
import { DockerEngine, type LoadedImages, type RegistryAuth } from "../docker/engine.js";
import { isFinalStatus, taskProgress } from "../docker/progress.js";
import { progressTask, type ProgressListener } from "../domain/events.js";
import type { RegistryClient } from "../registry/client.js";
import { LayerCache, LAYER_CACHE_FILE } from "../registry/layer-cache.js";
import { learnFromRegistry } from "../registry/layer-learning.js";
import { pushTarball } from "../registry/push.js";
import { SyncError, describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import { formatBytes } from "../util/bytes.js";

export type EngineName = "docker" | "registry";

/** One image to push: where it is on disk and where it goes. */
export interface PushItem {
  /** The `docker save` tarball. */
  file: string;
  /** The name the tarball carries, `presto-coordinator:<image tag>`. */
  localRef: string;
  /** Full repository path in the registry, `hercules/veloxtesting/x86/presto-coordinator`. */
  repository: string;
  tag: string;
  /** `<registry>/<repository>:<tag>`. */
  remoteRef: string;
  /** Other repositories of the same build, which may already hold shared layers. */
  siblings: string[];
  /** What prepare found in the tarball; saves the registry engine a read of the file. */
  info?: ImageTarballInfo;
  /**
   * Provenance for the manifest (registry engine). The Docker engine writes its own manifest
   * and has no way to take them.
   */
  annotations?: Record<string, string>;
}

export interface PushedItem {
  digest: string;
  /** What moved, for a person: "2 layers sent, 3 reused, 812.4 MiB uploaded, in 41.2 s". */
  summary: string;
  layersSent: number;
  /** Layers the registry had already, or mounted from a sibling repository. */
  layersReused: number;
  /** Compressed bytes sent, where the engine knows (the Docker engine does not say). */
  bytesUploaded: number;
}

export interface ImagePusher {
  readonly name: EngineName;
  /** Checks the credentials (and, for the docker engine, that the engine answers). */
  login(signal: AbortSignal): Promise<void>;
  /** Checks only that whatever the engine needs is reachable (used with --skip-login). */
  check(signal: AbortSignal): Promise<void>;
  push(item: PushItem, signal: AbortSignal): Promise<PushedItem>;
}

export interface PusherOptions {
  logger: Logger;
  /** The registry API client (used by the registry engine; the docker engine only shares its address). */
  registry: RegistryClient;
  username: string;
  password: string | undefined;
  stateDir: string;
  /** Told how each load and push moves; it decides how that is shown. */
  progress: ProgressListener;
  env?: NodeJS.ProcessEnv;
  /**
   * Docker engine: remove the loaded image and its remote name once pushed. The daemon sets it,
   * or months of 11 GiB bundles would fill the engine's disk; a manual push leaves them, as the
   * original did.
   */
  removeAfterPush?: boolean;
}

export function createPusher(engine: EngineName, options: PusherOptions): ImagePusher {
  return engine === "registry" ? registryPusher(options) : dockerPusher(options);
}

function registryPusher(options: PusherOptions): ImagePusher {
  const { logger, registry, progress } = options;
  let cache: LayerCache | undefined;
  return {
    name: "registry",
    login: (signal) => registry.login(signal),
    check: () => Promise.resolve(),
    async push(item, signal) {
      if (!cache) {
        cache = await LayerCache.open(path.join(options.stateDir, LAYER_CACHE_FILE), logger);
        const repositories = [item.repository, ...item.siblings];
        await learnFromRegistry({
          client: registry,
          cache,
          logger,
          repositories,
          tag: item.tag,
          signal,
        });
      }
      const layers = cache;
      const started = Date.now();
      const task = `push ${item.repository}:${item.tag}`;
      let toRead = 0;
      const perLayer = new Map<string, number>();
      const result = await progressTask(progress, task, () =>
        pushTarball({
          client: registry,
          tarball: item.file,
          repository: item.repository,
          tag: item.tag,
          cache: layers,
          logger,
          signal,
          siblings: item.siblings,
          ...(item.info ? { info: item.info } : {}),
          ...(item.annotations ? { annotations: item.annotations } : {}),
          onProgress(event) {
            if (event.type === "planned") {
              toRead = event.bytesToRead;
              logger.debug(
                { image: item.remoteRef, layers: event.layers, toUpload: event.toUpload },
                `${item.remoteRef}: ${event.toUpload} of ${event.layers} layers to upload (${formatBytes(event.bytesToRead)} to read)`,
              );
            } else if (event.type === "read") {
              perLayer.set(event.diffId, event.bytes);
              let sum = 0;
              for (const bytes of perLayer.values()) sum += bytes;
              if (toRead > 0) progress({ kind: "bytes", task, bytes: sum, total: toRead });
            }
          },
        }),
      );
      let sent = 0;
      for (const layer of result.layers) if (layer.action === "uploaded") sent += 1;
      return pushedItem(result.manifestDigest, {
        sent,
        reused: result.layers.length - sent,
        bytes: result.bytesUploaded,
        bytesKind: "compressed",
        seconds: (Date.now() - started) / 1000,
      });
    },
  };
}

function dockerPusher(options: PusherOptions): ImagePusher {
  const { logger, progress } = options;
  const side = new DockerSide(options);
  return {
    name: "docker",
    login: () => side.login(),
    check: () => side.docker().ping(),
    async push(item, signal) {
      const started = Date.now();
      // Nothing unverified is published: without prepare's check of this very file (its record
      // is gone, or the file changed since), the tarball is checked here before the engine
      // loads it — every layer against its diff-id, as the registry engine does while it reads.
      if (!item.info) await inspectImageTarball(item.file, { signal });
      const loadTask = `load ${item.localRef}`;
      logger.info(
        { image: item.localRef, file: item.file },
        `loading ${item.localRef} into the Docker engine`,
      );
      const loaded = await progressTask(progress, loadTask, () =>
        side.docker().loadImage(item.file, {
          signal,
          // The bytes the engine has read are the load's progress; its per-layer counts come
          // one layer at a time and would make the bar jump back.
          onRead: (bytes, total) => progress({ kind: "bytes", task: loadTask, bytes, total }),
          onProgress: (event) => {
            if (event.id === undefined) progress(taskProgress(loadTask, event));
          },
        }),
      );
      const source = side.loadedSource(loaded, item.localRef, item.file);
      return side.publish(item, source, signal, started);
    },
  };
}

/** The Docker engine's half of a push, shared by the step-by-step push and the streaming sync. */
export class DockerSide {
  private engine: DockerEngine | undefined;

  constructor(private readonly options: PusherOptions) {}

  docker(): DockerEngine {
    const { logger, env } = this.options;
    return (this.engine ??= new DockerEngine({ logger, ...(env ? { env } : {}) }));
  }

  auth(): RegistryAuth {
    const { username, password, registry } = this.options;
    return { username, password: password ?? "", serveraddress: registry.registry };
  }

  async login(): Promise<void> {
    await this.docker().ping();
    if (this.options.password === undefined) {
      throw new SyncError(`No password for registry ${this.options.registry.registry}`, {
        hint: "pass --registry-password, set GITLAB_REGISTRY_PASSWORD or GITLAB_TOKEN, or use --skip-login",
      });
    }
    await this.docker().checkLogin(this.auth());
  }

  /** The engine's reply names what it loaded; the name the plan expects is preferred. */
  loadedSource(loaded: LoadedImages, localRef: string, file: string): string {
    const source =
      loaded.references.find((ref) => ref === localRef || ref.endsWith(`/${localRef}`)) ??
      loaded.references[0] ??
      loaded.imageIds[0];
    if (!source) {
      throw new SyncError(`The Docker engine loaded nothing from ${file}`, {
        hint: "re-run prepare to verify the tarball, or use --engine registry",
      });
    }
    if (!loaded.references.includes(localRef)) {
      this.options.logger.warn(
        { expected: localRef, loaded: loaded.references },
        `${file} loaded as ${source}, not ${localRef}; pushing what was loaded`,
      );
    }
    return source;
  }

  /** Tags the loaded image with its remote name and pushes it (then, for the daemon, removes it). */
  async publish(
    item: Pick<PushItem, "repository" | "tag" | "remoteRef">,
    source: string,
    signal: AbortSignal,
    started: number,
  ): Promise<PushedItem> {
    const { options } = this;
    const { progress } = options;
    const label = item.remoteRef;
    const repository = `${options.registry.registry}/${item.repository}`;
    await this.docker().tagImage(source, repository, item.tag);
    const pushTask = `push ${label}`;
    const layers = new Map<string, { status: string; total?: number }>();
    const auth = this.auth();
    const pushed = await progressTask(progress, pushTask, () =>
      this.docker().pushImage(label, options.password === undefined ? emptyAuth(auth) : auth, {
        signal,
        onProgress: (event) => {
          if (event.id) {
            const total = event.total ?? layers.get(event.id)?.total;
            layers.set(event.id, { status: event.status, ...(total ? { total } : {}) });
          }
          progress(taskProgress(pushTask, event));
        },
      }),
    );
    if (options.removeAfterPush) await this.remove([label, source]);
    let sent = 0;
    let reused = 0;
    let bytes = 0;
    for (const layer of layers.values()) {
      if (layer.status === "Pushed") {
        sent += 1;
        bytes += layer.total ?? 0;
      } else if (isFinalStatus(layer.status)) reused += 1;
    }
    return pushedItem(pushed.digest, {
      sent,
      reused,
      bytes,
      // The engine compresses as it sends and only counts the layer's own bytes.
      bytesKind: "uncompressed",
      seconds: (Date.now() - started) / 1000,
    });
  }

  /** Removes names from the engine; a failure is only worth a warning. */
  async remove(names: string[]): Promise<void> {
    for (const name of names) {
      await this.docker()
        .removeImage(name)
        .catch((err: unknown) =>
          this.options.logger.warn(
            { image: name, err: describeError(err) },
            `could not remove ${name} from the engine`,
          ),
        );
    }
  }
}

export interface Moved {
  sent: number;
  reused: number;
  bytes: number;
  bytesKind: "compressed" | "uncompressed";
  seconds: number;
}

/** What one push moved, in the words of the `pushed …` line: the same for both engines. */
export function pushedItem(digest: string, moved: Moved): PushedItem {
  const layers = `${moved.sent} layer${moved.sent === 1 ? "" : "s"} sent`;
  // The registry engine counts what went over the wire (configs too); the docker engine only
  // the layers' own bytes, before it compresses them.
  const moves =
    moved.bytesKind === "uncompressed"
      ? `${layers} (${formatBytes(moved.bytes)} before compression), ${moved.reused} reused`
      : `${layers}, ${moved.reused} reused, ${formatBytes(moved.bytes)} uploaded`;
  return {
    digest,
    summary: `${moves}, in ${(Math.round(moved.seconds * 10) / 10).toFixed(1)} s`,
    layersSent: moved.sent,
    layersReused: moved.reused,
    // Only compressed bytes are bytes on the wire; the docker engine does not tell those.
    bytesUploaded: moved.bytesKind === "compressed" ? moved.bytes : 0,
  };
}

/** With --skip-login and no password, the engine is left to use whatever it already knows. */
function emptyAuth(auth: RegistryAuth): RegistryAuth {
  return { ...auth, username: "", password: "" };
}
