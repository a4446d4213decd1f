import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { z } from "zod";
import { SyncError } from "../errors.js";

/** Python's `json.dump(obj, fh, indent=2, sort_keys=True)`, so files match the original's byte for byte. */
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

/**
 * Writes a file so that it is either absent, the old version, or the complete new one: a reader
 * (or a crash) never sees half a file. The temporary name is unique per writer.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, pythonJson(value));
}

/** Reads and validates a JSON file; every failure names the file and what to do about it. */
export async function readJsonFile<S extends z.ZodType>(
  file: string,
  schema: S,
  hint: string,
): Promise<z.infer<S>> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SyncError(
      code === "ENOENT" ? `${file} not found` : `cannot read ${file} (${code ?? String(err)})`,
      { hint },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SyncError(`${file} is not valid JSON`, { hint });
  }
  const result = schema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new SyncError(
      `${file} has an unexpected shape (${issue?.path.join(".") || "top level"}: ${issue?.message})`,
      {
        hint,
      },
    );
  }
  return result.data;
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
