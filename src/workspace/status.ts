import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import type { CycleSummary } from "../domain/daemon.js";
import { SyncError, errorCode } from "../errors.js";
import { isProcessAlive } from "../util/process.js";
import { parseJsonFile, writeJsonAtomic, type JsonFileResult } from "../util/files.js";
import { failuresFileSchema, FAILURES_FILE } from "./failures.js";
import { LOCK_FILE, readLockFile } from "./lock.js";

/**
 * What `status` reads: the daemon's lock, the summary of its last cycle (kept in the state
 * directory after every cycle) and failures.json. Written by the daemon, read by anyone.
 */
export const LAST_CYCLE_FILE = "last-cycle.json";

const count = z.number().int().nonnegative();
const lastCycleSchema = z.object({
  cycle: z.number().int().positive(),
  /** ok, partial, failed (the cycle itself), stopped (a signal). */
  result: z.string(),
  ok: z.boolean(),
  started_at: z.string(),
  finished_at: z.string(),
  seconds: z.number().nonnegative(),
  runs: count,
  missing: count,
  pushed: count,
  failed: count,
  backing_off: count,
  bytes_downloaded: count,
  bytes_uploaded: count,
  log_bytes: count,
  error: z.string().nullable(),
  /** The daemon's latest publish (absent in files older than the field). */
  last_publish: z
    .object({
      image_tag: z.string(),
      run_id: z.number().int().positive(),
      lag_seconds: z.number().nonnegative(),
      published_at: z.string(),
    })
    .nullable()
    .optional(),
  github_rate_limit_remaining: count.nullable().optional(),
  pid: z.number().int().positive(),
  hostname: z.string(),
});
export type LastCycle = z.infer<typeof lastCycleSchema>;

/** Records a finished cycle where `status` finds it; replaced whole after every cycle. */
export async function writeLastCycle(
  stateDir: string,
  summary: CycleSummary,
  finishedAt = new Date(),
): Promise<void> {
  const record: LastCycle = {
    cycle: summary.cycle,
    result: summary.result,
    ok: summary.result === "ok",
    started_at: summary.startedAt,
    finished_at: finishedAt.toISOString(),
    seconds: summary.seconds,
    runs: summary.runs,
    missing: summary.missing,
    pushed: summary.pushed,
    failed: summary.failed,
    backing_off: summary.deferred,
    bytes_downloaded: summary.downloadedBytes,
    bytes_uploaded: summary.uploadedBytes,
    log_bytes: summary.logBytes,
    error: summary.error ?? null,
    last_publish: summary.lastPublish
      ? {
          image_tag: summary.lastPublish.imageTag,
          run_id: summary.lastPublish.runId,
          lag_seconds: Math.round(summary.lastPublish.lagSeconds * 10) / 10,
          published_at: summary.lastPublish.at,
        }
      : null,
    github_rate_limit_remaining: summary.githubRateLimitRemaining ?? null,
    pid: process.pid,
    hostname: os.hostname(),
  };
  await writeJsonAtomic(path.join(stateDir, LAST_CYCLE_FILE), record);
}

export interface LockStatus {
  pid: number;
  host: string;
  command: string;
  since: string;
  /** Whether the holder still runs: known on this host only (null elsewhere). */
  alive: boolean | null;
  /** The directory the lock is in. */
  dir: string;
}

export interface FailureStatus {
  imageTag: string;
  attempts: number;
  lastError: string;
  lastAttempt: string;
  nextRetryAt: string;
}

export interface DaemonStatus {
  downloadsDir: string;
  stateDir: string;
  /** False when the state directory does not exist: no daemon has run with it. */
  stateFound: boolean;
  lock: LockStatus | null;
  lastCycle: LastCycle | null;
  /** Soonest retry first. */
  failures: FailureStatus[];
}

const STATE_HINT =
  "check --downloads-dir and --state-dir; the daemon rewrites this file after its next cycle";

/** A state file for `status`: absent is "nothing recorded", anything else wrong is an error. */
function known<T>(file: string, result: JsonFileResult<T>): T | null {
  if (result.ok) return result.value;
  if (result.missing) return null;
  throw new SyncError(`cannot read the daemon's state: ${file} ${result.problem}`, {
    hint: STATE_HINT,
  });
}

async function directoryExists(dir: string): Promise<boolean> {
  try {
    return (await fs.stat(dir)).isDirectory();
  } catch (err) {
    if (errorCode(err) === "ENOENT") return false;
    throw new SyncError(
      `cannot read the daemon's state in ${dir} (${errorCode(err) ?? String(err)})`,
      {
        hint: "run status as a user who can read that directory",
      },
    );
  }
}

async function lockOf(dir: string): Promise<LockStatus | null> {
  const holder = known(path.join(dir, LOCK_FILE), await readLockFile(dir));
  if (!holder) return null;
  return {
    pid: holder.pid,
    host: holder.hostname,
    command: holder.command,
    since: holder.started_at,
    alive: holder.hostname === os.hostname() ? isProcessAlive(holder.pid) : null,
    dir,
  };
}

/** Everything `status` tells, read once; throws a one-line SyncError only for unreadable state. */
export async function readDaemonStatus(
  downloadsDir: string,
  stateDir: string,
): Promise<DaemonStatus> {
  const downloads = path.resolve(downloadsDir);
  const state = path.resolve(stateDir);
  // A daemon makes its downloads directory as it starts: without one, no daemon ever ran here,
  // and "Lock: free" would only hide a mistyped path.
  if (!(await directoryExists(downloads))) {
    throw new SyncError(`no downloads directory at ${downloads}`, {
      hint: "give status the daemon's --downloads-dir (the unit's is /var/lib/gh-gitlab-sync/downloads)",
    });
  }
  const stateFound = await directoryExists(state);
  // The daemon locks the downloads directory, and the state directory too when it lies elsewhere.
  const lock =
    (await lockOf(downloads)) ?? (stateFound && state !== downloads ? await lockOf(state) : null);
  if (!stateFound) {
    return {
      downloadsDir: downloads,
      stateDir: state,
      stateFound,
      lock,
      lastCycle: null,
      failures: [],
    };
  }
  const cycleFile = path.join(state, LAST_CYCLE_FILE);
  const lastCycle = known(cycleFile, await parseJsonFile(cycleFile, lastCycleSchema));
  const failuresFile = path.join(state, FAILURES_FILE);
  const recorded = known(failuresFile, await parseJsonFile(failuresFile, failuresFileSchema)) ?? {};
  const failures = Object.entries(recorded)
    .map(([imageTag, entry]) => ({
      imageTag,
      attempts: entry.attempts,
      lastError: entry.last_error,
      lastAttempt: entry.last_attempt,
      nextRetryAt: entry.next_retry,
    }))
    .sort(
      (a, b) => a.nextRetryAt.localeCompare(b.nextRetryAt) || a.imageTag.localeCompare(b.imageTag),
    );
  return { downloadsDir: downloads, stateDir: state, stateFound, lock, lastCycle, failures };
}
