/**
 * The registry as a sink (archive/image-source.ts): images written over the distribution API by
 * the one registry writer (image-push.ts), whatever source they are read from. A streamed image
 * has its layers compressed and uploaded while its bytes pass the checks; a known one (prepared
 * on disk) is read only for what the registry lacks. Publishing is the manifest PUT.
 */
import path from "node:path";
import { Writable } from "node:stream";
import { assertImageOf } from "../archive/docker-save.js";
import type { ImageSink, ImageTarget, ImageWrite } from "../archive/image-source.js";
import { createImageStream, type ImageTarballInfo } from "../archive/image-stream.js";
import type { ProgressListener } from "../domain/events.js";
import { pushedItem } from "../domain/pushed.js";
import type { Logger } from "../report/logger.js";
import { formatBytes } from "../util/bytes.js";
import { Tee } from "../util/tee.js";
import type { RegistryClient } from "./client.js";
import { BundlePush } from "./bundle-push.js";
import { ImagePush, type ReadyImage } from "./image-push.js";
import { LayerCache, LAYER_CACHE_FILE } from "./layer-cache.js";
import { learnFromRegistry } from "./layer-learning.js";

export interface SinkOptions {
  logger: Logger;
  /** The registry API client (the Docker sink only takes its address). */
  registry: RegistryClient;
  username: string;
  password: string | undefined;
  stateDir: string;
  /** Told how each image moves; it decides how that is shown. */
  progress: ProgressListener;
  env?: NodeJS.ProcessEnv;
  /**
   * Docker sink: remove the loaded image and its remote name once pushed. The daemon sets it,
   * or months of 11 GiB bundles would fill the engine's disk; a manual push leaves them, as the
   * original did.
   */
  removeAfterPush?: boolean;
}

export function registrySink(options: SinkOptions): ImageSink {
  const { logger, registry } = options;
  return {
    name: "registry",
    login: (signal) => registry.login(signal),
    check: () => Promise.resolve(),
    async batch(signal, targets) {
      const cache = await LayerCache.open(path.join(options.stateDir, LAYER_CACHE_FILE), logger);
      // What the registry already holds teaches the cache, for a host without state of its own.
      const repositories = [...new Set(targets.map((target) => target.repository))];
      const tag = targets[0]?.tag ?? "";
      await learnFromRegistry({ client: registry, cache, logger, repositories, tag, signal });
      const bundle = new BundlePush({ client: registry, cache, logger, signal });
      return { begin: (target, known) => begin(options, bundle, target, known) };
    },
  };
}

/** One image: streamed through the checks into the writer, or, when known, read only for what is missing. */
function begin(
  options: SinkOptions,
  bundle: BundlePush,
  target: ImageTarget,
  known: ImageTarballInfo | undefined,
): ImageWrite {
  const { progress, logger } = options;
  const started = Date.now();
  const push = new ImagePush(bundle, target);
  // The push bar: the image's bytes as they stream in, or, known, the bytes read again.
  const task = `push ${target.repository}:${target.tag}`;
  progress({ kind: "start", task, ...(target.size ? { total: target.size } : {}) });
  let open = true;
  // What the push does when no byte count moves: said on its line instead of a bar at 100 %.
  const phase = (text: string) => {
    if (open) progress({ kind: "phase", task, phase: text });
  };
  /** The read again of the layers the registry lacks; its bytes are the bar, then the tail. */
  let toRead = 0;
  const reading = {
    planned: (event: { toUpload: number; bytesToRead: number }) => {
      toRead = event.bytesToRead;
      if (event.toUpload === 0) phase("every layer there; committing");
    },
    read: (bytes: number) => {
      if (toRead <= 0) return;
      progress({ kind: "bytes", task, bytes, total: toRead });
      if (bytes >= toRead) phase("uploading, committing");
    },
  };
  const end = (ok: boolean) => {
    if (open) progress({ kind: "end", task, ok });
    open = false;
  };
  const publishable = (info: ImageTarballInfo, image: ReadyImage) => ({
    info,
    async publish() {
      phase("writing the manifest");
      const manifest = await image.publish();
      end(true);
      const sent = image.layers.filter((l) => l.action === "uploaded").length;
      const learned = image.layers.filter((l) => l.learned && l.action !== "uploaded").length;
      return pushedItem(manifest.digest, {
        sent,
        reused: image.layers.length - sent,
        learned,
        bytes: image.bytesUploaded,
        bytesKind: "compressed",
        seconds: (Date.now() - started) / 1000,
      });
    },
  });
  // Blobs publish nothing, and a later push may use them: nothing to take back. Its uploads
  // are waited for, so that a stopped one is left for the next run to take up.
  const discard = async () => {
    end(false);
    await push.settled();
  };
  if (known) {
    return {
      parsed: Promise.resolve(),
      async ready(source) {
        // Whichever source: the image must be the one the plan names (prepare checked it too).
        assertImageOf(known, target);
        phase("checking the registry");
        const image = await push.complete({ info: known }, source, {
          planned(event) {
            logger.debug(
              { image: target.remoteRef, layers: event.layers, toUpload: event.toUpload },
              `${target.remoteRef}: ${event.toUpload} of ${event.layers} layers to upload (${formatBytes(event.bytesToRead)} to read)`,
            );
            reading.planned(event);
          },
          read: reading.read,
        });
        return publishable(known, image);
      },
      discard,
    };
  }
  const stream = createImageStream(target.label, push.onLayer);
  let fed = 0;
  const meter = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      fed += chunk.length;
      progress({ kind: "bytes", task, bytes: fed, ...(target.size ? { total: target.size } : {}) });
      callback();
    },
  });
  return {
    sink: new Tee([stream.sink, meter]),
    parsed: stream.result.catch(() => undefined),
    async ready(source) {
      const saved = await stream.result;
      assertImageOf(saved.info, target);
      // Streamed in: what is left is the uploads' tail and the commits (a read again, if any).
      phase("uploading, committing");
      return publishable(saved.info, await push.complete(saved, source, reading));
    },
    discard,
  };
}
