import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { z } from "zod";
import { SyncError, errorCode } from "../errors.js";
import { formatBytes } from "./bytes.js";

/**
 * Files this tool keeps (metadata.json, upload-plan.json, failures.json, caches, the lock): written
 * so that a reader or a crash never sees half a file, and read back through a zod schema so that
 * a damaged or hand-edited file is named, never a crash.
 */

/** Python's `json.dumps(obj, indent=2, sort_keys=True)`, so files match the original's byte for byte. */
export function pythonJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v as Record<string, unknown>)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  // Python escapes non-ASCII by default (ensure_ascii=True).
  return JSON.stringify(sort(value), null, 2).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The one-line error for a write the disk had no room for: which directory, and how much. */
export function diskFullError(dir: string, needed: number | undefined, cause: unknown): SyncError {
  const amount = needed !== undefined ? ` (${formatBytes(needed)} needed)` : "";
  return new SyncError(`no space left on the disk holding ${dir}${amount}`, {
    hint: "free disk space (gh-gitlab-sync clean <tag> removes finished downloads) and run again",
    cause,
    setupFault: true,
  });
}

/** Why a file system refuses writes, in words, by errno. */
const REFUSALS: Record<string, string> = {
  EROFS: "the file system is read-only",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on the disk",
  EDQUOT: "the disk quota is used up",
};

/**
 * A file this tool keeps (state, cache, lock, metadata) could not be written because the disk
 * under its directory refuses writes: read-only, full or forbidden. Every other write there
 * would fail the same way, so it ends the cycle, named once, rather than being blamed on the
 * image or tarball being worked on at the time.
 */
export class LocalWriteError extends SyncError {
  constructor(
    readonly code: string,
    readonly operation: "writing" | "removing",
    readonly file: string,
    cause: unknown,
    needed?: number,
  ) {
    const dir = path.dirname(file);
    const amount = needed !== undefined ? ` (${formatBytes(needed)} needed)` : "";
    super(`${code} ${operation} ${file}: ${REFUSALS[code] ?? code}${amount}`, {
      hint:
        code === "ENOSPC" || code === "EDQUOT"
          ? `free disk space under ${dir} (gh-gitlab-sync clean <tag> removes finished downloads) and run again`
          : `make ${dir} writable (or point --state-dir/--downloads-dir elsewhere) and run again`,
      cause,
      // Not the image's fault: the daemon ends its cycle on it and holds no image back.
      setupFault: true,
    });
    this.name = "LocalWriteError";
  }
}

/** The errno of a write the disk refuses (see {@link LocalWriteError}), else undefined. */
export function refusedWriteCode(err: unknown): string | undefined {
  const code = errorCode(err);
  return code !== undefined && code in REFUSALS ? code : undefined;
}

/** The {@link LocalWriteError} behind `err`, however deep it is wrapped (as a cause), if any. */
export function localWriteFailure(err: unknown): LocalWriteError | undefined {
  let current: unknown = err;
  for (let depth = 0; current instanceof Error && depth < 6; depth += 1) {
    if (current instanceof LocalWriteError) return current;
    current = current.cause;
  }
  return undefined;
}

/**
 * Removes `dir` when it is empty: a step that made it and then failed leaves no empty directory
 * that looks like a download. A directory with anything in it (a kept `.part`) stays.
 */
export async function removeIfEmpty(dir: string): Promise<void> {
  await fs.rmdir(dir).catch(() => undefined);
}

/** Bytes an unprivileged writer may still use on the file system holding `dir`. */
export async function statfsFreeBytes(dir: string): Promise<number> {
  const stats = await fs.statfs(dir);
  return Number(stats.bavail) * Number(stats.bsize);
}

export type FreeBytes = (dir: string) => Promise<number>;

export interface SpaceCheck {
  /** What the space is for, in the message: "the download", "extracting x.zip". */
  what: string;
  /** Room kept free beyond `needed`. */
  margin: number;
  hint: string;
  /** Replaceable so tests can play a full disk; statfs by default. */
  freeBytes?: FreeBytes | undefined;
}

/**
 * Refuses to start writing `needed` bytes under `dir` when the disk has less room than that
 * (plus a margin): better one clear line now than a full disk half-way through.
 */
export async function ensureFreeSpace(
  dir: string,
  needed: number,
  check: SpaceCheck,
): Promise<void> {
  const free = await (check.freeBytes ?? statfsFreeBytes)(dir);
  if (free < needed + check.margin) {
    throw new SyncError(
      `not enough disk space in ${dir} for ${check.what}: ${formatBytes(needed)} needed (and ${formatBytes(check.margin)} to spare), ${formatBytes(free)} free`,
      { hint: check.hint, setupFault: true },
    );
  }
}

/**
 * Writes a file so that it is either absent, the old version, or the complete new one. The
 * temporary name is unique per writer, so concurrent writers never share one.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await ensureDir(path.dirname(file));
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    const code = refusedWriteCode(err);
    if (code === "ENOSPC") {
      throw new LocalWriteError(code, "writing", file, err, Buffer.byteLength(data));
    }
    if (code) throw new LocalWriteError(code, "writing", file, err);
    throw err;
  }
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, pythonJson(value));
}

export type JsonFileResult<T> =
  | { ok: true; value: T }
  /** `invalid`: the bytes were read and are not the JSON expected (damaged, not unreadable). */
  | { ok: false; missing: boolean; invalid: boolean; problem: string };

/** Reads and validates a JSON file, saying what is wrong rather than throwing. */
export async function parseJsonFile<S extends z.ZodType>(
  file: string,
  schema: S,
): Promise<JsonFileResult<z.infer<S>>> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    const code = errorCode(err);
    const failed = { ok: false, missing: false, invalid: false } as const;
    if (code === "ENOENT") return { ...failed, missing: true, problem: "not found" };
    if (code === "EISDIR") return { ...failed, problem: "is a directory" };
    return { ...failed, problem: `cannot be read (${code ?? String(err)})` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, missing: false, invalid: true, problem: "is not valid JSON" };
  }
  const result = schema.safeParse(parsed);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  const field = issue?.path.map(String).join(".") || "top level";
  return {
    ok: false,
    missing: false,
    invalid: true,
    problem: `has a bad value at ${field} (${issue?.message ?? "invalid"})`,
  };
}

/** A file the operator's pipeline depends on: any problem is a one-line error naming it. */
export async function readJsonFile<S extends z.ZodType>(
  file: string,
  schema: S,
  hint: string,
): Promise<z.infer<S>> {
  const result = await parseJsonFile(file, schema);
  if (result.ok) return result.value;
  throw new SyncError(`${file} ${result.problem}`, { hint });
}

/** Where a damaged cache or state entry is reported; a logger fits. */
export interface Warner {
  warn(fields: object, message: string): void;
}

/**
 * A file that is only a shortcut (a cache, a record of earlier work): absent means `undefined`;
 * damaged means `undefined` too, with a warning, and the caller writes it afresh. A caller that
 * may not write again soon gives `replaceWith`, written at once in the damaged file's place so
 * that the warning is not repeated on every read.
 */
export async function readJsonFileOrWarn<S extends z.ZodType>(
  file: string,
  schema: S,
  warner: Warner | undefined,
  what: string,
  replaceWith?: z.infer<S>,
): Promise<z.infer<S> | undefined> {
  const result = await parseJsonFile(file, schema);
  if (result.ok) return result.value;
  if (result.missing) return undefined;
  const afresh = replaceWith === undefined ? "" : "; it is written afresh";
  warner?.warn({ file }, `ignoring ${what}: ${file} ${result.problem}${afresh}`);
  if (replaceWith !== undefined) {
    // Best effort: a disk that refuses this write refuses the next real one too, loudly.
    await writeJsonAtomic(file, replaceWith).catch(() => undefined);
  }
  return undefined;
}

/**
 * `mkdir -p`, one level at a time from the nearest directory that exists. Node's own recursive
 * mkdir spins forever where a parent answers ENOENT for a child it can never hold (a path below
 * /proc or /sys, as a typo in --downloads-dir makes), a stop no signal can reach; here that is
 * an ENOENT error like any other.
 */
export async function ensureDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    try {
      if ((await fs.stat(current)).isDirectory()) break;
      throw Object.assign(new Error(`${current} is not a directory`), { code: "ENOTDIR" });
    } catch (err) {
      if (errorCode(err) !== "ENOENT" || path.dirname(current) === current) throw err;
      missing.push(current);
    }
  }
  for (const level of missing.reverse()) {
    try {
      await fs.mkdir(level);
    } catch (err) {
      // Made meanwhile by another writer: as good as made here.
      if (errorCode(err) !== "EEXIST") throw err;
    }
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** True when `child` is `parent` or lies below it, after resolving both: the guard against escapes. */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(path.resolve(parent), path.resolve(child));
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}
