import type { SyncError } from "../errors.js";
import { KiB, MiB } from "../util/bytes.js";
import { toGithubError } from "./errors.js";
import {
  BlockReader,
  METADATA_STEP,
  RouteError,
  blobError,
  httpStatusOf,
  logTooLarge,
  openBlob,
  type RouteOutcome,
  type RunContext,
} from "./log-route.js";
import { redirectLocation } from "./redirect.js";

/** The cheap route to a run's metadata: the build job's own log, read only up to the block. */

interface Job {
  id: number;
  name: string;
  steps?: Array<{ name: string }>;
}

const RECORD_STEP = /record build metadata/i;

/**
 * A job log is read in ranges, the first small and each next one twice as large: stopping a
 * plain download once the block is complete still leaves what the socket buffers already hold
 * (several MiB on a fast link) on the wire, while a range never fetches past its end.
 */
const LOG_RANGE_FIRST = 256 * KiB;
const LOG_RANGE_MAX = 8 * MiB;

async function listJobs(ctx: RunContext): Promise<Job[]> {
  return ctx.client.paginate("GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs", {
    owner: ctx.owner,
    repo: ctx.repo,
    run_id: ctx.runId,
    per_page: 100,
  });
}

/** The build job's log first: only it runs the step that prints the block. */
function orderJobs(jobs: Job[]): Job[] {
  const score = (job: Job): number => {
    const steps = job.steps ?? [];
    if (steps.some((step) => RECORD_STEP.test(step.name))) return 0;
    if (steps.some((step) => METADATA_STEP.test(step.name))) return 1;
    return 2;
  };
  const withStep = jobs.filter((job) => score(job) < 2);
  const candidates = withStep.length > 0 ? withStep : jobs;
  return [...candidates].sort((a, b) => score(a) - score(b));
}

/** Reads one job's log up to the end of the block, in growing ranges. */
async function readJobLog(ctx: RunContext, job: Job): Promise<RouteOutcome> {
  const what = `the log of job '${job.name}' (${job.id}) of run ${ctx.runId}`;
  const url = await redirectLocation(
    ctx.client,
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
    { owner: ctx.owner, repo: ctx.repo, job_id: job.id },
  );
  const { blobs } = ctx.client;
  // Aborted once the block is whole, to drop the rest of the range in flight.
  const done = new AbortController();
  const signal = blobs.signal ? AbortSignal.any([blobs.signal, done.signal]) : done.signal;
  const reader = new BlockReader();
  let bytes = 0;
  try {
    let start = 0;
    for (let length = LOG_RANGE_FIRST; ; length = Math.min(2 * length, LOG_RANGE_MAX)) {
      const range = `bytes=${start}-${start + length - 1}`;
      const response = await openBlob(blobs, url, what, signal, range);
      if (response.status === 416) {
        await response.body?.cancel().catch(() => undefined);
        break;
      }
      const body = (response.body as ReadableStream<Uint8Array>).getReader();
      let received = 0;
      for (;;) {
        const { done: ended, value } = await body.read();
        if (ended) break;
        bytes += value.byteLength;
        received += value.byteLength;
        if (bytes > ctx.limits.jobLog) {
          await body.cancel().catch(() => undefined);
          throw logTooLarge(what, ctx.limits.jobLog);
        }
        if (reader.push(value)) break;
      }
      // A server that ignores Range (200) sent the whole log; a short range is its end.
      if (reader.complete || response.status !== 206 || received < length) break;
      start += length;
    }
    if (reader.complete) done.abort();
  } catch (err) {
    if (!reader.complete) throw new RouteError(blobError(err, url, what), bytes);
  }
  const found = reader.finish();
  ctx.logger.debug(
    { runId: ctx.runId, jobId: job.id, bytes, complete: found.metadata !== undefined },
    "read job log",
  );
  if (found.metadata || found.conflict) return { ...found, source: "job-log", bytes };
  const partial = reader.partial();
  return partial ? { bytes, partial: { metadata: partial, source: "job-log" } } : { bytes };
}

export interface JobRouteOutcome extends RouteOutcome {
  /** Every job of the run was read to its end without a fault. */
  exhaustive: boolean;
  error?: SyncError;
}

/** The jobs' logs, the build job's first, until one holds the block. */
export async function tryJobLogs(ctx: RunContext): Promise<JobRouteOutcome> {
  let bytes = 0;
  let jobs: Job[];
  try {
    jobs = await listJobs(ctx);
  } catch (err) {
    return { bytes, exhaustive: false, error: toGithubError(err, `jobs of run ${ctx.runId}`) };
  }
  const candidates = orderJobs(jobs);
  let faults = 0;
  let lastError: SyncError | undefined;
  let partial: RouteOutcome["partial"];
  for (const job of candidates) {
    try {
      const outcome = await readJobLog(ctx, job);
      bytes += outcome.bytes;
      if (outcome.metadata || outcome.conflict) return { ...outcome, bytes, exhaustive: true };
      partial ??= outcome.partial;
    } catch (err) {
      if (ctx.client.blobs.signal?.aborted) throw err instanceof RouteError ? err.error : err;
      faults += 1;
      if (err instanceof RouteError) bytes += err.bytes;
      lastError =
        err instanceof RouteError ? err.error : toGithubError(err, `the log of job ${job.id}`);
      ctx.logger.debug(
        { runId: ctx.runId, jobId: job.id, err: lastError.message },
        "job log route failed",
      );
      if (httpStatusOf(lastError) === 401) break;
    }
  }
  const exhaustive = jobs.length > 0 && faults === 0 && candidates.length === jobs.length;
  return {
    bytes,
    exhaustive,
    ...(lastError ? { error: lastError } : {}),
    ...(partial ? { partial } : {}),
  };
}
