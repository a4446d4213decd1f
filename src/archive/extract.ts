import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform, finished, type TransformCallback, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type Unzipper from "unzipper";
import type { CentralDirectory, File as ZipRecord } from "unzipper";
import { lazyRequire } from "../lazy.js";
import { DAMAGED_HINT, SyncError, describeError, errorCode } from "../errors.js";
import type { Logger } from "../report/logger.js";
import { MiB } from "../util/bytes.js";
import { diskFullError, ensureDir, type FreeBytes } from "../util/files.js";
import { isProcessAlive } from "../util/process.js";
import {
  LOCAL_HEADER_SIZE,
  METHOD_DEFLATE,
  ensureRoom,
  entryRefused,
  vetEntries,
  zipIncomplete,
  type VettedEntry,
} from "./zip-vetting.js";

export interface ExtractedEntry {
  /** The entry's name inside the zip, normalised (forward slashes, no `.` segments). */
  name: string;
  /** Where the file now is, under `destDir`. */
  path: string;
  size: number;
  crc32: number;
}

export interface ExtractOptions {
  logger: Logger;
  signal?: AbortSignal;
  /** Decompressed bytes written so far against the total the central directory announces. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /**
   * A second consumer of one entry's decompressed bytes, fed while the entry is written, so a
   * caller can check a tarball without reading it from disk again. Extraction waits for the
   * stream to finish writing. Should it fail, extraction carries on without it: the tee's owner
   * reports its own verdict. On an extraction failure or abort the tee is destroyed.
   */
  tee?: (entryName: string) => Writable | undefined;
  /** Free bytes at a path; replaceable so tests can play a full disk. */
  freeBytes?: FreeBytes | undefined;
}

const unzipper = lazyRequire<typeof Unzipper>("unzipper");

/** Big reads and writes: a 1 MiB window makes the syscall count negligible against the data. */
const IO_CHUNK = 1 << 20;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;

interface ZipInput {
  path: string;
  handle: FileHandle;
  cdStart: number;
}

/**
 * Extracts a zip in a single read, checking each entry's CRC-32 and size against the central
 * directory while it is written (the original tested with `unzip -t`, then read it all again).
 *
 * Every entry is vetted first (zip-vetting.ts), so a bad one refuses the whole zip before a byte
 * is written. Files go to `<name>.part` and are renamed once verified, inside a sibling
 * `<destDir>.tmp-<pid>` that replaces `destDir` only when every entry checked out, so neither a
 * crash nor a bad zip leaves anything that looks complete.
 */
export async function extractZip(
  zipPath: string,
  destDir: string,
  options: ExtractOptions,
): Promise<ExtractedEntry[]> {
  const { logger, signal } = options;
  signal?.throwIfAborted();
  const source = new ZipSource(zipPath);
  const started = performance.now();
  let handle: FileHandle | undefined;
  try {
    const directory = await openDirectory(zipPath, source);
    const entries = vetEntries(zipPath, directory, await source.size());
    handle = await open(zipPath, "r");
    const zip: ZipInput = {
      path: zipPath,
      handle,
      cdStart: directory.offsetToStartOfCentralDirectory,
    };
    const target = path.resolve(destDir);
    const tmpDir = `${target}.tmp-${process.pid}`;
    await removeLeftovers(target);
    await ensureRoom(zipPath, target, entries, options.freeBytes);
    await ensureDir(tmpDir);
    let written: ExtractedEntry[];
    try {
      written = await extractVetted(zip, entries, tmpDir, options);
      signal?.throwIfAborted();
      await replaceDirectory(tmpDir, target);
    } catch (err) {
      await rm(tmpDir, { recursive: true, force: true });
      throw err;
    }
    const extracted = written.map((e) => ({ ...e, path: path.join(target, e.name) }));
    const bytes = extracted.reduce((sum, e) => sum + e.size, 0);
    const seconds = (performance.now() - started) / 1000;
    logger.info(
      {
        zip: zipPath,
        files: extracted.length,
        bytes,
        seconds: Number(seconds.toFixed(2)),
        mibPerSecond: Number((bytes / MiB / Math.max(seconds, 1e-3)).toFixed(1)),
      },
      "extracted and verified zip",
    );
    return extracted;
  } finally {
    source.close();
    await handle?.close();
  }
}

/**
 * The byte source unzipper reads through. Keeping the streams here lets an abort or a failure
 * close every file descriptor unzipper opened, and sets a read size larger than the 64 KiB default.
 */
class ZipSource {
  private readonly open = new Set<ReadStream>();
  private sizePromise: Promise<number> | undefined;

  constructor(private readonly file: string) {}

  size(): Promise<number> {
    this.sizePromise ??= stat(this.file).then((s) => s.size);
    return this.sizePromise;
  }

  stream(offset: number, length?: number): ReadStream {
    const end = length ? offset + length : undefined;
    const stream = createReadStream(this.file, { start: offset, end, highWaterMark: IO_CHUNK });
    this.open.add(stream);
    stream.once("close", () => this.open.delete(stream));
    return stream;
  }

  close(): void {
    for (const stream of this.open) stream.destroy();
    this.open.clear();
  }
}

async function openDirectory(zipPath: string, source: ZipSource): Promise<CentralDirectory> {
  try {
    await source.size();
  } catch (err) {
    throw new SyncError(`cannot read ${zipPath} (${describeError(err)})`, {
      hint: "run download first",
      cause: err,
    });
  }
  try {
    return await unzipper().Open.custom({
      size: () => source.size(),
      stream: (offset, length) => source.stream(offset, length),
    });
  } catch (err) {
    const reason =
      describeError(err) === "FILE_ENDED"
        ? "no end-of-central-directory record"
        : describeError(err);
    throw zipIncomplete(zipPath, reason, err);
  }
}

async function extractVetted(
  zip: ZipInput,
  entries: VettedEntry[],
  root: string,
  options: ExtractOptions,
): Promise<ExtractedEntry[]> {
  const total = entries.reduce(
    (sum, e) => sum + (e.kind === "file" ? e.record.uncompressedSize : 0),
    0,
  );
  let done = 0;
  const progress = (n: number): void => {
    done += n;
    options.onProgress?.(done, total);
  };
  options.onProgress?.(0, total);
  const extracted: ExtractedEntry[] = [];
  for (const entry of entries) {
    options.signal?.throwIfAborted();
    const target = path.join(root, entry.name);
    if (path.relative(root, target).startsWith("..")) {
      throw entryRefused(
        zip.path,
        entry.record.path,
        "would be written outside the extraction directory",
      );
    }
    if (entry.kind === "directory") {
      await ensureDir(target);
      continue;
    }
    try {
      extracted.push(await extractFile(zip, entry, target, progress, options));
    } catch (err) {
      // Named by the directory the extraction is for, with what was still to be written.
      if (errorCode(err) === "ENOSPC") throw diskFullError(path.dirname(root), total - done, err);
      throw err;
    }
  }
  return extracted;
}

/**
 * unzipper's own entry stream inflates in 16 KiB pieces and copies each through a buffering
 * stream; reading the entry's byte range directly and inflating with a 1 MiB window is several
 * times faster, and checks the local header that unzipper skips.
 */
async function extractFile(
  zip: ZipInput,
  entry: VettedEntry,
  target: string,
  progress: (n: number) => void,
  options: ExtractOptions,
): Promise<ExtractedEntry> {
  const { record, name } = entry;
  const part = `${target}.part`;
  const dataStart = await locateData(zip, record);
  await ensureDir(path.dirname(target));
  const compressed =
    record.compressedSize === 0
      ? Readable.from([])
      : createReadStream(zip.path, {
          start: dataStart,
          end: dataStart + record.compressedSize - 1,
          highWaterMark: IO_CHUNK,
        });
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [compressed];
  if (record.compressionMethod === METHOD_DEFLATE) {
    stages.push(zlib.createInflateRaw({ chunkSize: IO_CHUNK }));
  }
  const meter = new CrcMeter(progress, options.tee?.(name), record.uncompressedSize, () =>
    entryRefused(
      zip.path,
      record.path,
      `inflates past the ${record.uncompressedSize} bytes the directory gives it (a zip bomb?)`,
    ),
  );
  try {
    await pipeline(
      [
        ...stages,
        meter,
        // `wx`: a name collision in a hostile zip fails instead of overwriting a verified file.
        createWriteStream(part, { flags: "wx", highWaterMark: IO_CHUNK }),
      ],
      { signal: options.signal },
    );
  } catch (err) {
    options.signal?.throwIfAborted();
    throw entryReadError(zip.path, record.path, part, err);
  }
  const read = "bytesRead" in compressed ? compressed.bytesRead : 0;
  if (read !== record.compressedSize) {
    throw zipIncomplete(zip.path, `entry ${JSON.stringify(record.path)} is cut short`);
  }
  if (meter.bytes !== record.uncompressedSize) {
    throw entryRefused(
      zip.path,
      record.path,
      `is damaged (${meter.bytes} bytes, the directory says ${record.uncompressedSize})`,
    );
  }
  if (meter.crc !== record.crc32) {
    throw entryRefused(
      zip.path,
      record.path,
      `is damaged (CRC-32 ${hex(meter.crc)}, the directory says ${hex(record.crc32)})`,
    );
  }
  await rename(part, target);
  options.logger.debug({ entry: name, bytes: meter.bytes }, "entry verified");
  return { name, path: target, size: meter.bytes, crc32: meter.crc };
}

/** Where an entry's data begins: after its local header, whose lengths may differ from the directory's. */
async function locateData(zip: ZipInput, record: ZipRecord): Promise<number> {
  const header = Buffer.alloc(LOCAL_HEADER_SIZE);
  const offset = record.offsetToLocalFileHeader;
  const { bytesRead } = await zip.handle.read(header, 0, LOCAL_HEADER_SIZE, offset);
  if (bytesRead !== LOCAL_HEADER_SIZE || header.readUInt32LE(0) !== LOCAL_HEADER_SIGNATURE) {
    throw entryRefused(zip.path, record.path, "has no local header where the directory points");
  }
  const dataStart = offset + LOCAL_HEADER_SIZE + header.readUInt16LE(26) + header.readUInt16LE(28);
  if (dataStart + record.compressedSize > zip.cdStart) {
    throw zipIncomplete(
      zip.path,
      `entry ${JSON.stringify(record.path)} runs into the central directory`,
    );
  }
  return dataStart;
}

function entryReadError(zipPath: string, rawName: string, part: string, err: unknown): SyncError {
  if (err instanceof SyncError) return err;
  const code = errorCode(err);
  if (code?.startsWith("Z_")) {
    return entryRefused(zipPath, rawName, `is damaged (${describeError(err)})`, err);
  }
  return new SyncError(
    `cannot extract ${JSON.stringify(rawName)} from ${zipPath} (${describeError(err)})`,
    {
      hint: DAMAGED_HINT,
      cause: err,
    },
  );
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/**
 * Counts and checksums the bytes on their way to disk, and hands them to the optional tee. An
 * entry that inflates past its declared size fails at once: not a byte more is written.
 */
class CrcMeter extends Transform {
  crc = 0;
  bytes = 0;

  constructor(
    private readonly progress: (n: number) => void,
    private readonly tee: Writable | undefined,
    private readonly limit: number,
    private readonly oversize: () => Error,
  ) {
    super({ highWaterMark: IO_CHUNK, writableHighWaterMark: IO_CHUNK });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.bytes + chunk.length > this.limit) return callback(this.oversize());
    this.crc = zlib.crc32(chunk, this.crc);
    this.bytes += chunk.length;
    this.progress(chunk.length);
    const tee = this.tee;
    if (tee && !tee.destroyed && !tee.write(chunk)) {
      // `close` too: a tee that gives up must not stall the extraction waiting for `drain`.
      const resume = (): void => {
        tee.off("drain", resume);
        tee.off("close", resume);
        callback(null, chunk);
      };
      tee.on("drain", resume);
      tee.on("close", resume);
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const tee = this.tee;
    if (!tee || tee.destroyed) return callback();
    tee.end();
    finished(tee, () => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (error && this.tee && !this.tee.writableFinished) this.tee.destroy(error);
    callback(error);
  }
}

async function replaceDirectory(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
    return;
  } catch (err) {
    const code = errorCode(err);
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
  }
  // An earlier extraction is in the way; it is replaced only now that the new one is complete.
  const old = `${to}.old-${process.pid}`;
  await rm(old, { recursive: true, force: true });
  await rename(to, old);
  await rename(from, to);
  await rm(old, { recursive: true, force: true });
}

/**
 * A run killed mid-way (SIGKILL, power loss) leaves `<dest>.tmp-<pid>` behind: gigabytes that
 * look incomplete by name. Those of dead processes, and of this one, are removed; a live
 * process's are left alone (the downloads lock should prevent that case anyway).
 */
async function removeLeftovers(target: string): Promise<void> {
  const parent = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(`${base}.`)) continue;
    const match = /^\.(?:tmp|old)-(\d+)$/.exec(name.slice(base.length));
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || !isProcessAlive(pid)) {
      await rm(path.join(parent, name), { recursive: true, force: true });
    }
  }
}
