/**
 * The Docker engine as a sink (archive/image-source.ts): `docker load`, then `docker tag` and
 * `docker push` with the credentials given per push. A streamed image's bytes go into the load
 * while they are checked alongside (the push waits for the check); a known image (verified on
 * disk before) is loaded from its file. An image that is not published is removed again.
 */
import { PassThrough } from "node:stream";
import { assertImageOf } from "../archive/docker-save.js";
import type {
  ImageSink,
  ImageSource,
  ImageTarget,
  ImageWrite,
  PublishableImage,
} from "../archive/image-source.js";
import { createImageStream, type ImageTarballInfo } from "../archive/image-stream.js";
import { progressTask } from "../domain/events.js";
import { pushedItem, type PushedItem } from "../domain/pushed.js";
import { SyncError, describeError } from "../errors.js";
import type { SinkOptions } from "../registry/sink.js";
import { Tee } from "../util/tee.js";
import { DockerEngine, type LoadedImages, type RegistryAuth } from "./engine.js";
import { isFinalStatus, taskProgress } from "./progress.js";

export function dockerSink(options: SinkOptions): ImageSink {
  const side = new DockerSide(options);
  return {
    name: "docker",
    login: () => side.login(),
    check: () => side.docker().ping(),
    batch: (signal) =>
      Promise.resolve({
        begin: (target, known) =>
          known ? side.known(target, known, signal) : side.streamed(target, signal),
      }),
  };
}

class DockerSide {
  private engine: DockerEngine | undefined;

  constructor(private readonly options: SinkOptions) {}

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

  /** A tarball verified before: loaded from its file (or its bytes) as it is. */
  known(target: ImageTarget, info: ImageTarballInfo, signal: AbortSignal): ImageWrite {
    const { logger, progress } = this.options;
    const started = Date.now();
    let loaded: LoadedImages | undefined;
    return {
      parsed: Promise.resolve(),
      ready: async (source: ImageSource) => {
        assertImageOf(info, target);
        const loadTask = `load ${target.localRef}`;
        logger.info(
          { image: target.localRef, file: source.label },
          `loading ${target.localRef} into the Docker engine`,
        );
        loaded = await progressTask(progress, loadTask, () => {
          const onProgress = (event: Parameters<typeof taskProgress>[1]) => {
            if (event.id === undefined) progress(taskProgress(loadTask, event));
          };
          return source.file
            ? this.docker().loadImage(source.file, {
                signal,
                // The bytes the engine has read are the load's progress; its per-layer counts
                // come one layer at a time and would make the bar jump back.
                onRead: (bytes, total) => {
                  progress({ kind: "bytes", task: loadTask, bytes, total });
                  // All read: the engine still unpacks and commits the layers, for a while.
                  if (total !== undefined && bytes >= total) {
                    progress({ kind: "phase", task: loadTask, phase: "the engine unpacks it" });
                  }
                },
                onProgress,
              })
            : this.docker().loadImageStream(source.open(), source.label, { signal, onProgress });
        });
        return this.publishable(target, info, loaded, signal, started);
      },
      discard: () => this.forget(loaded),
    };
  }

  /** A tarball streaming in: into `docker load` and through the checks at once. */
  streamed(target: ImageTarget, signal: AbortSignal): ImageWrite {
    const { logger, progress } = this.options;
    const started = Date.now();
    const check = createImageStream(target.label);
    const toEngine = new PassThrough({ highWaterMark: 1 << 20 });
    const loadTask = `load ${target.localRef}`;
    logger.info(
      { image: target.localRef, entry: target.label },
      `loading ${target.localRef} into the Docker engine while it is checked`,
    );
    const load = progressTask(progress, loadTask, () =>
      this.docker().loadImageStream(toEngine, target.label, {
        signal,
        onProgress: (event) => progress(taskProgress(loadTask, event)),
      }),
    );
    // An engine that gave up reads no more: the check must not wait for it.
    load.catch(() => toEngine.destroy());
    return {
      sink: new Tee([check.sink, toEngine]),
      parsed: check.result.catch(() => undefined),
      ready: async () => {
        const saved = await check.result;
        assertImageOf(saved.info, target);
        return this.publishable(target, saved.info, await load, signal, started);
      },
      discard: async () => this.forget(await load.catch(() => undefined)),
    };
  }

  private publishable(
    target: ImageTarget,
    info: ImageTarballInfo,
    loaded: LoadedImages,
    signal: AbortSignal,
    started: number,
  ): PublishableImage {
    const source = this.loadedSource(loaded, target.localRef, target.label);
    return { info, publish: () => this.publish(target, source, signal, started) };
  }

  /** The engine's reply names what it loaded; the name the plan expects is preferred. */
  private loadedSource(loaded: LoadedImages, localRef: string, label: string): string {
    const source =
      loaded.references.find((ref) => ref === localRef || ref.endsWith(`/${localRef}`)) ??
      loaded.references[0] ??
      loaded.imageIds[0];
    if (!source) {
      throw new SyncError(`The Docker engine loaded nothing from ${label}`, {
        hint: "re-run prepare to verify the tarball, or use --engine registry",
      });
    }
    if (!loaded.references.includes(localRef)) {
      this.options.logger.warn(
        { expected: localRef, loaded: loaded.references },
        `${label} loaded as ${source}, not ${localRef}; pushing what was loaded`,
      );
    }
    return source;
  }

  /** Tags the loaded image with its remote name and pushes it (then, for the daemon, removes it). */
  private async publish(
    target: ImageTarget,
    source: string,
    signal: AbortSignal,
    started: number,
  ): Promise<PushedItem> {
    const { options } = this;
    const { progress } = options;
    const label = target.remoteRef;
    const repository = `${options.registry.registry}/${target.repository}`;
    await this.docker().tagImage(source, repository, target.tag);
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

  /** What a load left in the engine, for an image that will not be published. */
  private async forget(loaded: LoadedImages | undefined): Promise<void> {
    if (loaded) await this.remove([...loaded.references, ...loaded.imageIds]);
  }

  /** Removes names from the engine; a failure is only worth a warning. */
  private async remove(names: string[]): Promise<void> {
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

/** With --skip-login and no password, the engine is left to use whatever it already knows. */
function emptyAuth(auth: RegistryAuth): RegistryAuth {
  return { ...auth, username: "", password: "" };
}
