/**
 * One image tag of a daemon cycle: the streaming sync (the default), or `--no-stream`'s step by
 * step download → prepare → push → clean; then, with `--multiarch-index`, its indexes. Each
 * stage's failure is named by its stage, and one that proves the artifact bad removes it.
 */
import { SyncError, describeError, isDamagedInput } from "../errors.js";
import { exists } from "../util/files.js";
import { tagLayout } from "../workspace/layout.js";
import { indexBuild } from "./built.js";
import { cleanTargets, removeTargets } from "./clean.js";
import type { CycleSummary, Published } from "../domain/daemon.js";
import type { ProgressListener, StepReporter } from "../domain/events.js";
import type { Logger } from "../report/logger.js";
import type { FailureState } from "../workspace/failures.js";
import type { GithubServices, GitlabServices, SyncContext } from "./context.js";
import { downloadImageTag } from "./download.js";
import { prepareImageTag } from "./prepare.js";
import { pushImageTag, type PushOutcome, type PushRequest, type PushServices } from "./push.js";
import { syncImageTag } from "./stream.js";
import type { MissingImage } from "./xref.js";

export interface DaemonSettings {
  downloadsDir: string;
  /** The full cycle: GitHub and GitLab listed in full, at least this often. */
  intervalSeconds: number;
  /** `--poll-interval`: between full cycles, a conditional look for finished runs; 0 is none. */
  pollIntervalSeconds: number;
  once: boolean;
  skipLogin: boolean;
  forcePush: boolean;
  retagAsLatest: boolean;
  registry: string;
  registryProject: string;
  username: string;
  /** The streaming sync (default); false is `--no-stream`: download → prepare → push → clean. */
  stream: boolean;
  /** `--platform`: only the builds of this platform. */
  platform?: string;
  /** `--multiarch-index`: each build's repositories get their index (see sync/multiarch). */
  multiarchIndex?: boolean;
  /** `--retry-now`: the first cycle of this start does not wait out any back-off. */
  retryNow?: boolean;
}

export interface DaemonServices {
  github: GithubServices;
  gitlab: GitlabServices;
  /** The registry, and the sink every image goes into (streamed, or step by step). */
  push: Omit<PushServices, "gitlab">;
  failures: FailureState;
  /** Builds whose indexes were found whole since the start (see BuiltServices). */
  indexesWhole?: Set<string>;
  /** The step lines of one image tag, through that image's logger. */
  steps: (logger: Logger) => StepReporter;
  /** Where the transfers of one image tag report how they move. */
  progress: (logger: Logger) => ProgressListener;
  /** Told of artifact bytes as a download fetches them (the metrics), before its cycle ends. */
  onDownloaded?: (bytes: number) => void;
  /** Told of each finished cycle (the health endpoint and metrics). */
  onCycle?: (summary: CycleSummary) => void;
  /** Told of each image tag published, with its lag behind its run's completion. */
  onPublished?: (published: Published) => void;
  /** Keeps each finished cycle's summary where `status` reads it; must not throw. */
  recordCycle?: (summary: CycleSummary) => Promise<void>;
}

/** An error as one log line: a SyncError with its hint, anything else as it describes itself. */
export function errorLine(err: unknown): string {
  return err instanceof SyncError ? err.oneLine() : describeError(err);
}

type Stage = "download" | "prepare" | "push" | "clean" | "sync" | "index";

export class StageError extends Error {
  constructor(
    readonly stage: Stage,
    readonly original: unknown,
  ) {
    super(`${stage} failed: ${errorLine(original)}`, { cause: original });
  }
}

async function stage<T>(name: Stage, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new StageError(name, err);
  }
}

interface ImageResult {
  pushed: number;
  uploadedBytes: number;
}

/**
 * What an image moved, counted as it happens: an image that fails after its download still
 * downloaded, and a streamed one whose tarball failed still pushed its siblings.
 */
export interface Counters {
  downloadedBytes: number;
  /** Tags published by an image tag that then failed (the streaming sync's siblings). */
  pushed: number;
  uploadedBytes: number;
}

/**
 * Runs a stage whose failure may prove the artifact bad (a damaged zip, an image that does not
 * verify, a layer that does not match its diff-id): then, and only then, the tag's files go, so
 * the retry after the back-off downloads afresh. A full disk, a permission or a signal proves
 * nothing about the artifact, which is kept for the next try.
 */
async function discardingBad<T>(
  ctx: SyncContext,
  settings: DaemonSettings,
  image: MissingImage,
  run: () => Promise<T>,
): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (!ctx.signal.aborted && isDamagedInput(err)) {
      const runIds = image.runs[0] ? [image.runs[0].id] : [];
      const removed = await removeTargets(
        await cleanTargets(settings.downloadsDir, image.imageTag, runIds),
      );
      ctx.logger.warn(
        { imageTag: image.imageTag, removed: removed.length },
        `${image.imageTag}: the artifact is bad; removed it so the next try downloads it afresh`,
      );
    }
    throw err;
  }
}

/**
 * One image tag: read from its source — the artifact streamed (download, verify and push at
 * once), or step by step (download, prepare, then the prepared tarballs) — into the sink; then,
 * with `--multiarch-index`, its indexes.
 */
export async function syncOne(
  ctx: SyncContext,
  services: DaemonServices,
  settings: DaemonSettings,
  image: MissingImage,
  counters: Counters,
): Promise<ImageResult> {
  const logger = ctx.logger.child({ imageTag: image.imageTag });
  const sub: SyncContext = { logger, signal: ctx.signal };
  const steps = services.steps(logger);
  // The download's count as it grows, passed on (the metrics move during a download).
  let seen = 0;
  const moved = {
    get fetched(): number {
      return seen;
    },
    set fetched(total: number) {
      services.onDownloaded?.(total - seen);
      seen = total;
    },
    pushed: 0,
    uploadedBytes: 0,
  };
  const request = {
    imageTag: image.imageTag,
    downloadsDir: settings.downloadsDir,
    registry: settings.registry,
    registryProject: settings.registryProject,
    username: settings.username,
    force: settings.forcePush,
    skipLogin: settings.skipLogin,
    retagAsLatest: settings.retagAsLatest,
    counters: moved,
  };
  const publish = { ...services.push, gitlab: services.gitlab };
  try {
    const outcome = settings.stream
      ? await discardingBad(ctx, settings, image, () =>
          stage("sync", () =>
            syncImageTag(
              sub,
              steps,
              { ...publish, github: services.github },
              {
                ...request,
                forceDownload: false,
                daemon: true,
                progress: services.progress(logger),
              },
            ),
          ),
        )
      : await stepByStep(sub, services, settings, image, request);
    // After the clean: the images are in, so a failing index leaves no download behind; the
    // next cycles retry the index alone (see built.ts).
    if (settings.multiarchIndex) {
      await stage("index", () =>
        indexBuild(sub, services.push.registryClient, steps, settings, image, outcome),
      );
    }
    return { pushed: outcome.pushed.length, uploadedBytes: outcome.bytesUploaded };
  } finally {
    counters.downloadedBytes += moved.fetched;
    counters.pushed = moved.pushed;
    counters.uploadedBytes = moved.uploadedBytes;
  }
}

/** `--no-stream`: download → prepare → push → clean, as the original's daemon does. */
async function stepByStep(
  ctx: SyncContext,
  services: DaemonServices,
  settings: DaemonSettings,
  image: MissingImage,
  request: PushRequest & { counters: { fetched: number } },
): Promise<PushOutcome> {
  const { logger } = ctx;
  const steps = services.steps(logger);
  const layout = tagLayout(settings.downloadsDir, image.imageTag);
  const run = image.runs[0];
  if ((await exists(layout.zip)) && (await exists(layout.metadata))) {
    logger.info(`artifact already downloaded at ${layout.zip}; skipping download`);
  } else {
    const outcome = await stage("download", () =>
      downloadImageTag(ctx, services.github, steps, {
        imageTag: image.imageTag,
        downloadsDir: settings.downloadsDir,
        force: false,
        progress: services.progress(logger),
        daemon: true,
      }),
    );
    request.counters.fetched = outcome.fetched;
  }
  const prepared = await discardingBad(ctx, settings, image, () =>
    stage("prepare", () =>
      prepareImageTag(ctx, steps, {
        imageTag: image.imageTag,
        downloadsDir: settings.downloadsDir,
        clean: false,
      }),
    ),
  );
  const pushed = await discardingBad(ctx, settings, image, () =>
    stage("push", () =>
      pushImageTag(
        ctx,
        steps,
        { ...services.push, gitlab: services.gitlab },
        {
          ...request,
          images: prepared.images,
          ...(run ? { run: { kind: "cached", run: { id: run.id, title: run.title } } } : {}),
        },
      ),
    ),
  );
  await stage("clean", async () => {
    const removed = await removeTargets(
      await cleanTargets(settings.downloadsDir, image.imageTag, run ? [run.id] : []),
    );
    logger.info(
      { removed: removed.length },
      `cleaned ${removed.length} path(s) of ${image.imageTag}`,
    );
  });
  return pushed;
}
