import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream, promises as fs } from "node:fs";
import { once } from "node:events";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { SyncError, describeError, errorCode } from "../errors.js";
import type { FetchLike } from "../net/http.js";
import { retry } from "../net/retry.js";
import type { Logger } from "../report/logger.js";
import { MiB, formatMiB } from "../util/bytes.js";
import { diskFullError } from "../util/files.js";

export interface DownloadProgress {
  /** Bytes of the file present so far (including what an earlier attempt left). */
  bytes: number;
  total: number | undefined;
  /** Bytes fetched over the network by this call. */
  fetched: number;
}

export interface DownloadOptions {
  /** Gives a fresh URL for each attempt: signed redirect URLs expire, so a resume asks again. */
  resolveUrl: () => Promise<string>;
  /** Final path; data goes to `<dest>.part` and is renamed only once verified. */
  dest: string;
  expectedSize?: number;
  /** `sha256:<hex>` when the source publishes one. */
  digest?: string;
  logger: Logger;
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  maxAttempts?: number;
  /** Base back-off between attempts, doubled each time. */
  retryDelayMs?: number;
  /** Free bytes at a path; replaceable so tests can simulate a full disk. */
  freeBytes?: (dir: string) => Promise<number>;
  /** The HTTP client's `fetch`: no credentials, the URL is pre-signed. */
  fetch: FetchLike;
}

export interface DownloadResult {
  path: string;
  size: number;
  sha256: string;
  /** Bytes that came over the network in this call (less than size after a resume). */
  fetched: number;
  attempts: number;
}

/** Room kept free beyond the download itself, so the host is not driven to 0 bytes. */
const DISK_MARGIN = 64 * MiB;
const IO_CHUNK = MiB;
const DEFAULT_ATTEMPTS = 6;
const DEFAULT_RETRY_DELAY_MS = 1000;
/** No single wait between attempts grows past this, however many cuts came before. */
const MAX_RETRY_DELAY_MS = 30_000;

export async function statfsFreeBytes(dir: string): Promise<number> {
  const stats = await fs.statfs(dir);
  return Number(stats.bavail) * Number(stats.bsize);
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return 0;
  }
}

async function hashFile(file: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(file, { highWaterMark: IO_CHUNK }))
    hash.update(chunk as Buffer);
}

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
  ) {
    super(`HTTP ${status}`);
  }
}

/**
 * Failures worth another attempt: cut connections, resets, timeouts, 5xx, 429, an expired URL
 * (403). A full disk is not: another attempt would only fill it again.
 */
function retryable(err: unknown): boolean {
  if (err instanceof HttpStatusError)
    return err.status >= 500 || err.status === 429 || err.status === 403;
  if (err instanceof SyncError) return false;
  return errorCode(err) !== "ENOSPC";
}

async function ensureSpace(
  dir: string,
  needed: number,
  freeBytes: (dir: string) => Promise<number>,
): Promise<void> {
  const free = await freeBytes(dir);
  if (free < needed + DISK_MARGIN) {
    throw new SyncError(
      `not enough disk space in ${dir}: ${formatMiB(needed, 0)} needed, ${formatMiB(free, 0)} free`,
      {
        hint: "free some space (clean old tags with `gh-gitlab-sync clean`) or point --output-dir elsewhere",
      },
    );
  }
}

/** What is in `<dest>.part` so far, and the hash of exactly those bytes. */
interface PartFile {
  path: string;
  have: number;
  hash: Hash;
  /** Bytes fetched over the network by this call. */
  fetched: number;
  /** The whole file's size: the artifact's, else learnt from the first Content-Length. */
  total: number | undefined;
}

/**
 * Streams a URL to `<dest>.part`, resuming with `Range` after a cut, and renames it to `dest` only
 * when the size and digest check out. Sends no credentials: callers hand over pre-signed URLs.
 */
export async function downloadFile(options: DownloadOptions): Promise<DownloadResult> {
  const { dest, logger, signal } = options;
  await fs.mkdir(path.dirname(dest), { recursive: true });
  const part = await openPart(`${dest}.part`, options);
  let attempts = 0;
  try {
    await retry(
      async (attempt) => {
        attempts = attempt;
        if (attempt > 1) await rehash(part);
        await fetchInto(part, options);
      },
      {
        policy: {
          attempts: options.maxAttempts ?? DEFAULT_ATTEMPTS,
          baseDelayMs: options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
          maxDelayMs: MAX_RETRY_DELAY_MS,
        },
        signal,
        retryable,
        onRetry: ({ attempt, delayMs, error }) =>
          logger.warn(
            { attempt, bytes: part.have, delayMs, error: describeError(error) },
            "download interrupted; resuming",
          ),
      },
    );
  } catch (err) {
    if (signal?.aborted) throw err;
    if (errorCode(err) === "ENOSPC") {
      // The part file keeps what fitted: once there is room, the next run resumes from it.
      const needed = part.total !== undefined ? part.total - part.have : undefined;
      throw diskFullError(path.dirname(dest), needed, err);
    }
    throw downloadFailure(err, attempts, part.path);
  }
  return finish(part.path, dest, part.have, part.hash.digest("hex"), {
    ...options,
    fetched: part.fetched,
    attempts,
  });
}

/**
 * Takes over the part file an earlier run left, unless it is longer than the artifact (then it
 * cannot be its beginning), and makes sure the disk has room for the rest before any fetching.
 */
async function openPart(file: string, options: DownloadOptions): Promise<PartFile> {
  const { dest, logger, expectedSize } = options;
  let have = await sizeOf(file);
  if (expectedSize !== undefined && have > expectedSize) {
    logger.warn(
      { part: file, have, expected: expectedSize },
      "partial download is larger than the artifact; starting over",
    );
    await fs.rm(file, { force: true });
    have = 0;
  }
  if (expectedSize !== undefined) {
    await ensureSpace(
      path.dirname(dest),
      expectedSize - have,
      options.freeBytes ?? statfsFreeBytes,
    );
  }
  const hash = createHash("sha256");
  if (have > 0) {
    logger.info({ part: file, bytes: have }, "resuming partial download");
    await hashFile(file, hash);
  }
  return { path: file, have, hash, fetched: 0, total: expectedSize };
}

/** Re-hash what is really on disk: a cut may leave other than what was counted. */
async function rehash(part: PartFile): Promise<void> {
  part.have = await sizeOf(part.path);
  part.hash = createHash("sha256");
  if (part.have > 0) await hashFile(part.path, part.hash);
}

/** One attempt: a fresh URL (signed ones expire), asked for the bytes after those on disk. */
async function fetchInto(part: PartFile, options: DownloadOptions): Promise<void> {
  const { logger, signal, expectedSize } = options;
  const fetch = options.fetch;
  const url = await options.resolveUrl();
  const headers: Record<string, string> = part.have > 0 ? { Range: `bytes=${part.have}-` } : {};
  const response = await fetch(url, { headers, signal, redirect: "follow" });
  if (part.have > 0 && response.status === 200) {
    // The server ignored Range: this body is the whole file, so start the part file afresh.
    logger.warn("server does not resume (no 206); downloading from the start");
    part.have = 0;
    part.hash = createHash("sha256");
  }
  if (response.status === 416 && expectedSize !== undefined && part.have === expectedSize) {
    await response.body?.cancel();
    return;
  }
  if (response.status !== 200 && response.status !== 206) {
    await response.body?.cancel();
    throw new HttpStatusError(response.status, url);
  }
  const length = Number(response.headers.get("content-length") ?? Number.NaN);
  if (part.total === undefined && Number.isFinite(length)) part.total = part.have + length;
  if (!response.body) throw new Error("empty response body");
  const counter = new Transform({
    highWaterMark: IO_CHUNK,
    transform(chunk: Buffer, _enc, done) {
      part.hash.update(chunk);
      part.have += chunk.length;
      part.fetched += chunk.length;
      options.onProgress?.({ bytes: part.have, total: part.total, fetched: part.fetched });
      done(null, chunk);
    },
  });
  const sink = createWriteStream(part.path, {
    flags: part.have > 0 ? "a" : "w",
    highWaterMark: IO_CHUNK,
  });
  try {
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      counter,
      sink,
      { signal },
    );
  } catch (err) {
    // A write still in flight when the pipeline failed lands after it: wait for the file to
    // close, or the next attempt's size read (and append) would race it.
    if (!sink.closed) await once(sink, "close").catch(() => undefined);
    throw err;
  }
  if (part.total !== undefined && part.have < part.total)
    throw new Error(`connection closed at ${part.have} of ${part.total} bytes`);
}

function downloadFailure(err: unknown, attempts: number, part: string): SyncError {
  if (err instanceof SyncError) return err;
  const hint = `the partial file ${part} is kept; rerun to resume`;
  if (err instanceof HttpStatusError) {
    return new SyncError(`download failed: HTTP ${err.status} after ${attempts} attempt(s)`, {
      hint,
      cause: err,
    });
  }
  return new SyncError(`download failed after ${attempts} attempt(s): ${describeError(err)}`, {
    hint,
    cause: err,
  });
}

async function finish(
  part: string,
  dest: string,
  size: number,
  sha256: string,
  options: DownloadOptions & { fetched: number; attempts: number },
): Promise<DownloadResult> {
  if (options.expectedSize !== undefined && size !== options.expectedSize) {
    await fs.rm(part, { force: true });
    throw new SyncError(`downloaded ${size} bytes but the artifact has ${options.expectedSize}`, {
      hint: "the partial file was removed; rerun download",
    });
  }
  if (options.digest) {
    const expected = options.digest.replace(/^sha256:/, "").toLowerCase();
    if (expected !== sha256) {
      await fs.rm(part, { force: true });
      throw new SyncError(`digest mismatch: expected sha256:${expected}, got sha256:${sha256}`, {
        hint: "the damaged download was removed; rerun download",
      });
    }
  }
  await fs.rename(part, dest);
  return { path: dest, size, sha256, fetched: options.fetched, attempts: options.attempts };
}
