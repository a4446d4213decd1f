import { formatBytes } from "../util/bytes.js";
import type { RunMetadata } from "../domain/metadata.js";
import { SyncError, describeError } from "../errors.js";
import type { GithubClient } from "../github/client.js";
import { NoMetadataError, toGithubError } from "../github/errors.js";
import { fetchRunMetadata, type LogSource } from "../github/metadata.js";
import { listWorkflowRuns, type WorkflowRun } from "../github/runs.js";
import { isBuildOf } from "../domain/images.js";
import { mapLimit } from "../net/limit.js";
import type { Logger } from "../report/logger.js";
import type { CacheEntry, MetadataCache } from "../workspace/state.js";
import type { GithubServices, SyncContext } from "./context.js";
import { newestFirst } from "./xref.js";

export interface CollectRunMetadataOptions {
  repo: string;
  runs: WorkflowRun[];
  cache?: MetadataCache;
  logger: Logger;
  /** Runs read at once; default 4. */
  concurrency?: number;
  /** Stops picking up runs; the requests themselves end on the client's own signal. */
  signal?: AbortSignal;
  tmpDir?: string;
}

export interface CollectedRunMetadata {
  run: WorkflowRun;
  result?: {
    runId: number;
    metadata: RunMetadata;
    source: "cache" | LogSource;
    /** Bytes of log downloaded for this answer (0 from the cache). */
    bytesFetched: number;
  };
  error?: SyncError;
}

/*
 * The cache policy: only a completed run's answer is kept (an in-progress run may still print
 * its block), and only an answer read from the logs, a block or a NoMetadataError (a network
 * failure is tried again next time); a cache hit is never stored again. A cache that cannot be
 * read or written costs a warning and a log read, never the run.
 */

async function fromCache(
  cache: MetadataCache | undefined,
  run: WorkflowRun,
  logger: Logger,
): Promise<CollectedRunMetadata | undefined> {
  let cached;
  try {
    cached = await cache?.get(run);
  } catch (err) {
    logger.warn(
      { runId: run.id, err: describeError(err) },
      "metadata cache unreadable; reading the logs",
    );
    return undefined;
  }
  if (!cached) return undefined;
  if (cached.metadata === null) return { run, error: new NoMetadataError(run.id) };
  return {
    run,
    result: { runId: run.id, metadata: cached.metadata, source: "cache", bytesFetched: 0 },
  };
}

function cacheEntry({ result, error }: CollectedRunMetadata): CacheEntry | undefined {
  if (result && result.source !== "cache")
    return { metadata: result.metadata, source: result.source };
  if (error instanceof NoMetadataError) return { metadata: null, source: null };
  return undefined;
}

async function remember(
  cache: MetadataCache | undefined,
  run: WorkflowRun,
  outcome: CollectedRunMetadata,
  logger: Logger,
): Promise<void> {
  const entry = cacheEntry(outcome);
  if (!cache || run.status !== "completed" || !entry) return;
  try {
    await cache.put(run, entry);
  } catch (err) {
    logger.warn({ runId: run.id, err: describeError(err) }, "could not write the metadata cache");
  }
}

/** Metadata for each run (in the same order), a few runs at a time, cache first. */
export async function collectRunMetadata(
  client: GithubClient,
  options: CollectRunMetadataOptions,
): Promise<CollectedRunMetadata[]> {
  const { cache, logger, signal } = options;
  const collectOne = async (run: WorkflowRun): Promise<CollectedRunMetadata> => {
    signal?.throwIfAborted();
    const cached = await fromCache(cache, run, logger);
    if (cached) return cached;
    let outcome: CollectedRunMetadata;
    try {
      const result = await fetchRunMetadata(client, {
        repo: options.repo,
        run,
        logger,
        ...(options.tmpDir ? { tmpDir: options.tmpDir } : {}),
      });
      logger.debug(
        { runId: run.id, source: result.source, bytes: result.bytesFetched },
        "run metadata read",
      );
      outcome = { run, result };
    } catch (err) {
      outcome = { run, error: toGithubError(err, `the logs of run ${run.id}`) };
    }
    await remember(cache, run, outcome, logger);
    return outcome;
  };
  const results = await mapLimit(options.runs, options.concurrency ?? 4, collectOne);
  signal?.throwIfAborted();
  return results;
}

export interface RunWithMetadata {
  run: WorkflowRun;
  metadata?: RunMetadata;
  error?: SyncError;
}

export interface RunsSeen {
  runs: WorkflowRun[];
  seen: RunWithMetadata[];
  /** Log bytes fetched to learn the metadata (0 when all came from the cache). */
  logBytes: number;
  /** Every run the listing gave, whatever its result or platform (what the daemon's poll compares). */
  listed: WorkflowRun[];
}

/**
 * Recent runs with their parsed metadata. Metadata is only fetched for the runs the caller
 * will use (successful ones unless told otherwise), and comes from the cache when it can.
 */
export async function runsWithMetadata(
  ctx: SyncContext,
  github: GithubServices,
  { includeFailed, platform }: { includeFailed: boolean; platform?: string | undefined },
): Promise<RunsSeen> {
  const { options, client, cache } = github;
  const runs = await listWorkflowRuns(client, {
    repo: options.repo,
    workflow: options.workflow,
    branch: options.branch,
    limit: options.limit,
  });
  const wanted = includeFailed ? runs : runs.filter((r) => r.conclusion === "success");
  const results = await collectRunMetadata(client, {
    repo: options.repo,
    runs: wanted,
    cache,
    logger: ctx.logger,
    signal: ctx.signal,
  });
  let logBytes = 0;
  let fromCache = 0;
  const seen = results.map(({ run, result, error: failure }) => {
    if (result) {
      logBytes += result.bytesFetched;
      if (result.source === "cache") fromCache += 1;
    }
    // An incomplete block: its keys are shown (gh-list), yet the run counts as without metadata.
    const error =
      failure ??
      (result && !result.metadata["Image tag"]
        ? new NoMetadataError(run.id, Object.keys(result.metadata))
        : undefined);
    if (error) ctx.logger.warn({ runId: run.id }, error.message);
    return { run, metadata: result?.metadata, error };
  });
  // Worth a line when logs were read; a listing served from the cache is a detail.
  ctx.logger[logBytes > 0 ? "info" : "debug"](
    { runs: runs.length, inspected: wanted.length, fromCache, logBytes },
    `metadata of ${wanted.length} run(s): ${fromCache} from the cache, ${formatBytes(logBytes)} of logs read`,
  );
  const all = { runs, seen, logBytes, listed: runs };
  return platform ? ofPlatform(all, platform) : all;
}

/**
 * `--platform`: the builds of one platform. A run whose block says another platform goes; one
 * whose platform cannot be told (no metadata) stays, so its warning is not lost.
 */
function ofPlatform(all: RunsSeen, platform: string): RunsSeen {
  const other = new Set(
    all.seen.filter((s) => isBuildOf(s.metadata, platform) === false).map((s) => s.run.id),
  );
  return {
    ...all,
    runs: all.runs.filter((r) => !other.has(r.id)),
    seen: all.seen.filter((s) => !other.has(s.run.id)),
  };
}

export interface RunForTag {
  run: WorkflowRun;
  metadata: RunMetadata;
  /** Other successful runs with the same tag, newest first. */
  others: WorkflowRun[];
}

/** The newest successful run that built `imageTag`, as the original's find_run_metadata_for_tag. */
export async function findRunForTag(
  ctx: SyncContext,
  github: GithubServices,
  imageTag: string,
): Promise<RunForTag> {
  const { seen } = await runsWithMetadata(ctx, github, { includeFailed: false });
  const matches = seen
    .filter(
      (s): s is RunWithMetadata & { metadata: RunMetadata } =>
        s.metadata?.["Image tag"] === imageTag,
    )
    .sort((a, b) => newestFirst(a.run, b.run));
  const [newest, ...others] = matches;
  if (!newest) {
    const errors = seen.filter((s) => s.error).map((s) => s.run.id);
    throw new SyncError(
      `No successful workflow run found with image tag '${imageTag}' among the last ${github.options.limit} runs`,
      {
        hint:
          errors.length > 0
            ? `the metadata of runs ${errors.join(", ")} could not be read; see the warnings above`
            : "check the tag (gh-list shows recent ones), or raise --limit / change --branch",
      },
    );
  }
  return { run: newest.run, metadata: newest.metadata, others: others.map((o) => o.run) };
}
