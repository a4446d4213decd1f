import path from "node:path";
import { z } from "zod";
import {
  METADATA_SOURCES,
  runMetadataSchema,
  type MetadataSource,
  type RunMetadata,
} from "../domain/metadata.js";
import type { Logger } from "../report/logger.js";
import { readJsonFileOrWarn, writeJsonAtomic } from "../util/files.js";

/** Where a cached result was first read from (a cache hit is never stored again). */
export type CachedSource = MetadataSource;

const cachedRunSchema = z.object({
  run_id: z.number().int(),
  run_attempt: z.number().int(),
  /** null: the logs were read and held no block; completed runs never change, so that sticks. */
  metadata: runMetadataSchema.nullable(),
  source: z.enum(METADATA_SOURCES).nullable(),
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

/**
 * Parsed metadata of completed runs, one JSON file per run under `<stateDir>/runs/`, so a
 * daemon cycle over runs it has already seen downloads no log at all. A damaged entry is a
 * warning and a miss: the cache is only a shortcut, and the next write replaces it.
 */
export class MetadataCache {
  private readonly runsDir: string;

  constructor(
    stateDir: string,
    private readonly logger: Logger,
  ) {
    this.runsDir = path.join(stateDir, "runs");
  }

  fileFor(runId: number): string {
    if (!Number.isSafeInteger(runId) || runId < 0) throw new Error(`invalid run id ${runId}`);
    return path.join(this.runsDir, `${runId}.json`);
  }

  async get(run: CacheableRun): Promise<CachedRun | undefined> {
    const file = this.fileFor(run.id);
    const entry = await readJsonFileOrWarn(
      file,
      cachedRunSchema,
      this.logger,
      "metadata cache entry",
    );
    if (!entry || entry.run_id !== run.id || entry.run_attempt !== attemptOf(run)) return undefined;
    return entry;
  }

  async put(run: CacheableRun, entry: CacheEntry): Promise<void> {
    const record: CachedRun = {
      run_id: run.id,
      run_attempt: attemptOf(run),
      metadata: entry.metadata,
      source: entry.source,
      cached_at: new Date().toISOString(),
    };
    await writeJsonAtomic(this.fileFor(run.id), record);
  }
}
