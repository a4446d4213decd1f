import type { CycleSummary, Published } from "../domain/daemon.js";
import { SyncError, describeError, setupFaultOf } from "../errors.js";
import { formatBytes } from "../util/bytes.js";
import { ensureDir } from "../util/files.js";
import { computeXref } from "./compare.js";
import type { SyncContext } from "./context.js";
import { backingOff, settleBuilt } from "./built.js";
import type { MissingImage } from "./xref.js";
import {
  StageError,
  errorLine,
  syncOne,
  type Counters,
  type DaemonServices,
  type DaemonSettings,
} from "./daemon-image.js";
import { handledOf, untilNextCycle, type HandledRuns } from "./daemon-poll.js";
import type { WorkflowRun } from "../github/runs.js";

export type { DaemonServices, DaemonSettings } from "./daemon-image.js";

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
    ...rateLimitOf(services),
    failedTags: summary.notSynced.map((f) => f.imageTag),
    seconds: Math.round((Date.now() - started) / 100) / 10,
  });

  let missing: MissingImage[];
  let xref: Awaited<ReturnType<typeof computeXref>>;
  // --retry-now: an operator fixed the cause; this start's first cycle does not wait.
  const ignoreBackoff = settings.retryNow === true && cycle === 1;
  try {
    xref = await computeXref(ctx, services.github, services.gitlab, {
      platform: settings.platform,
    });
    summary.runs = xref.runs;
    summary.listed = xref.listed;
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
    if (waiting && ignoreBackoff) {
      ctx.logger.info(
        { imageTag: image.imageTag, attempts: waiting.attempts, nextRetry: waiting.next_retry },
        `${image.imageTag}: retrying now (--retry-now) instead of waiting until ${waiting.next_retry}`,
      );
    } else if (waiting) {
      summary.deferred += 1;
      summary.notSynced.push({
        imageTag: image.imageTag,
        error: backingOff(waiting),
      });
      ctx.logger.info(
        { imageTag: image.imageTag, attempts: waiting.attempts, nextRetry: waiting.next_retry },
        `${image.imageTag}: failed ${waiting.attempts} time(s), backing off until ${waiting.next_retry}`,
      );
      continue;
    }
    const counters: Counters = { downloadedBytes: 0, pushed: 0, uploadedBytes: 0 };
    try {
      const result = await syncOne(ctx, services, settings, image, counters);
      const published = publishedNow(image, xref.listed);
      if (published) {
        summary.lastPublish = published;
        services.onPublished?.(published);
      }
      summary.pushed += result.pushed;
      summary.synced += 1;
      summary.uploadedBytes += result.uploadedBytes;
      await services.failures.clear(image.imageTag);
      summary.downloadedBytes += counters.downloadedBytes;
    } catch (err) {
      summary.downloadedBytes += counters.downloadedBytes;
      summary.pushed += counters.pushed;
      summary.uploadedBytes += counters.uploadedBytes;
      if (ctx.signal.aborted) break;
      const fault = setupFaultOf(err);
      if (fault !== undefined) {
        // Not this image's fault: every image would fail the same way until the operator
        // fixes it, and then the next run must not find them held back.
        summary.result = "failed";
        summary.error = errorLine(fault);
        summary.cause = fault;
        if (!settings.once)
          ctx.logger.error({ err: summary.error }, `cycle ${cycle}: ${summary.error}`);
        return finish();
      }
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
  if (!ctx.signal.aborted) {
    const built = await settleBuilt(
      ctx,
      {
        ...services.push,
        failures: services.failures,
        steps: services.steps,
        ...(services.indexesWhole ? { indexesWhole: services.indexesWhole } : {}),
      },
      { ...settings, multiarchIndex: settings.multiarchIndex === true, ignoreBackoff },
      { ...xref, missing: new Set(missing.map((m) => m.imageTag)) },
    );
    summary.failed += built.failed.length;
    summary.deferred += built.deferred.length;
    summary.notSynced.push(...built.failed, ...built.deferred);
  }
  if (summary.failed + summary.deferred > 0) summary.result = "partial";
  // A stop is a stop: a cycle a signal cut short is not reported as having gone well.
  if (ctx.signal.aborted) summary.result = "stopped";
  return finish();
}

/** GitHub's rate limit left after the cycle, when an answer told it. */
function rateLimitOf(services: DaemonServices): Pick<CycleSummary, "githubRateLimitRemaining"> {
  const remaining = services.github.client.tally.rateLimit?.remaining;
  return remaining === undefined ? {} : { githubRateLimitRemaining: remaining };
}

/**
 * The publish of an image tag just synced, timed from its newest run's completion (the
 * `updated_at` of a completed run; a clock behind GitHub's counts as no lag at all).
 */
function publishedNow(image: MissingImage, listed: readonly WorkflowRun[]): Published | undefined {
  const runId = image.runs[0]?.id;
  const run = listed.find((r) => r.id === runId);
  if (!run || run.status !== "completed") return undefined;
  const finished = Date.parse(run.updated_at);
  if (!Number.isFinite(finished)) return undefined;
  const now = Date.now();
  return {
    imageTag: image.imageTag,
    runId: run.id,
    lagSeconds: Math.max(0, (now - finished) / 1000),
    at: new Date(now).toISOString(),
  };
}

/** A cycle's summary, and what the daemon needs of it beyond the figures it reports. */
type CycleOutcome = CycleSummary & {
  /** Every run the cycle listed, for the polls that follow (absent when listing failed). */
  listed?: WorkflowRun[];
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
  const waiting = outcome.deferred > 0 ? "; --retry-now retries the ones backing off at once" : "";
  return new SyncError(
    `daemon --once: ${outcome.notSynced.length} image tag(s) not synced: ${each}`,
    {
      hint: `failures and their back-off are kept in the state directory (failures.json)${waiting}`,
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
  await ensureDir(settings.downloadsDir);
  ctx.logger.info(
    {
      downloadsDir: settings.downloadsDir,
      interval: settings.intervalSeconds,
      once: settings.once,
    },
    settings.once
      ? "daemon: one cycle"
      : `daemon started: a full cycle every ${settings.intervalSeconds} s` +
          (settings.pollIntervalSeconds > 0
            ? `, a look for finished runs every ${settings.pollIntervalSeconds} s`
            : ""),
  );
  let handled: HandledRuns | undefined;
  let lastPublish: Published | undefined;
  for (let cycle = 1; ; cycle += 1) {
    let summary;
    try {
      summary = await runCycle(ctx, services, settings, cycle);
    } catch (err) {
      if (ctx.signal.aborted) break;
      throw err;
    }
    // The latest publish is told until a newer one replaces it, not only by its own cycle.
    lastPublish = summary.lastPublish ?? lastPublish;
    if (lastPublish) summary.lastPublish = lastPublish;
    if (summary.listed) handled = handledOf(summary.listed);
    const { notSynced: _notSynced, cause: _cause, listed: _listed, ...forMonitor } = summary;
    // The monitor is told which tags are not synced; the log says so per image already.
    services.onCycle?.(forMonitor);
    await services.recordCycle?.(forMonitor);
    const { failedTags: _tags, ...record } = forMonitor;
    ctx.logger.info(
      { summary: record },
      summaryLine(record, services.push.sink.name === "registry"),
    );
    if (ctx.signal.aborted) break;
    if (settings.once) {
      const failure = onceFailure(summary);
      if (failure) throw failure;
      return;
    }
    try {
      const wake = await untilNextCycle(ctx, services.github, settings, handled);
      handled = wake.handled;
      if (wake.reason === "change") {
        ctx.logger.info(
          { runs: wake.finished.map((r) => r.id) },
          `run(s) ${wake.finished.map((r) => r.id).join(", ")} finished: a cycle now`,
        );
      }
    } catch (err) {
      if (ctx.signal.aborted) break;
      throw err;
    }
  }
  ctx.logger.info("daemon stopped");
}
