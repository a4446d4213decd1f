import path from "node:path";
import type { CentralDirectory, File as ZipRecord } from "unzipper";
import { DISK_MARGIN } from "../config/limits.js";
import { DAMAGED_HINT, DamagedInputError, SyncError } from "../errors.js";
import { formatBytes } from "../util/bytes.js";
import { ensureFreeSpace, type FreeBytes } from "../util/files.js";

/**
 * The up-front half of extraction: every entry of the central directory is vetted before a byte
 * is written, so a hostile or damaged zip is refused whole rather than half-extracted. Names that
 * would land outside the destination, links, devices, encrypted entries, unknown compression and
 * records pointing past the data all refuse the zip.
 */

const INCOMPLETE_HINT = "re-run download with --force";
export const LOCAL_HEADER_SIZE = 30;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const HOST_UNIX = 3;
const HOST_DARWIN = 19;
const MSDOS_DIRECTORY = 0x10;
const FLAG_ENCRYPTED = 0x1;
const METHOD_STORE = 0;
export const METHOD_DEFLATE = 8;

export interface VettedEntry {
  record: ZipRecord;
  /** The normalised name (forward slashes, no `.` segments), unique within the zip. */
  name: string;
  kind: "file" | "directory";
}

/** The zip ends early or its records point past its data: a cut download, most likely. */
export function zipIncomplete(zipPath: string, reason: string, cause?: unknown): SyncError {
  return new DamagedInputError(`${zipPath} is not a complete zip (${reason})`, {
    hint: INCOMPLETE_HINT,
    cause,
  });
}

/** One entry is unacceptable: damaged, or built to do harm. */
export function entryRefused(
  zipPath: string,
  rawName: string,
  reason: string,
  cause?: unknown,
): SyncError {
  return new DamagedInputError(`${zipPath}: entry ${JSON.stringify(rawName)} ${reason}`, {
    hint: DAMAGED_HINT,
    cause,
  });
}

/** Vets every entry, in directory order; throws on the first one that refuses the zip. */
export function vetEntries(
  zipPath: string,
  directory: CentralDirectory,
  zipSize: number,
): VettedEntry[] {
  const cdStart = directory.offsetToStartOfCentralDirectory;
  if (cdStart + directory.sizeOfCentralDirectory > zipSize) {
    throw zipIncomplete(zipPath, "its central directory runs past the end of the file");
  }
  const seen = new Set<string>();
  return directory.files.map((record) => {
    const raw = record.path;
    const name = normaliseEntryName(raw);
    if (typeof name !== "string") throw entryRefused(zipPath, raw, name.refused);
    if (seen.has(name)) throw entryRefused(zipPath, raw, "appears twice");
    seen.add(name);
    const kind = entryKind(record);
    if (typeof kind !== "string") throw entryRefused(zipPath, raw, kind.refused);
    if (kind === "file") checkFileRecord(zipPath, record, cdStart);
    return { record, name, kind };
  });
}

/**
 * The central directory says how large every entry is; the disk must have room for all of it
 * before a byte is written (each entry is then held to its size while it inflates).
 */
export async function ensureRoom(
  zipPath: string,
  target: string,
  entries: VettedEntry[],
  freeBytes: FreeBytes | undefined,
): Promise<void> {
  const total = entries.reduce(
    (sum, e) => sum + (e.kind === "file" ? e.record.uncompressedSize : 0),
    0,
  );
  await ensureFreeSpace(path.dirname(target), total, {
    what: `extracting ${path.basename(zipPath)} (${formatBytes(total)} of files)`,
    margin: DISK_MARGIN,
    hint: "free disk space (gh-gitlab-sync clean <tag> removes finished tags) and re-run prepare",
    freeBytes,
  });
}

function checkFileRecord(zipPath: string, record: ZipRecord, cdStart: number): void {
  const raw = record.path;
  if (record.flags & FLAG_ENCRYPTED) throw entryRefused(zipPath, raw, "is encrypted");
  if (record.compressionMethod !== METHOD_STORE && record.compressionMethod !== METHOD_DEFLATE) {
    throw entryRefused(zipPath, raw, `uses compression method ${record.compressionMethod}`);
  }
  const sizes = [record.compressedSize, record.uncompressedSize, record.offsetToLocalFileHeader];
  if (!sizes.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw entryRefused(zipPath, raw, "has a ZIP64 record without its sizes");
  }
  const dataEnd =
    record.offsetToLocalFileHeader +
    LOCAL_HEADER_SIZE +
    record.fileNameLength +
    record.compressedSize;
  if (dataEnd > cdStart) {
    throw zipIncomplete(zipPath, `entry ${JSON.stringify(raw)} runs into the central directory`);
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
