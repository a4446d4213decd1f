import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type Unzipper from "unzipper";
import { lazyRequire } from "../lazy.js";
import { SyncError, describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import type { CachedSource, MetadataCache } from "../workspace/state.js";
import type { GithubClient } from "./client.js";
import { NoMetadataError, redactUrl, toGithubError } from "./errors.js";
import { redirectLocation } from "./redirect.js";
import type { RunMetadata } from "../domain/metadata.js";
import { MetadataBlockParser } from "./metadata-parser.js";
import { parseRepo, type RepoRef, type WorkflowRun } from "./runs.js";

const unzipper = lazyRequire<typeof Unzipper>("unzipper");

export type MetadataSource = "cache" | CachedSource;

export interface RunMetadataResult {
  runId: number;
  metadata: RunMetadata;
  source: MetadataSource;
  /** Bytes of log actually downloaded for this answer (0 from the cache). */
  bytesFetched: number;
}

export interface FetchRunMetadataOptions {
  repo: string;
  run: number | { id: number };
  logger: Logger;
  signal?: AbortSignal;
  /** Where the run-log zip of the fallback route is spooled; the OS temp dir by default. */
  tmpDir?: string;
}

interface Job {
  id: number;
  name: string;
  steps?: Array<{ name: string }>;
}

const RECORD_STEP = /record build metadata/i;
const METADATA_STEP = /metadata/i;

interface RunContext extends RepoRef {
  runId: number;
  client: GithubClient;
  logger: Logger;
  signal: AbortSignal | undefined;
}

/** How much a route read, and whether it found the block. */
interface RouteOutcome {
  metadata?: RunMetadata;
  source?: CachedSource;
  bytes: number;
}

/** Thrown by a route that read something before failing, so its bytes still count. */
class RouteError extends Error {
  constructor(
    readonly error: SyncError,
    readonly bytes: number,
  ) {
    super(error.message);
  }
}

function httpStatusOf(err: unknown): number | undefined {
  const cause = err instanceof SyncError ? err.cause : err;
  const status = (cause as { status?: unknown } | undefined)?.status;
  return typeof status === "number" ? status : undefined;
}

async function listJobs(ctx: RunContext): Promise<Job[]> {
  try {
    return await ctx.client.paginate("GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs", {
      owner: ctx.owner,
      repo: ctx.repo,
      run_id: ctx.runId,
      per_page: 100,
      ...(ctx.signal ? { request: { signal: ctx.signal } } : {}),
    });
  } catch (err) {
    throw toGithubError(err, `jobs of run ${ctx.runId} in ${ctx.owner}/${ctx.repo}`);
  }
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

async function openBlob(
  url: string,
  what: string,
  signal: AbortSignal,
  range?: string,
): Promise<Response> {
  let response: Response;
  try {
    // No credentials on purpose: the signed URL is the credential, the GitHub token stays home.
    response = await fetch(url, { signal, ...(range ? { headers: { range } } : {}) });
  } catch (err) {
    throw blobError(err, url, what);
  }
  // A range past the end: the log ended exactly where the previous range did.
  if (range && response.status === 416) return response;
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => undefined);
    const expired = response.status === 403 || response.status === 410;
    throw new SyncError(
      `downloading ${what} from ${redactUrl(url)} failed: HTTP ${response.status}`,
      {
        hint: expired
          ? "the signed download address may have expired; try again"
          : "try again later",
      },
    );
  }
  return response;
}

function blobError(err: unknown, url: string, what: string): SyncError {
  if (err instanceof SyncError) return err;
  if (err instanceof Error && err.name === "AbortError") {
    return new SyncError(`downloading ${what} was cancelled`, { cause: err });
  }
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
  return new SyncError(
    `downloading ${what} from ${redactUrl(url)} failed: ${describeError(err)}${cause}`,
    {
      hint: "the connection broke; try again",
      cause: err,
    },
  );
}

/** An abort signal that follows the caller's and can also be fired on its own. */
function childController(parent: AbortSignal | undefined): AbortController {
  const controller = new AbortController();
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener("abort", () => controller.abort(parent.reason), { once: true });
  return controller;
}

/**
 * A job log is read in ranges, the first small and each next one twice as large: stopping a
 * plain download once the block is complete still leaves what the socket buffers already hold
 * (several MiB on a fast link) on the wire, while a range never fetches past its end.
 */
const LOG_RANGE_FIRST = 256 * 1024;
const LOG_RANGE_MAX = 8 * 1024 * 1024;

/** Reads one job's log up to the end of the block, in growing ranges. */
async function readJobLog(ctx: RunContext, job: Job): Promise<RouteOutcome> {
  const what = `the log of job '${job.name}' (${job.id}) of run ${ctx.runId}`;
  const url = await redirectLocation(
    ctx,
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
    { job_id: job.id },
    what,
  );
  const controller = childController(ctx.signal);
  const parser = new MetadataBlockParser();
  const decoder = new TextDecoder("utf-8");
  let bytes = 0;
  try {
    let start = 0;
    for (let length = LOG_RANGE_FIRST; ; length = Math.min(2 * length, LOG_RANGE_MAX)) {
      const range = `bytes=${start}-${start + length - 1}`;
      const response = await openBlob(url, what, controller.signal, range);
      if (response.status === 416) {
        await response.body?.cancel().catch(() => undefined);
        break;
      }
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      let received = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        received += value.byteLength;
        parser.push(decoder.decode(value, { stream: true }));
        if (parser.complete) break;
      }
      // A server that ignores Range (200) sent the whole log; a short range is its end.
      if (parser.complete || response.status !== 206 || received < length) break;
      start += length;
    }
    if (parser.complete) controller.abort();
  } catch (err) {
    if (!parser.complete) throw new RouteError(blobError(err, url, what), bytes);
  }
  if (!parser.complete) {
    parser.push(decoder.decode());
    parser.end();
  }
  ctx.logger.debug(
    { runId: ctx.runId, jobId: job.id, bytes, complete: parser.complete },
    "read job log",
  );
  return parser.complete ? { metadata: parser.metadata, source: "job-log", bytes } : { bytes };
}

interface JobRouteOutcome extends RouteOutcome {
  /** Every job of the run was read to its end without a fault. */
  exhaustive: boolean;
  error?: SyncError;
}

async function tryJobLogs(ctx: RunContext): Promise<JobRouteOutcome> {
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
  for (const job of candidates) {
    try {
      const outcome = await readJobLog(ctx, job);
      bytes += outcome.bytes;
      if (outcome.metadata) return { ...outcome, bytes, exhaustive: true };
    } catch (err) {
      if (ctx.signal?.aborted) throw err instanceof RouteError ? err.error : err;
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
  return lastError ? { bytes, exhaustive, error: lastError } : { bytes, exhaustive };
}

function entryOrder(name: string): number {
  const match = /^(\d+)_/.exec(path.posix.basename(name));
  return match ? Number(match[1]) : Number.MAX_SAFE_INTEGER;
}

/** Step files whose name says "metadata" first (small), then whole-job files. */
function zipCandidates(
  files: Unzipper.File[],
): Array<{ file: Unzipper.File; source: CachedSource }> {
  const textFiles = files.filter((file) => file.type === "File" && file.path.endsWith(".txt"));
  const steps = textFiles
    .filter((file) => file.path.split("/").length === 2)
    .filter((file) => METADATA_STEP.test(path.posix.basename(file.path)));
  const jobFiles = textFiles
    .filter((file) => !file.path.includes("/"))
    .sort((a, b) => entryOrder(a.path) - entryOrder(b.path));
  return [
    ...steps.map((file) => ({ file, source: "run-log-step" as const })),
    ...jobFiles.map((file) => ({ file, source: "run-log-job" as const })),
  ];
}

async function parseZipEntry(file: Unzipper.File): Promise<RunMetadata | undefined> {
  const parser = new MetadataBlockParser();
  const decoder = new TextDecoder("utf-8");
  const entry = file.stream();
  for await (const chunk of entry as AsyncIterable<Buffer>) {
    parser.push(decoder.decode(chunk, { stream: true }));
    if (parser.complete) break;
  }
  entry.destroy();
  if (!parser.complete) {
    parser.push(decoder.decode());
    parser.end();
  }
  return parser.complete ? parser.metadata : undefined;
}

/** Downloads the whole run-log zip (the fallback: large, but it always has the job files). */
async function tryRunLogZip(ctx: RunContext, tmpDir: string | undefined): Promise<RouteOutcome> {
  const what = `the logs of run ${ctx.runId}`;
  const url = await redirectLocation(
    ctx,
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}/logs",
    { run_id: ctx.runId },
    what,
  );
  const dir = await mkdtemp(path.join(tmpDir ?? os.tmpdir(), "gh-gitlab-sync-runlog-"));
  const zipFile = path.join(dir, `run-${ctx.runId}-logs.zip`);
  let bytes = 0;
  try {
    const controller = childController(ctx.signal);
    try {
      const response = await openBlob(url, what, controller.signal);
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          callback(null, chunk);
        },
      });
      const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
      await pipeline(body, counter, createWriteStream(zipFile), { signal: controller.signal });
    } catch (err) {
      throw new RouteError(blobError(err, url, what), bytes);
    }
    let directory: Unzipper.CentralDirectory;
    try {
      directory = await unzipper().Open.file(zipFile);
    } catch (err) {
      throw new RouteError(
        new SyncError(`${what} are not a readable zip: ${describeError(err)}`),
        bytes,
      );
    }
    for (const { file, source } of zipCandidates(directory.files)) {
      ctx.signal?.throwIfAborted();
      const metadata = await parseZipEntry(file);
      if (metadata) return { metadata, source, bytes };
    }
    return { bytes };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The build metadata of one run, read as cheaply as GitHub allows: the build job's log,
 * streamed only until the block is complete; the whole run-log zip only when that fails.
 */
export async function fetchRunMetadata(
  client: GithubClient,
  options: FetchRunMetadataOptions,
): Promise<RunMetadataResult> {
  const runId = typeof options.run === "number" ? options.run : options.run.id;
  const ctx: RunContext = {
    ...parseRepo(options.repo),
    runId,
    client,
    logger: options.logger,
    signal: options.signal,
  };

  const jobRoute = await tryJobLogs(ctx);
  if (jobRoute.metadata && jobRoute.source) {
    return {
      runId,
      metadata: jobRoute.metadata,
      source: jobRoute.source,
      bytesFetched: jobRoute.bytes,
    };
  }
  // The zip holds the same job logs again, so re-reading it only helps when a job log was
  // missed; a bad token would fail there too.
  if (jobRoute.exhaustive) throw new NoMetadataError(runId);
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
  if (zipRoute.metadata && zipRoute.source) {
    return { runId, metadata: zipRoute.metadata, source: zipRoute.source, bytesFetched };
  }
  throw new NoMetadataError(runId);
}

export interface CollectRunMetadataOptions {
  repo: string;
  runs: WorkflowRun[];
  cache?: MetadataCache;
  logger: Logger;
  concurrency?: number;
  signal?: AbortSignal;
  tmpDir?: string;
}

export interface CollectedRunMetadata {
  run: WorkflowRun;
  result?: RunMetadataResult;
  error?: SyncError;
}

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

async function remember(
  cache: MetadataCache | undefined,
  run: WorkflowRun,
  outcome: CollectedRunMetadata,
  logger: Logger,
): Promise<void> {
  // Only a finished run's logs are final; an in-progress run may still print its block.
  if (!cache || run.status !== "completed") return;
  let entry;
  if (outcome.result && outcome.result.source !== "cache") {
    entry = { metadata: outcome.result.metadata, source: outcome.result.source };
  } else if (outcome.error instanceof NoMetadataError) {
    entry = { metadata: null, source: null };
  } else {
    return;
  }
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
  const { runs, cache, logger, signal } = options;
  const results: CollectedRunMetadata[] = new Array<CollectedRunMetadata>(runs.length);
  let next = 0;

  const collectOne = async (run: WorkflowRun): Promise<CollectedRunMetadata> => {
    const cached = await fromCache(cache, run, logger);
    if (cached) return cached;
    let outcome: CollectedRunMetadata;
    try {
      const result = await fetchRunMetadata(client, {
        repo: options.repo,
        run,
        logger,
        ...(signal ? { signal } : {}),
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

  const worker = async (): Promise<void> => {
    while (next < runs.length && !signal?.aborted) {
      const index = next++;
      results[index] = await collectOne(runs[index] as WorkflowRun);
    }
  };
  const workers = Math.max(1, Math.min(options.concurrency ?? 4, runs.length));
  await Promise.all(Array.from({ length: workers }, () => worker()));
  signal?.throwIfAborted();
  return results;
}
