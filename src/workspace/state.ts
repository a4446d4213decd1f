import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { METADATA_KEYS, type RunMetadata } from "../domain/metadata.js";
import type { Logger } from "../report/logger.js";

/** Where a cached result was first read from (a cache hit is never stored again). */
export const CACHED_SOURCES = ["job-log", "run-log-step", "run-log-job"] as const;
export type CachedSource = (typeof CACHED_SOURCES)[number];

// Keys outside METADATA_KEYS (a newer tool's file) are dropped rather than voiding the entry.
const metadataSchema = z.record(z.string(), z.string()).transform((record) => {
  const known: RunMetadata = {};
  for (const key of METADATA_KEYS) {
    const value = record[key];
    if (value !== undefined) known[key] = value;
  }
  return known;
});

const cachedRunSchema = z.object({
  run_id: z.number().int(),
  run_attempt: z.number().int(),
  /** null: the logs were read and held no block; completed runs never change, so that sticks. */
  metadata: metadataSchema.nullable(),
  source: z.enum(CACHED_SOURCES).nullable(),
  cached_at: z.string(),
});

export type CachedRun = z.infer<typeof cachedRunSchema>;

export interface CacheableRun {
  id: number;
  run_attempt?: number;
}

export interface CacheEntry {
  metadata: RunMetadata | null;
  source: CachedSource | null;
}

/** A re-run keeps its id but gets a new attempt with new logs. */
function attemptOf(run: CacheableRun): number {
  return run.run_attempt ?? 1;
}

let tmpSequence = 0;

/**
 * Parsed metadata of completed runs, one JSON file per run under `<stateDir>/runs/`, so a
 * daemon cycle over runs it has already seen downloads no log at all.
 */
export class MetadataCache {
  private readonly runsDir: string;

  constructor(
    stateDir: string,
    private readonly logger?: Logger,
  ) {
    this.runsDir = path.join(stateDir, "runs");
  }

  fileFor(runId: number): string {
    if (!Number.isSafeInteger(runId) || runId < 0) throw new Error(`invalid run id ${runId}`);
    return path.join(this.runsDir, `${runId}.json`);
  }

  async get(run: CacheableRun): Promise<CachedRun | undefined> {
    const file = this.fileFor(run.id);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    let entry: CachedRun;
    try {
      entry = cachedRunSchema.parse(JSON.parse(text));
    } catch {
      // A cache is only a shortcut: a damaged file means reading the logs again, not failing.
      this.logger?.warn({ file }, "ignoring unreadable metadata cache entry");
      return undefined;
    }
    if (entry.run_id !== run.id || entry.run_attempt !== attemptOf(run)) return undefined;
    return entry;
  }

  async put(run: CacheableRun, entry: CacheEntry): Promise<void> {
    const file = this.fileFor(run.id);
    const record: CachedRun = {
      run_id: run.id,
      run_attempt: attemptOf(run),
      metadata: entry.metadata,
      source: entry.source,
      cached_at: new Date().toISOString(),
    };
    await mkdir(this.runsDir, { recursive: true });
    tmpSequence += 1;
    // Rename is atomic, so a reader (or a crash) never sees half a file.
    const tmp = `${file}.tmp-${process.pid}-${tmpSequence}`;
    try {
      await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, "utf8");
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}
