/**
 * The two ways an image reaches the registry, behind one small interface so the push step and the
 * daemon do not care which is in use:
 *   docker    load → tag → push through the Docker engine's API (dockerode), credentials per push;
 *   registry  the `docker save` tarball straight to the registry over the distribution API.
 */
import path from "node:path";
import { inspectImageTarball, type ImageTarballInfo } from "../archive/docker-save.js";
import { DockerEngine, type RegistryAuth } from "../docker/engine.js";
import { taskProgress } from "../docker/progress.js";
import { progressTask, type ProgressListener } from "../domain/events.js";
import type { RegistryClient } from "../registry/client.js";
import { LayerCache, LAYER_CACHE_FILE } from "../registry/layer-cache.js";
import { pushTarball } from "../registry/push.js";
import { SyncError, describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import { formatMiB } from "../util/bytes.js";

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
  /** Human summary of what moved, e.g. "2 layers uploaded (812.4 MiB), 3 already there". */
  summary: string;
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
      const layers = (cache ??= await LayerCache.open(
        path.join(options.stateDir, LAYER_CACHE_FILE),
        logger,
      ));
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
              logger.info(
                { image: item.remoteRef, layers: event.layers, toUpload: event.toUpload },
                `${item.remoteRef}: ${event.toUpload} of ${event.layers} layers to upload (${formatMiB(event.bytesToRead)} to read)`,
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
      const counts = { uploaded: 0, mounted: 0, exists: 0 };
      for (const layer of result.layers) counts[layer.action] += 1;
      const parts = [`${counts.uploaded} layer(s) uploaded (${formatMiB(result.bytesUploaded)})`];
      if (counts.mounted) parts.push(`${counts.mounted} mounted from a sibling`);
      if (counts.exists) parts.push(`${counts.exists} already there`);
      return {
        digest: result.manifestDigest,
        summary: parts.join(", "),
        bytesUploaded: result.bytesUploaded,
      };
    },
  };
}

function dockerPusher(options: PusherOptions): ImagePusher {
  const { logger, progress } = options;
  let engine: DockerEngine | undefined;
  const docker = (): DockerEngine =>
    (engine ??= new DockerEngine({ logger, ...(options.env ? { env: options.env } : {}) }));
  const auth = (): RegistryAuth => ({
    username: options.username,
    password: options.password ?? "",
    serveraddress: options.registry.registry,
  });
  return {
    name: "docker",
    async login() {
      await docker().ping();
      if (options.password === undefined) {
        throw new SyncError(`No password for registry ${options.registry.registry}`, {
          hint: "pass --registry-password, set GITLAB_REGISTRY_PASSWORD or GITLAB_TOKEN, or use --skip-login",
        });
      }
      await docker().checkLogin(auth());
    },
    check: () => docker().ping(),
    async push(item, signal) {
      const label = item.remoteRef;
      // Nothing unverified is published: without prepare's check of this very file (its record
      // is gone, or the file changed since), the tarball is checked here before the engine
      // loads it — every layer against its diff-id, as the registry engine does while it reads.
      if (!item.info) await inspectImageTarball(item.file, { signal });
      const loadTask = `load ${item.localRef}`;
      const loaded = await progressTask(progress, loadTask, () =>
        docker().loadImage(item.file, {
          signal,
          onProgress: (event) => progress(taskProgress(loadTask, event)),
        }),
      );
      // The engine's reply names what it loaded; prefer the name the plan expects.
      const source =
        loaded.references.find(
          (ref) => ref === item.localRef || ref.endsWith(`/${item.localRef}`),
        ) ??
        loaded.references[0] ??
        loaded.imageIds[0];
      if (!source) {
        throw new SyncError(`The Docker engine loaded nothing from ${item.file}`, {
          hint: "re-run prepare to verify the tarball, or use --engine registry",
        });
      }
      if (!loaded.references.includes(item.localRef)) {
        logger.warn(
          { expected: item.localRef, loaded: loaded.references },
          `${item.file} loaded as ${source}, not ${item.localRef}; pushing what was loaded`,
        );
      }
      const repository = `${options.registry.registry}/${item.repository}`;
      await docker().tagImage(source, repository, item.tag);
      const pushTask = `push ${label}`;
      const states = new Map<string, string>();
      const pushed = await progressTask(progress, pushTask, () =>
        docker().pushImage(label, options.password === undefined ? emptyAuth(auth()) : auth(), {
          signal,
          onProgress: (event) => {
            if (event.id) states.set(event.id, event.status);
            progress(taskProgress(pushTask, event));
          },
        }),
      );
      if (options.removeAfterPush) {
        for (const name of [label, source]) {
          await docker()
            .removeImage(name)
            .catch((err: unknown) =>
              logger.warn(
                { image: name, err: describeError(err) },
                `could not remove ${name} from the engine`,
              ),
            );
        }
      }
      let uploaded = 0;
      let present = 0;
      for (const status of states.values()) {
        if (status === "Pushed") uploaded += 1;
        else if (status === "Layer already exists" || status.startsWith("Mounted from"))
          present += 1;
      }
      return {
        digest: pushed.digest,
        summary: `${uploaded} layer(s) pushed, ${present} already there or mounted`,
        bytesUploaded: 0,
      };
    },
  };
}

/** With --skip-login and no password, the engine is left to use whatever it already knows. */
function emptyAuth(auth: RegistryAuth): RegistryAuth {
  return { ...auth, username: "", password: "" };
}
