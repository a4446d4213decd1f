import { multiarchTagOf } from "../domain/images.js";
import type { StepReporter } from "../domain/events.js";
import { SyncError, describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import type { RegistryClient } from "../registry/client.js";
import type { FailureEntry, FailureState } from "../workspace/failures.js";
import type { SyncContext } from "./context.js";
import { provenanceOfRun } from "./image-provenance.js";
import { shortIndexes, writeMultiarchIndexes, type WrittenIndex } from "./multiarch.js";
import type { RunMetadata } from "../domain/metadata.js";
import type { ExpectedEntry, ExpectedTags } from "./xref.js";

export interface BuiltSettings {
  multiarchIndex: boolean;
  /** The back-off does not hold this cycle (`daemon --retry-now`, first cycle). */
  ignoreBackoff: boolean;
  registry: string;
  registryProject: string;
}

export interface BuiltServices {
  registryClient: RegistryClient;
  failures: FailureState;
  steps: (logger: Logger) => StepReporter;
  /**
   * Image tags whose indexes were found listing every platform (or written) since the daemon
   * started: checked once, not every cycle. Without it, every cycle checks every build.
   */
  indexesWhole?: Set<string>;
}

export interface BuiltOutcome {
  /** Builds whose index could not be written, with why. */
  failed: Array<{ imageTag: string; error: string }>;
  /** Builds whose index write waits out a back-off, with the failure it waits after. */
  deferred: Array<{ imageTag: string; error: string }>;
  indexesWritten: number;
}

/** Why an image tag is not tried this cycle. */
export function backingOff(entry: FailureEntry): string {
  return `backing off until ${entry.next_retry} after ${entry.attempts} failure(s): ${entry.last_error}`;
}

/** The daemon's index stage: every tag of the build, pushed now or already there. */
export function indexBuild(
  ctx: SyncContext,
  client: RegistryClient,
  steps: StepReporter,
  settings: Pick<BuiltSettings, "registry" | "registryProject"> & { retagAsLatest: boolean },
  image: { metadata: RunMetadata; runs: ReadonlyArray<{ id: number; htmlUrl?: string }> },
  pushed: { pushed: ReadonlyArray<{ gitlabTag: string }>; skipped: readonly string[] },
): Promise<WrittenIndex[]> {
  const run = image.runs[0];
  return writeMultiarchIndexes(ctx, client, steps, {
    registry: settings.registry,
    registryProject: settings.registryProject,
    gitlabTags: [...pushed.pushed.map((p) => p.gitlabTag), ...pushed.skipped],
    ...(run ? { provenance: provenanceOfRun(image.metadata, run) } : {}),
    retagAsLatest: settings.retagAsLatest,
  });
}

/**
 * The builds xref found complete in GitLab (none of their tags missing). A failure recorded for
 * one of them has nothing left to retry and is cleared, so `status` stops reporting it; with
 * `--multiarch-index`, a build whose index tag GitLab does not list, or whose index write failed
 * (its failure entry says so), gets its indexes written now, without any download.
 */
export async function settleBuilt(
  ctx: SyncContext,
  services: BuiltServices,
  settings: BuiltSettings,
  xref: { expected: ExpectedTags; present: ReadonlySet<string>; missing: ReadonlySet<string> },
): Promise<BuiltOutcome> {
  const outcome: BuiltOutcome = { failed: [], deferred: [], indexesWritten: 0 };
  const builds = new Map<string, ExpectedEntry[]>();
  for (const entry of xref.expected.byGitlabTag.values()) {
    if (xref.missing.has(entry.imageTag)) continue;
    builds.set(entry.imageTag, [...(builds.get(entry.imageTag) ?? []), entry]);
  }
  const recorded = await services.failures.load();
  for (const [imageTag, entries] of builds) {
    if (ctx.signal.aborted) break;
    const failure = recorded[imageTag];
    const indexMissing = entries.some((e) => {
      const index = multiarchTagOf(e.gitlabTag);
      return index !== undefined && !xref.present.has(`${index.repoPath}:${index.tag}`);
    });
    const indexShort =
      settings.multiarchIndex &&
      !failure &&
      !indexMissing &&
      (await someIndexShort(ctx, services, settings, imageTag, entries));
    if (!settings.multiarchIndex || (!failure && !indexMissing && !indexShort)) {
      if (failure) {
        await services.failures.clear(imageTag);
        ctx.logger.info(
          { imageTag },
          `${imageTag}: every tag is in GitLab; failure record cleared`,
        );
      }
      continue;
    }
    if (failure && !settings.ignoreBackoff && new Date(failure.next_retry) > new Date()) {
      outcome.deferred.push({ imageTag, error: backingOff(failure) });
      continue;
    }
    const logger = ctx.logger.child({ imageTag });
    const first = entries[0] as ExpectedEntry;
    try {
      const written = await writeMultiarchIndexes(
        { logger, signal: ctx.signal },
        services.registryClient,
        services.steps(logger),
        {
          registry: settings.registry,
          registryProject: settings.registryProject,
          gitlabTags: entries.map((e) => e.gitlabTag),
          provenance: provenanceOfRun(first.metadata, first.run),
        },
      );
      outcome.indexesWritten += written.filter((w) => w.written).length;
      services.indexesWhole?.add(imageTag);
      if (failure) await services.failures.clear(imageTag);
    } catch (err) {
      if (ctx.signal.aborted) break;
      const message = `index failed: ${err instanceof SyncError ? err.oneLine() : describeError(err)}`;
      const entry = await services.failures.recordFailure(imageTag, message);
      outcome.failed.push({ imageTag, error: message });
      logger.error(
        { imageTag, stage: "index", attempts: entry.attempts, nextRetry: entry.next_retry },
        `${imageTag}: ${message} (attempt ${entry.attempts}; next try after ${entry.next_retry})`,
      );
    }
  }
  return outcome;
}

/**
 * Whether an index of the build, though its tag is there, lacks an image the registry holds
 * (a writer stopped between pushing an image and writing the index). A check that fails is
 * told and tried again next cycle; it does not fail the build.
 */
async function someIndexShort(
  ctx: SyncContext,
  services: BuiltServices,
  settings: Pick<BuiltSettings, "registryProject">,
  imageTag: string,
  entries: readonly ExpectedEntry[],
): Promise<boolean> {
  if (services.indexesWhole?.has(imageTag)) return false;
  try {
    const short = await shortIndexes(ctx, services.registryClient, {
      registryProject: settings.registryProject,
      gitlabTags: entries.map((e) => e.gitlabTag),
    });
    if (short.length === 0) {
      services.indexesWhole?.add(imageTag);
      return false;
    }
    ctx.logger.info(
      { imageTag, indexes: short },
      `${imageTag}: ${short.length === 1 ? "the index" : "the indexes"} ${short.join(", ")} ${short.length === 1 ? "lacks" : "lack"} an image the registry holds; writing again`,
    );
    return true;
  } catch (err) {
    if (ctx.signal.aborted) return false;
    const message = err instanceof SyncError ? err.oneLine() : describeError(err);
    ctx.logger.warn({ imageTag }, `${imageTag}: could not check its indexes: ${message}`);
    return false;
  }
}
