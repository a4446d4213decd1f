import { JOB_LOG_LIMIT, RUN_LOG_ZIP_LIMIT } from "../config/limits.js";
import type { RunMetadata } from "../domain/metadata.js";
import type { Logger } from "../report/logger.js";
import type { GithubClient } from "./client.js";
import { ConflictingMetadataError, NoMetadataError, toGithubError } from "./errors.js";
import { tryJobLogs } from "./job-log.js";
import {
  RouteError,
  httpStatusOf,
  type LogLimits,
  type LogSource,
  type RouteOutcome,
} from "./log-route.js";
import { tryRunLogZip } from "./run-log-zip.js";
import { parseRepo } from "./runs.js";

export type { LogSource } from "./log-route.js";

export interface RunMetadataResult {
  runId: number;
  /** The block; without `Image tag` it is the keys of an incomplete one. */
  metadata: RunMetadata;
  source: LogSource;
  /** Bytes of log actually downloaded for this answer. */
  bytesFetched: number;
}

export interface FetchRunMetadataOptions {
  repo: string;
  run: number | { id: number };
  logger: Logger;
  /** Where the run-log zip of the fallback route is spooled; the OS temp dir by default. */
  tmpDir?: string;
  /** How much log is read at most; config/limits.ts by default. */
  limits?: Partial<LogLimits>;
}

/**
 * The build metadata of one run, read as cheaply as GitHub allows: the build job's log,
 * streamed only until the block is complete; the whole run-log zip only when that fails.
 * Cancelled by the client's signal.
 */
export async function fetchRunMetadata(
  client: GithubClient,
  options: FetchRunMetadataOptions,
): Promise<RunMetadataResult> {
  const runId = typeof options.run === "number" ? options.run : options.run.id;
  const limits: LogLimits = {
    jobLog: options.limits?.jobLog ?? JOB_LOG_LIMIT,
    runLogZip: options.limits?.runLogZip ?? RUN_LOG_ZIP_LIMIT,
  };
  const ctx = { ...parseRepo(options.repo), runId, client, logger: options.logger, limits };

  const jobRoute = await tryJobLogs(ctx);
  if (jobRoute.conflict) {
    throw new ConflictingMetadataError(runId, jobRoute.conflict.first, jobRoute.conflict.second);
  }
  if (jobRoute.metadata && jobRoute.source) {
    return {
      runId,
      metadata: jobRoute.metadata,
      source: jobRoute.source,
      bytesFetched: jobRoute.bytes,
    };
  }
  // The zip holds the same job logs again, so re-reading it only helps when a job log was
  // missed; a bad token would fail there too. Keys without a whole block are still an answer
  // (gh-list shows them); the caller tells it from a block by its missing `Image tag`.
  if (jobRoute.exhaustive) {
    if (jobRoute.partial) return partialResult(runId, jobRoute.partial, jobRoute.bytes);
    throw new NoMetadataError(runId);
  }
  if (jobRoute.error && httpStatusOf(jobRoute.error) === 401) throw jobRoute.error;
  options.logger.debug(
    { runId, reason: jobRoute.error?.message ?? "no block in the job logs" },
    "falling back to the run-log zip",
  );

  let zipRoute: RouteOutcome;
  try {
    zipRoute = await tryRunLogZip(ctx, options.tmpDir);
  } catch (err) {
    if (err instanceof RouteError) throw err.error;
    throw toGithubError(err, `the logs of run ${runId}`);
  }
  const bytesFetched = jobRoute.bytes + zipRoute.bytes;
  if (zipRoute.conflict) {
    throw new ConflictingMetadataError(runId, zipRoute.conflict.first, zipRoute.conflict.second);
  }
  if (zipRoute.metadata && zipRoute.source) {
    return { runId, metadata: zipRoute.metadata, source: zipRoute.source, bytesFetched };
  }
  const partial = zipRoute.partial ?? jobRoute.partial;
  if (partial) return partialResult(runId, partial, bytesFetched);
  throw new NoMetadataError(runId);
}

function partialResult(
  runId: number,
  partial: NonNullable<RouteOutcome["partial"]>,
  bytesFetched: number,
): RunMetadataResult {
  return { runId, metadata: partial.metadata, source: partial.source, bytesFetched };
}
