import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform, finished, type TransformCallback, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type Unzipper from "unzipper";
import type { CentralDirectory, File as ZipRecord } from "unzipper";
import { lazyRequire } from "../lazy.js";
import { SyncError, describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import { crc32 } from "./crc32.js";

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
}

const unzipper = lazyRequire<typeof Unzipper>("unzipper");

/** Big reads and writes: a 1 MiB window makes the syscall count negligible against the data. */
const IO_CHUNK = 1 << 20;
const DAMAGED_HINT = "the artifact is damaged or hostile; re-run download --force";
const INCOMPLETE_HINT = "re-run download with --force";
const LOCAL_HEADER_SIZE = 30;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const HOST_UNIX = 3;
const HOST_DARWIN = 19;
const MSDOS_DIRECTORY = 0x10;
const FLAG_ENCRYPTED = 0x1;
const METHOD_STORE = 0;
const METHOD_DEFLATE = 8;

interface ZipInput {
  path: string;
  handle: FileHandle;
  cdStart: number;
}

interface PlannedEntry {
  record: ZipRecord;
  name: string;
  kind: "file" | "directory";
}

/**
 * Extracts a zip in a single read, checking each entry's CRC-32 and size against the central
 * directory while it is written (the original tested with `unzip -t`, then read it all again).
 *
 * Every entry is vetted before a byte is written: names that would land outside `destDir`,
 * links, devices and encrypted entries refuse the whole zip. Files go to `<name>.part` and are
 * renamed once verified, inside a sibling `<destDir>.tmp-<pid>` that replaces `destDir` only when
 * every entry checked out, so neither a crash nor a bad zip leaves anything that looks complete.
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
    const plan = planEntries(zipPath, directory, await source.size());
    handle = await open(zipPath, "r");
    const zip: ZipInput = {
      path: zipPath,
      handle,
      cdStart: directory.offsetToStartOfCentralDirectory,
    };
    const target = path.resolve(destDir);
    const tmpDir = `${target}.tmp-${process.pid}`;
    await removeLeftovers(target);
    await mkdir(tmpDir, { recursive: true });
    let written: ExtractedEntry[];
    try {
      written = await extractPlanned(zip, plan, tmpDir, options);
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
        mibPerSecond: Number((bytes / 2 ** 20 / Math.max(seconds, 1e-3)).toFixed(1)),
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
    throw incomplete(zipPath, reason, err);
  }
}

function incomplete(zipPath: string, reason: string, cause?: unknown): SyncError {
  return new SyncError(`${zipPath} is not a complete zip (${reason})`, {
    hint: INCOMPLETE_HINT,
    cause,
  });
}

function refused(zipPath: string, rawName: string, reason: string, cause?: unknown): SyncError {
  return new SyncError(`${zipPath}: entry ${JSON.stringify(rawName)} ${reason}`, {
    hint: DAMAGED_HINT,
    cause,
  });
}

/** Vets every entry up front, so a hostile zip is refused before anything reaches the disk. */
function planEntries(
  zipPath: string,
  directory: CentralDirectory,
  zipSize: number,
): PlannedEntry[] {
  const cdStart = directory.offsetToStartOfCentralDirectory;
  if (cdStart + directory.sizeOfCentralDirectory > zipSize) {
    throw incomplete(zipPath, "its central directory runs past the end of the file");
  }
  const seen = new Set<string>();
  return directory.files.map((record) => {
    const raw = record.path;
    const name = normaliseEntryName(raw);
    if (typeof name !== "string") throw refused(zipPath, raw, name.refused);
    if (seen.has(name)) throw refused(zipPath, raw, "appears twice");
    seen.add(name);
    const kind = entryKind(record);
    if (typeof kind !== "string") throw refused(zipPath, raw, kind.refused);
    if (kind === "file") checkFileRecord(zipPath, record, cdStart);
    return { record, name, kind };
  });
}

function checkFileRecord(zipPath: string, record: ZipRecord, cdStart: number): void {
  const raw = record.path;
  if (record.flags & FLAG_ENCRYPTED) throw refused(zipPath, raw, "is encrypted");
  if (record.compressionMethod !== METHOD_STORE && record.compressionMethod !== METHOD_DEFLATE) {
    throw refused(zipPath, raw, `uses compression method ${record.compressionMethod}`);
  }
  const sizes = [record.compressedSize, record.uncompressedSize, record.offsetToLocalFileHeader];
  if (!sizes.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw refused(zipPath, raw, "has a ZIP64 record without its sizes");
  }
  const dataEnd =
    record.offsetToLocalFileHeader +
    LOCAL_HEADER_SIZE +
    record.fileNameLength +
    record.compressedSize;
  if (dataEnd > cdStart) {
    throw incomplete(zipPath, `entry ${JSON.stringify(raw)} runs into the central directory`);
  }
}

/**
 * Backslashes count as separators (Windows tools write them, and `..\..\x` must not slip
 * through as one odd file name); anything absolute or climbing out of the root is refused.
 */
export function normaliseEntryName(raw: string): string | { refused: string } {
  if (raw.includes("\0")) return { refused: "has a NUL byte in its name" };
  const slashed = raw.replace(/\\/g, "/");
  if (slashed.startsWith("/") || /^[A-Za-z]:/.test(slashed)) {
    return { refused: "has an absolute path" };
  }
  const normal = path.posix.normalize(slashed).replace(/\/+$/, "");
  if (normal === "" || normal === ".") return { refused: "has an empty name" };
  if (normal === ".." || normal.startsWith("../")) {
    return { refused: "would be written outside the extraction directory" };
  }
  return normal;
}

/** Unix hosts keep the file type in the high half of the external attributes. */
function entryKind(record: ZipRecord): "file" | "directory" | { refused: string } {
  const host = record.versionMadeBy >>> 8;
  const mode = record.externalFileAttributes >>> 16;
  const type = mode & S_IFMT;
  const unixTyped = (host === HOST_UNIX || host === HOST_DARWIN) && type !== 0;
  const nameIsDir = /[/\\]$/.test(record.path);
  if (unixTyped) {
    if (type === S_IFLNK) return { refused: "is a symbolic link" };
    if (type === S_IFDIR) return directoryKind(record);
    if (type !== S_IFREG) return { refused: `is not a regular file (mode ${mode.toString(8)})` };
    return nameIsDir ? { refused: "is a file with a directory name" } : "file";
  }
  if (nameIsDir || record.externalFileAttributes & MSDOS_DIRECTORY) return directoryKind(record);
  return "file";
}

function directoryKind(record: ZipRecord): "directory" | { refused: string } {
  return record.uncompressedSize === 0 ? "directory" : { refused: "is a directory with data" };
}

async function extractPlanned(
  zip: ZipInput,
  plan: PlannedEntry[],
  root: string,
  options: ExtractOptions,
): Promise<ExtractedEntry[]> {
  const total = plan.reduce(
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
  for (const entry of plan) {
    options.signal?.throwIfAborted();
    const target = path.join(root, entry.name);
    if (path.relative(root, target).startsWith("..")) {
      throw refused(
        zip.path,
        entry.record.path,
        "would be written outside the extraction directory",
      );
    }
    if (entry.kind === "directory") {
      await mkdir(target, { recursive: true });
      continue;
    }
    extracted.push(await extractFile(zip, entry, target, progress, options));
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
  entry: PlannedEntry,
  target: string,
  progress: (n: number) => void,
  options: ExtractOptions,
): Promise<ExtractedEntry> {
  const { record, name } = entry;
  const part = `${target}.part`;
  const dataStart = await locateData(zip, record);
  await mkdir(path.dirname(target), { recursive: true });
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
  const meter = new CrcMeter(progress, options.tee?.(name));
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
    throw incomplete(zip.path, `entry ${JSON.stringify(record.path)} is cut short`);
  }
  if (meter.bytes !== record.uncompressedSize) {
    throw refused(
      zip.path,
      record.path,
      `is damaged (${meter.bytes} bytes, the directory says ${record.uncompressedSize})`,
    );
  }
  if (meter.crc !== record.crc32) {
    throw refused(
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
    throw refused(zip.path, record.path, "has no local header where the directory points");
  }
  const dataStart = offset + LOCAL_HEADER_SIZE + header.readUInt16LE(26) + header.readUInt16LE(28);
  if (dataStart + record.compressedSize > zip.cdStart) {
    throw incomplete(
      zip.path,
      `entry ${JSON.stringify(record.path)} runs into the central directory`,
    );
  }
  return dataStart;
}

function entryReadError(zipPath: string, rawName: string, part: string, err: unknown): SyncError {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code.startsWith("Z_")) {
    return refused(zipPath, rawName, `is damaged (${describeError(err)})`, err);
  }
  if (code === "ENOSPC") {
    return new SyncError(`no space left to extract ${JSON.stringify(rawName)} to ${part}`, {
      hint: "free disk space and re-run prepare",
      cause: err,
    });
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

/** Counts and checksums the bytes on their way to disk, and hands them to the optional tee. */
class CrcMeter extends Transform {
  crc = 0;
  bytes = 0;

  constructor(
    private readonly progress: (n: number) => void,
    private readonly tee: Writable | undefined,
  ) {
    super({ highWaterMark: IO_CHUNK, writableHighWaterMark: IO_CHUNK });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.crc = crc32(chunk, this.crc);
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
    const code = (err as { code?: unknown }).code;
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
    if (pid === process.pid || !processIsAlive(pid)) {
      await rm(path.join(parent, name), { recursive: true, force: true });
    }
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as { code?: unknown }).code === "EPERM";
  }
}
