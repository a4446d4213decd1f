import { promises as fs } from "node:fs";
import type { CycleSummary } from "../domain/daemon.js";
import type { ProgressListener, StepReporter } from "../domain/events.js";
import { SyncError, describeError, isDamagedInput } from "../errors.js";
import { sleep } from "../net/retry.js";
import type { Logger } from "../report/logger.js";
import { formatBytes } from "../util/bytes.js";
import { exists } from "../util/files.js";
import type { FailureState } from "../workspace/failures.js";
import { tagLayout } from "../workspace/layout.js";
import { cleanTargets, removeTargets } from "./clean.js";
import { computeXref } from "./compare.js";
import type { GithubServices, GitlabServices, SyncContext } from "./context.js";
import { downloadImageTag } from "./download.js";
import { prepareImageTag } from "./prepare.js";
import type { PushServices } from "./push.js";
import { pushImageTag } from "./push.js";
import type { MissingImage } from "./xref.js";
import type { StreamEngine } from "./stream-engines.js";
import { syncImageTag } from "./stream.js";

export interface DaemonSettings {
  downloadsDir: string;
  intervalSeconds: number;
  once: boolean;
  skipLogin: boolean;
  forcePush: boolean;
  retagAsLatest: boolean;
  registry: string;
  registryProject: string;
  username: string;
  /** The streaming sync (default); false is `--no-stream`: download → prepare → push → clean. */
  stream: boolean;
}

export interface DaemonServices {
  github: GithubServices;
  gitlab: GitlabServices;
  push: Omit<PushServices, "gitlab">;
  /** The engine as the streaming sync drives it. */
  stream: StreamEngine;
  failures: FailureState;
  /** The step lines of one image tag, through that image's logger. */
  steps: (logger: Logger) => StepReporter;
  /** Where the transfers of one image tag report how they move. */
  progress: (logger: Logger) => ProgressListener;
  /** Told of each finished cycle (the health endpoint and metrics). */
  onCycle?: (summary: CycleSummary) => void;
}

/** An error as one log line: a SyncError with its hint, anything else as it describes itself. */
function errorLine(err: unknown): string {
  return err instanceof SyncError ? err.oneLine() : describeError(err);
}

type Stage = "download" | "prepare" | "push" | "clean" | "sync";

class StageError extends Error {
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

/** What an image moved, counted as it happens: an image that fails after its download still downloaded. */
interface Counters {
  downloadedBytes: number;
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

/** One image tag: streamed (download, verify and push at once), or step by step. */
async function syncOne(
  ctx: SyncContext,
  services: DaemonServices,
  settings: DaemonSettings,
  image: MissingImage,
  counters: Counters,
): Promise<ImageResult> {
  if (!settings.stream) return stepByStep(ctx, services, settings, image, counters);
  const logger = ctx.logger.child({ imageTag: image.imageTag });
  const sub: SyncContext = { logger, signal: ctx.signal };
  const fetched = { fetched: 0 };
  try {
    const outcome = await discardingBad(ctx, settings, image, () =>
      stage("sync", () =>
        syncImageTag(
          sub,
          services.steps(logger),
          {
            github: services.github,
            gitlab: services.gitlab,
            registryClient: services.push.registryClient,
            engine: services.stream,
          },
          {
            imageTag: image.imageTag,
            downloadsDir: settings.downloadsDir,
            registry: settings.registry,
            registryProject: settings.registryProject,
            username: settings.username,
            forceDownload: false,
            forcePush: settings.forcePush,
            skipLogin: settings.skipLogin,
            retagAsLatest: settings.retagAsLatest,
            daemon: true,
            progress: services.progress(logger),
            counters: fetched,
          },
        ),
      ),
    );
    return { pushed: outcome.pushed.length, uploadedBytes: outcome.bytesUploaded };
  } finally {
    counters.downloadedBytes += fetched.fetched;
  }
}

/** download → prepare → push → clean for one image tag, as the original's daemon does. */
async function stepByStep(
  ctx: SyncContext,
  services: DaemonServices,
  settings: DaemonSettings,
  image: MissingImage,
  counters: Counters,
): Promise<ImageResult> {
  const logger = ctx.logger.child({ imageTag: image.imageTag });
  const steps = services.steps(logger);
  const sub: SyncContext = { logger, signal: ctx.signal };
  const layout = tagLayout(settings.downloadsDir, image.imageTag);
  const run = image.runs[0];
  const runIds = run ? [run.id] : [];

  if ((await exists(layout.zip)) && (await exists(layout.metadata))) {
    logger.info(`artifact already downloaded at ${layout.zip}; skipping download`);
  } else {
    const outcome = await stage("download", () =>
      downloadImageTag(sub, services.github, steps, {
        imageTag: image.imageTag,
        downloadsDir: settings.downloadsDir,
        force: false,
        progress: services.progress(logger),
        daemon: true,
      }),
    );
    counters.downloadedBytes += outcome.fetched;
  }

  const prepared = await discardingBad(ctx, settings, image, () =>
    stage("prepare", () =>
      prepareImageTag(sub, steps, {
        imageTag: image.imageTag,
        downloadsDir: settings.downloadsDir,
        clean: false,
      }),
    ),
  );

  const pushed = await discardingBad(ctx, settings, image, () =>
    stage("push", () =>
      pushImageTag(
        sub,
        steps,
        { ...services.push, gitlab: services.gitlab },
        {
          imageTag: image.imageTag,
          downloadsDir: settings.downloadsDir,
          registry: settings.registry,
          registryProject: settings.registryProject,
          username: settings.username,
          force: settings.forcePush,
          skipLogin: settings.skipLogin,
          retagAsLatest: settings.retagAsLatest,
          images: prepared.images,
          ...(run ? { run: { kind: "cached", run: { id: run.id, title: run.title } } } : {}),
        },
      ),
    ),
  );

  await stage("clean", async () => {
    const removed = await removeTargets(
      await cleanTargets(settings.downloadsDir, image.imageTag, runIds),
    );
    logger.info(
      { removed: removed.length },
      `cleaned ${removed.length} path(s) of ${image.imageTag}`,
    );
  });
  return { pushed: pushed.pushed.length, uploadedBytes: pushed.bytesUploaded };
}

/** Oldest run first, so builds reach GitLab in the order they were made; ties by tag. */
function oldestFirst(a: MissingImage, b: MissingImage): number {
  const at = a.runs[0]?.startedAt ?? "";
  const bt = b.runs[0]?.startedAt ?? "";
  return at.localeCompare(bt) || a.imageTag.localeCompare(b.imageTag);
}

/** One cycle: xref, then each missing image tag not waiting out a back-off. Never throws for outside failures. */
export async function runCycle(
  ctx: SyncContext,
  services: DaemonServices,
  settings: DaemonSettings,
  cycle: number,
): Promise<CycleOutcome> {
  const started = Date.now();
  const summary: CycleOutcome = {
    cycle,
    result: "ok",
    startedAt: new Date(started).toISOString(),
    seconds: 0,
    runs: 0,
    missing: 0,
    pushed: 0,
    synced: 0,
    failed: 0,
    deferred: 0,
    downloadedBytes: 0,
    uploadedBytes: 0,
    logBytes: 0,
    notSynced: [],
  };
  const finish = (): CycleOutcome => ({
    ...summary,
    failedTags: summary.notSynced.map((f) => f.imageTag),
    seconds: Math.round((Date.now() - started) / 100) / 10,
  });

  let missing: MissingImage[];
  try {
    const xref = await computeXref(ctx, services.github, services.gitlab);
    summary.runs = xref.runs;
    summary.logBytes = xref.logBytes;
    missing = [...xref.result.missing].sort(oldestFirst);
    summary.missing = missing.length;
    for (const { run, imageTag } of xref.result.invalid) {
      ctx.logger.warn(
        { runId: run.id },
        `run ${run.id}: invalid image tag '${imageTag}' in its metadata; not mirrored`,
      );
    }
    for (const failure of xref.failures) {
      ctx.logger.warn(
        { runId: failure.runId },
        `metadata of run ${failure.runId} unreadable: ${failure.error}`,
      );
    }
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    summary.result = "failed";
    summary.error = errorLine(err);
    summary.cause = err;
    // With --once the closing error line says it; said here as well, it would be said twice.
    if (!settings.once) {
      ctx.logger.error(
        { err: summary.error },
        `cycle ${cycle}: cross-reference failed: ${summary.error}`,
      );
    }
    return finish();
  }
  if (missing.length > 0) {
    ctx.logger.info(
      { missing: missing.map((m) => m.imageTag) },
      `cycle ${cycle}: ${missing.length} image tag(s) missing from GitLab`,
    );
  }

  for (const image of missing) {
    if (ctx.signal.aborted) break;
    const waiting = await services.failures.waiting(image.imageTag);
    if (waiting) {
      summary.deferred += 1;
      summary.notSynced.push({
        imageTag: image.imageTag,
        error: `backing off until ${waiting.next_retry} after ${waiting.attempts} failure(s): ${waiting.last_error}`,
      });
      ctx.logger.info(
        { imageTag: image.imageTag, attempts: waiting.attempts, nextRetry: waiting.next_retry },
        `${image.imageTag}: failed ${waiting.attempts} time(s), backing off until ${waiting.next_retry}`,
      );
      continue;
    }
    const counters: Counters = { downloadedBytes: 0 };
    try {
      const result = await syncOne(ctx, services, settings, image, counters);
      summary.pushed += result.pushed;
      summary.synced += 1;
      summary.uploadedBytes += result.uploadedBytes;
      await services.failures.clear(image.imageTag);
      summary.downloadedBytes += counters.downloadedBytes;
    } catch (err) {
      summary.downloadedBytes += counters.downloadedBytes;
      if (ctx.signal.aborted) break;
      const message = describeError(err);
      const entry = await services.failures.recordFailure(image.imageTag, message);
      summary.failed += 1;
      summary.notSynced.push({ imageTag: image.imageTag, error: message });
      ctx.logger.error(
        {
          imageTag: image.imageTag,
          stage: err instanceof StageError ? err.stage : undefined,
          attempts: entry.attempts,
          nextRetry: entry.next_retry,
        },
        `${image.imageTag}: ${message} (attempt ${entry.attempts}; next try after ${entry.next_retry})`,
      );
    }
  }
  if (summary.failed + summary.deferred > 0) summary.result = "partial";
  // A stop is a stop: a cycle a signal cut short is not reported as having gone well.
  if (ctx.signal.aborted) summary.result = "stopped";
  return finish();
}

/** A cycle's summary, and what the daemon needs of it beyond the figures it reports. */
type CycleOutcome = CycleSummary & {
  /** Each image tag not synced, with why (`failedTags` names them). */
  notSynced: Array<{ imageTag: string; error: string }>;
  /** What made the cycle fail as a whole. */
  cause?: unknown;
};

/**
 * The cycle's one line: its figures, each byte count in the unit that keeps it readable. Bytes
 * uploaded only where they are known: the Docker engine does not say what it sent.
 */
export function summaryLine(s: CycleSummary, uploadsCounted: boolean): string {
  const uploaded = uploadsCounted ? `${formatBytes(s.uploadedBytes)} uploaded, ` : "";
  const result = s.result === "stopped" ? "stopped by a signal" : s.result;
  return (
    `cycle ${s.cycle} ${result}: ${s.runs} runs, ${s.missing} missing, ${s.pushed} tags pushed, ` +
    `${s.failed} failed, ${s.deferred} backing off, ${formatBytes(s.downloadedBytes)} downloaded, ` +
    `${uploaded}${formatBytes(s.logBytes)} of logs read, ${s.seconds} s`
  );
}

/** `--once`'s closing error: the failed cycle's own error, or every tag not synced with its error. */
function onceFailure(outcome: CycleOutcome): SyncError | undefined {
  if (outcome.result === "failed") {
    const cause = outcome.cause;
    const message = cause instanceof SyncError ? cause.message : (outcome.error ?? "unknown error");
    return new SyncError(`daemon --once: cycle failed: ${message}`, {
      hint: cause instanceof SyncError && cause.hint ? cause.hint : "rerun with --log-level debug",
      cause,
    });
  }
  if (outcome.notSynced.length === 0) return undefined;
  const each = outcome.notSynced.map((f) => `${f.imageTag}: ${f.error}`).join("; ");
  return new SyncError(
    `daemon --once: ${outcome.notSynced.length} image tag(s) not synced: ${each}`,
    {
      hint: "failures and their back-off are kept in the state directory (failures.json)",
    },
  );
}

/**
 * The daemon loop: a cycle every `intervalSeconds` until the signal aborts (SIGTERM/SIGINT), or a
 * single cycle with `once`. Outside failures end a cycle, never the daemon. With `once`, an image
 * that failed (or is still backing off) makes the run fail, so CI sees it.
 */
export async function runDaemon(
  ctx: SyncContext,
  services: DaemonServices,
  settings: DaemonSettings,
): Promise<void> {
  await fs.mkdir(settings.downloadsDir, { recursive: true });
  ctx.logger.info(
    {
      downloadsDir: settings.downloadsDir,
      interval: settings.intervalSeconds,
      once: settings.once,
    },
    settings.once
      ? "daemon: one cycle"
      : `daemon started: a cycle every ${settings.intervalSeconds} s`,
  );
  for (let cycle = 1; ; cycle += 1) {
    let summary;
    try {
      summary = await runCycle(ctx, services, settings, cycle);
    } catch (err) {
      if (ctx.signal.aborted) break;
      throw err;
    }
    const { notSynced: _notSynced, cause: _cause, ...forMonitor } = summary;
    // The monitor is told which tags are not synced; the log says so per image already.
    services.onCycle?.(forMonitor);
    const { failedTags: _tags, ...record } = forMonitor;
    ctx.logger.info(
      { summary: record },
      summaryLine(record, services.push.pusher.name === "registry"),
    );
    if (ctx.signal.aborted) break;
    if (settings.once) {
      const failure = onceFailure(summary);
      if (failure) throw failure;
      return;
    }
    try {
      await sleep(settings.intervalSeconds * 1000, ctx.signal);
    } catch (err) {
      if (ctx.signal.aborted) break;
      throw err;
    }
  }
  ctx.logger.info("daemon stopped");
}
