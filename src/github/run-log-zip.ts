import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type Unzipper from "unzipper";
import type { RunMetadata } from "../domain/metadata.js";
import { SyncError, describeError } from "../errors.js";
import { lazyRequire } from "../lazy.js";
import { formatBytes } from "../util/bytes.js";
import {
  BlockReader,
  METADATA_STEP,
  RouteError,
  blobError,
  logTooLarge,
  openBlob,
  type BlockFound,
  type LogSource,
  type RouteOutcome,
  type RunContext,
} from "./log-route.js";
import { redirectLocation } from "./redirect.js";

/** The fallback route to a run's metadata: the whole run-log zip (large, but it has every job). */

const unzipper = lazyRequire<typeof Unzipper>("unzipper");

function entryOrder(name: string): number {
  const match = /^(\d+)_/.exec(path.posix.basename(name));
  return match ? Number(match[1]) : Number.MAX_SAFE_INTEGER;
}

/** Step files whose name says "metadata" first (small), then whole-job files. */
function zipCandidates(files: Unzipper.File[]): Array<{ file: Unzipper.File; source: LogSource }> {
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

/** One log file of the zip, read up to its block, and never past `limit` bytes. */
async function parseZipEntry(
  file: Unzipper.File,
  what: string,
  limit: number,
): Promise<BlockFound & { partial?: RunMetadata }> {
  const reader = new BlockReader();
  const entry = file.stream();
  let read = 0;
  try {
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      read += chunk.length;
      if (read > limit) throw logTooLarge(`${file.path} in ${what}`, limit);
      if (reader.push(chunk)) break;
    }
  } finally {
    entry.destroy();
  }
  const found = reader.finish();
  const partial = reader.partial();
  return { ...found, ...(partial ? { partial } : {}) };
}

function spoolTooLarge(what: string, limit: number): SyncError {
  return new SyncError(`${what} are larger than ${formatBytes(limit)}; stopped`, {
    hint: "the log server sent far more than a run's logs hold; try again later",
  });
}

/** Spools the run-log zip to `zipFile`; the bytes it took (also when it fails, in the RouteError). */
async function download(
  ctx: RunContext,
  url: string,
  what: string,
  zipFile: string,
): Promise<number> {
  const { blobs } = ctx.client;
  let bytes = 0;
  try {
    const response = await openBlob(blobs, url, what, blobs.signal);
    const declared = Number(response.headers.get("content-length") ?? Number.NaN);
    const limit = ctx.limits.runLogZip;
    if (declared > limit) {
      await response.body?.cancel().catch(() => undefined);
      throw spoolTooLarge(what, limit);
    }
    // The spool never grows past the limit, however long the server keeps sending.
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        callback(bytes > limit ? spoolTooLarge(what, limit) : null, chunk);
      },
    });
    const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
    await pipeline(
      body,
      counter,
      createWriteStream(zipFile),
      blobs.signal ? { signal: blobs.signal } : {},
    );
    return bytes;
  } catch (err) {
    throw new RouteError(blobError(err, url, what), bytes);
  }
}

/** Downloads the whole run-log zip and reads its likeliest files until one holds the block. */
export async function tryRunLogZip(
  ctx: RunContext,
  tmpDir: string | undefined,
): Promise<RouteOutcome> {
  const what = `the logs of run ${ctx.runId}`;
  const url = await redirectLocation(
    ctx.client,
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}/logs",
    {
      owner: ctx.owner,
      repo: ctx.repo,
      run_id: ctx.runId,
    },
  );
  const dir = await mkdtemp(path.join(tmpDir ?? os.tmpdir(), "gh-gitlab-sync-runlog-"));
  const zipFile = path.join(dir, `run-${ctx.runId}-logs.zip`);
  try {
    const bytes = await download(ctx, url, what, zipFile);
    let directory: Unzipper.CentralDirectory;
    try {
      directory = await unzipper().Open.file(zipFile);
    } catch (err) {
      throw new RouteError(
        new SyncError(`${what} are not a readable zip: ${describeError(err)}`),
        bytes,
      );
    }
    let partial: RouteOutcome["partial"];
    for (const { file, source } of zipCandidates(directory.files)) {
      ctx.client.blobs.signal?.throwIfAborted();
      let found: BlockFound & { partial?: RunMetadata };
      try {
        found = await parseZipEntry(file, what, ctx.limits.jobLog);
      } catch (err) {
        throw new RouteError(blobError(err, url, what), bytes);
      }
      if (found.metadata) return { metadata: found.metadata, source, bytes };
      if (found.conflict) return { conflict: found.conflict, source, bytes };
      if (found.partial) partial ??= { metadata: found.partial, source };
    }
    return partial ? { bytes, partial } : { bytes };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
