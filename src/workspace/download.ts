import { createHash, type Hash } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import path from "node:path";
import { DISK_MARGIN } from "../config/limits.js";
import { SyncError, describeError, errorCode } from "../errors.js";
import type { StreamGet, StreamedResponse } from "../net/http.js";
import { retry } from "../net/retry.js";
import type { Logger } from "../report/logger.js";
import { MiB, formatBytes } from "../util/bytes.js";
import {
  LocalWriteError,
  diskFullError,
  ensureDir,
  ensureFreeSpace,
  refusedWriteCode,
  type FreeBytes,
} from "../util/files.js";
import { FileHasher } from "./file-hasher.js";

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
  /** Told once every byte is here and the file's digest is being checked (a resume reads it). */
  onVerify?: () => void;
  maxAttempts?: number;
  /** Base back-off between attempts, doubled each time. */
  retryDelayMs?: number;
  /** Free bytes at a path; replaceable so tests can simulate a full disk. */
  freeBytes?: FreeBytes | undefined;
  /** The HTTP client's streaming GET (`HttpClient.get`): no credentials, the URL is pre-signed. */
  get: StreamGet;
  /**
   * What a 404 or 410 from the download host means to the caller (the file was deleted after
   * its address was handed out); without it, an HTTP failure like any other.
   */
  gone?: (cause: unknown) => SyncError;
}

export interface DownloadResult {
  path: string;
  size: number;
  sha256: string;
  /** Bytes that came over the network in this call (less than size after a resume). */
  fetched: number;
  attempts: number;
}

const IO_CHUNK = MiB;
const DEFAULT_ATTEMPTS = 6;
const DEFAULT_RETRY_DELAY_MS = 1000;
/** No single wait between attempts grows past this, however many cuts came before. */
const MAX_RETRY_DELAY_MS = 30_000;

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
 * The local side failing: another attempt would fail the same way (a full or read-only disk, a
 * permission), so these end the download at once.
 */
const LOCAL_CODES = new Set([
  "ENOSPC",
  "EDQUOT",
  "EROFS",
  "EACCES",
  "EPERM",
  "EISDIR",
  "ENOTDIR",
  "EMFILE",
]);

/** Failures worth another attempt: cut connections, resets, timeouts, 5xx, 429, an expired URL (403). */
function retryable(err: unknown): boolean {
  if (err instanceof HttpStatusError)
    return err.status >= 500 || err.status === 429 || err.status === 403;
  if (err instanceof SyncError || err instanceof OversizeError) return false;
  const code = errorCode(err);
  return code === undefined || !LOCAL_CODES.has(code);
}

/** The server kept sending past the size the artifact has: a hostile or broken blob host. */
class OversizeError extends Error {
  constructor(readonly limit: number) {
    super(`the server sent more than the artifact's ${limit} bytes`);
  }
}

/** What is in `<dest>.part` so far, and the hash of exactly those bytes (as they land). */
interface PartFile {
  path: string;
  have: number;
  hasher: FileHasher;
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
  await ensureDir(path.dirname(dest));
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
    // Its file closed before a failure removes the part file, so the space comes back at once.
    await part.hasher.close();
    if (signal?.aborted) throw err;
    // Nothing to resume from: an empty part file is not left behind to look like a start.
    const kept = (await sizeOf(part.path)) > 0;
    if (!kept) await fs.rm(part.path, { force: true });
    // A full disk needs room for the whole artifact again: its partial file is given back.
    throw await downloadFailure(err, attempts, { ...part, kept }, path.dirname(dest), options);
  }
  options.onVerify?.();
  const sha256 = await part.hasher.digest(part.have).catch((err: unknown) => {
    throw new SyncError(`cannot hash the download ${part.path} (${describeError(err)})`, {
      hint: "rerun download: the partial file is kept and checked again",
      cause: err,
    });
  });
  return finish(part.path, dest, part.have, sha256, {
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
    await ensureFreeSpace(path.dirname(dest), expectedSize - have, {
      what: `the download (${formatBytes(expectedSize)} in all)`,
      margin: DISK_MARGIN,
      hint: "free some space (clean old tags with `gh-gitlab-sync clean`) or point --output-dir elsewhere",
      freeBytes: options.freeBytes,
    });
  }
  // What an earlier run left is hashed on the hasher's thread while the rest arrives.
  const hasher = new FileHasher(file);
  if (have > 0) {
    logger.info({ part: file, bytes: have }, "resuming partial download");
    hasher.advance(have);
  }
  return { path: file, have, hasher, fetched: 0, total: expectedSize };
}

/** Re-hash what is really on disk: a cut may leave other than what was counted. */
async function rehash(part: PartFile): Promise<void> {
  part.have = await sizeOf(part.path);
  await part.hasher.close();
  part.hasher = new FileHasher(part.path);
  part.hasher.advance(part.have);
}

/** One attempt: a fresh URL (signed ones expire), asked for the bytes after those on disk. */
async function fetchInto(part: PartFile, options: DownloadOptions): Promise<void> {
  const { logger, signal, expectedSize } = options;
  const url = await options.resolveUrl();
  const headers: Record<string, string> = part.have > 0 ? { Range: `bytes=${part.have}-` } : {};
  const response = await options.get(url, { headers, signal });
  if (part.have > 0 && response.status === 200) {
    // The server ignored Range: this body is the whole file, so start the part file afresh.
    logger.warn("server does not resume (no 206); downloading from the start");
    part.have = 0;
    await part.hasher.close();
    part.hasher = new FileHasher(part.path);
  }
  if (response.status === 416 && expectedSize !== undefined && part.have === expectedSize) {
    response.body.destroy();
    return;
  }
  if (response.status !== 200 && response.status !== 206) {
    response.body.destroy();
    throw new HttpStatusError(response.status, url);
  }
  const length = Number(response.headers.get("content-length") ?? Number.NaN);
  if (part.total === undefined && Number.isFinite(length)) part.total = part.have + length;
  await writeBody(part, response, expectedSize ?? part.total, options);
  if (part.total !== undefined && part.have < part.total)
    throw new Error(`connection closed at ${part.have} of ${part.total} bytes`);
}

/**
 * The body to the end of the part file: counted chunk by chunk, gathered into `IO_CHUNK` writes
 * with one in flight while the next fills, each handed to the hasher once it is on disk. Not one
 * byte past `limit` (the declared size) reaches the disk, whatever the server goes on sending.
 * Whatever ends it, the write in flight lands before this returns, so the next attempt's size
 * read (and append) cannot race it.
 */
async function writeBody(
  part: PartFile,
  response: StreamedResponse,
  limit: number | undefined,
  options: DownloadOptions,
): Promise<void> {
  const file = await fs.open(part.path, part.have > 0 ? "a" : "w");
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let writing: Promise<unknown> = Promise.resolve();
  let written = part.have;
  const flush = async (): Promise<void> => {
    await writing;
    const buffers = pending;
    pending = [];
    pendingBytes = 0;
    // Appended (the file is open with `a`, or fresh): no position to keep. A failure (a full
    // disk) surfaces at the next flush, which awaits this first.
    writing = writeAll(file, buffers).then((bytes) => {
      written += bytes;
      part.hasher.advance(written);
      // Told again once the bytes are on disk: a reader behind the writer (the streaming sync)
      // wakes when there is something new to read, not only when something new arrived.
      options.onProgress?.({ bytes: part.have, total: part.total, fetched: part.fetched });
    });
    writing.catch(() => undefined);
  };
  const take = (chunk: Buffer): void => {
    part.have += chunk.length;
    part.fetched += chunk.length;
    pending.push(chunk);
    pendingBytes += chunk.length;
  };
  try {
    for await (const data of response.body) {
      const chunk = data as Buffer;
      if (limit !== undefined && part.have + chunk.length > limit) {
        const room = limit - part.have;
        if (room > 0) take(chunk.subarray(0, room));
        response.body.destroy();
        throw new OversizeError(limit);
      }
      take(chunk);
      options.onProgress?.({ bytes: part.have, total: part.total, fetched: part.fetched });
      if (pendingBytes >= IO_CHUNK) await flush();
    }
  } finally {
    // What was received is written even when the body failed: it is what a resume starts from.
    try {
      if (pendingBytes > 0) await flush();
      await writing;
    } finally {
      await file.close();
    }
  }
}

/** All of `buffers`, appended: a short write (a disk filling up) goes on with the rest. */
async function writeAll(file: fs.FileHandle, buffers: Buffer[]): Promise<number> {
  let rest = buffers;
  let total = 0;
  while (rest.length > 0) {
    const { bytesWritten } = await file.writev(rest);
    if (bytesWritten === 0) throw new Error(`no byte of ${rest.length} buffer(s) was written`);
    total += bytesWritten;
    let skip = bytesWritten;
    while (rest.length > 0 && skip >= (rest[0]?.length ?? 0)) {
      skip -= rest[0]?.length ?? 0;
      rest = rest.slice(1);
    }
    if (skip > 0 && rest[0]) rest = [rest[0].subarray(skip), ...rest.slice(1)];
  }
  return total;
}

async function downloadFailure(
  err: unknown,
  attempts: number,
  part: { path: string; total: number | undefined; kept: boolean },
  dir: string,
  options: Pick<DownloadOptions, "gone">,
): Promise<SyncError> {
  if (err instanceof SyncError) return err;
  if (err instanceof OversizeError) {
    // What came is not the artifact, or not only: nothing of it can be trusted for a resume.
    await fs.rm(part.path, { force: true });
    return new SyncError(`download failed: ${err.message}`, {
      hint: "the download host is misbehaving; the partial file was removed — rerun download later",
      cause: err,
    });
  }
  const refused = refusedWriteCode(err);
  if (refused === "ENOSPC" || refused === "EDQUOT") {
    // A full disk is not left full: the partial file goes, and with it the space it took.
    await fs.rm(part.path, { force: true });
    const full = diskFullError(dir, part.total, err);
    return new SyncError(
      `${refused} writing ${part.path}: ${full.message}; the partial download was removed`,
      { hint: full.hint, cause: err },
    );
  }
  // Read-only or forbidden: every other write there fails alike; the cycle ends, said once.
  if (refused) return new LocalWriteError(refused, "writing", part.path, err);
  if (err instanceof HttpStatusError && (err.status === 404 || err.status === 410) && options.gone)
    return options.gone(err);
  const hint = part.kept ? `the partial file ${part.path} is kept; rerun to resume` : "rerun later";
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

/** How `size`/`sha256` differ from what the artifact says it is; undefined when they match. */
function mismatch(
  size: number,
  sha256: string,
  expectedSize: number | undefined,
  digest: string | undefined,
): string | undefined {
  if (expectedSize !== undefined && size !== expectedSize) {
    return `${size} bytes but the artifact has ${expectedSize}`;
  }
  const expected = digest?.replace(/^sha256:/, "").toLowerCase();
  if (expected && expected !== sha256) {
    return `digest mismatch: expected sha256:${expected}, got sha256:${sha256}`;
  }
  return undefined;
}

/**
 * Whether a file already in place is the artifact: its size, and its digest when the artifact
 * has one. What a crash between the rename and the writing of metadata.json leaves is judged
 * by this, rather than trusted or thrown away.
 */
export async function checkDownloaded(
  file: string,
  expectedSize: number,
  digest: string | undefined,
): Promise<{ ok: true; sha256: string } | { ok: false; reason: string }> {
  const size = await sizeOf(file);
  if (size !== expectedSize) {
    return { ok: false, reason: `${size} bytes but the artifact has ${expectedSize}` };
  }
  const hash = createHash("sha256");
  await hashFile(file, hash);
  const sha256 = hash.digest("hex");
  const reason = mismatch(size, sha256, expectedSize, digest);
  return reason ? { ok: false, reason } : { ok: true, sha256 };
}

async function finish(
  part: string,
  dest: string,
  size: number,
  sha256: string,
  options: DownloadOptions & { fetched: number; attempts: number },
): Promise<DownloadResult> {
  const reason = mismatch(size, sha256, options.expectedSize, options.digest);
  if (reason) {
    await fs.rm(part, { force: true });
    throw new SyncError(`the download does not match the artifact (${reason})`, {
      hint: "the damaged download was removed; rerun download",
    });
  }
  await fs.rename(part, dest);
  return { path: dest, size, sha256, fetched: options.fetched, attempts: options.attempts };
}
