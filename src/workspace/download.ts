import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream, promises as fs, type WriteStream } from "node:fs";
import { once } from "node:events";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { SyncError, describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";

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
  fetchImpl?: typeof fetch;
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
const DISK_MARGIN = 64 * 1024 * 1024;

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
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }))
    hash.update(chunk as Buffer);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      },
      { once: true },
    );
  });
}

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
  ) {
    super(`HTTP ${status}`);
  }
}

/** Failures worth another attempt: cut connections, resets, timeouts, 5xx, 429, an expired URL (403). */
function retryable(err: unknown): boolean {
  if (err instanceof HttpStatusError)
    return err.status >= 500 || err.status === 429 || err.status === 403;
  if (err instanceof SyncError) return false;
  return true;
}

async function ensureSpace(
  dir: string,
  needed: number,
  freeBytes: (dir: string) => Promise<number>,
): Promise<void> {
  const free = await freeBytes(dir);
  if (free < needed + DISK_MARGIN) {
    const mib = (n: number) => `${(n / 1024 ** 2).toFixed(0)} MiB`;
    throw new SyncError(
      `not enough disk space in ${dir}: ${mib(needed)} needed, ${mib(free)} free`,
      {
        hint: "free some space (clean old tags with `gh-gitlab-sync clean`) or point --output-dir elsewhere",
      },
    );
  }
}

/**
 * Streams a URL to `<dest>.part`, resuming with `Range` after a cut, and renames it to `dest` only
 * when the size and digest check out. Sends no credentials: callers hand over pre-signed URLs.
 */
export async function downloadFile(options: DownloadOptions): Promise<DownloadResult> {
  const { dest, logger, signal } = options;
  const part = `${dest}.part`;
  const maxAttempts = options.maxAttempts ?? 6;
  const fetchImpl = options.fetchImpl ?? fetch;
  await fs.mkdir(path.dirname(dest), { recursive: true });

  let have = await sizeOf(part);
  if (options.expectedSize !== undefined && have > options.expectedSize) {
    logger.warn(
      { part, have, expected: options.expectedSize },
      "partial download is larger than the artifact; starting over",
    );
    await fs.rm(part, { force: true });
    have = 0;
  }
  if (options.expectedSize !== undefined) {
    await ensureSpace(
      path.dirname(dest),
      options.expectedSize - have,
      options.freeBytes ?? statfsFreeBytes,
    );
  }
  let hash = createHash("sha256");
  if (have > 0) {
    logger.info({ part, bytes: have }, "resuming partial download");
    await hashFile(part, hash);
  }

  let fetched = 0;
  let attempts = 0;
  let total = options.expectedSize;
  for (;;) {
    attempts += 1;
    let sink: WriteStream | undefined;
    try {
      const url = await options.resolveUrl();
      const headers: Record<string, string> = have > 0 ? { Range: `bytes=${have}-` } : {};
      const response = await fetchImpl(url, { headers, signal, redirect: "follow" });
      if (have > 0 && response.status === 200) {
        // The server ignored Range: this body is the whole file, so start the part file afresh.
        logger.warn("server does not resume (no 206); downloading from the start");
        have = 0;
        hash = createHash("sha256");
      }
      if (
        response.status === 416 &&
        options.expectedSize !== undefined &&
        have === options.expectedSize
      ) {
        await response.body?.cancel();
        break;
      }
      if (response.status !== 200 && response.status !== 206) {
        await response.body?.cancel();
        throw new HttpStatusError(response.status, url);
      }
      const length = Number(response.headers.get("content-length") ?? Number.NaN);
      if (total === undefined && Number.isFinite(length)) total = have + length;
      if (!response.body) throw new Error("empty response body");
      const counter = new Transform({
        highWaterMark: 1 << 20,
        transform(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          have += chunk.length;
          fetched += chunk.length;
          options.onProgress?.({ bytes: have, total, fetched });
          done(null, chunk);
        },
      });
      sink = createWriteStream(part, { flags: have > 0 ? "a" : "w", highWaterMark: 1 << 20 });
      await pipeline(
        Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
        counter,
        sink,
        { signal },
      );
      if (total !== undefined && have < total)
        throw new Error(`connection closed at ${have} of ${total} bytes`);
      break;
    } catch (err) {
      // A write still in flight when the pipeline failed lands after it: wait for the file to
      // close, or the size read below (and the next append) would race it.
      if (sink && !sink.closed) await once(sink, "close").catch(() => undefined);
      if (signal?.aborted) throw err;
      if (!retryable(err) || attempts >= maxAttempts) {
        if (err instanceof HttpStatusError) {
          throw new SyncError(`download failed: HTTP ${err.status} after ${attempts} attempt(s)`, {
            hint: `the partial file ${part} is kept; rerun to resume`,
          });
        }
        if (err instanceof SyncError) throw err;
        throw new SyncError(`download failed after ${attempts} attempt(s): ${describeError(err)}`, {
          hint: `the partial file ${part} is kept; rerun to resume`,
        });
      }
      const delay = (options.retryDelayMs ?? 1000) * 2 ** (attempts - 1);
      logger.warn(
        { attempt: attempts, bytes: have, delayMs: delay, error: describeError(err) },
        "download interrupted; resuming",
      );
      // Re-hash what is really on disk: a cut may leave other than what was counted.
      have = await sizeOf(part);
      hash = createHash("sha256");
      if (have > 0) await hashFile(part, hash);
      await sleep(delay, signal);
    }
  }
  return finish(part, dest, have, hash.digest("hex"), { ...options, fetched, attempts });
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
