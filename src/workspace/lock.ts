import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { SyncError, errorCode } from "../errors.js";
import { parseJsonFile, type JsonFileResult } from "../util/files.js";
import { isProcessAlive } from "../util/process.js";

export const LOCK_FILE = ".gh-gitlab-sync.lock";

const holderSchema = z.object({
  pid: z.number().int().positive(),
  hostname: z.string(),
  command: z.string(),
  started_at: z.string(),
});
export type LockHolder = z.infer<typeof holderSchema>;

export interface WorkspaceLock {
  path: string;
  release(): Promise<void>;
}

/** The lock's holder; `undefined` when the file is gone or not a lock this tool wrote. */
async function readHolder(file: string): Promise<LockHolder | undefined> {
  const result = await parseJsonFile(file, holderSchema);
  return result.ok ? result.value : undefined;
}

/**
 * One lock per downloads directory, so two daemons (or a daemon and a manual push) never work on
 * the same files. The lock file is created atomically (`wx`); a lock whose process is gone (on
 * this host) is stale and taken over. Holders on another host sharing the directory are respected.
 */
export async function acquireWorkspaceLock(
  downloadsDir: string,
  command: string,
): Promise<WorkspaceLock> {
  const dir = path.resolve(downloadsDir);
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const me: LockHolder = {
    pid: process.pid,
    hostname: os.hostname(),
    command,
    started_at: new Date().toISOString(),
  };
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      await fs.writeFile(file, JSON.stringify(me), { flag: "wx" });
      let released = false;
      return {
        path: file,
        async release() {
          if (released) return;
          released = true;
          const holder = await readHolder(file);
          if (holder?.pid === me.pid && holder.hostname === me.hostname)
            await fs.rm(file, { force: true });
        },
      };
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
    }
    const holder = await readHolder(file);
    const stale = !holder || (holder.hostname === me.hostname && !isProcessAlive(holder.pid));
    if (!stale && holder) {
      throw new SyncError(
        `${dir} is in use by '${holder.command}' (pid ${holder.pid} on ${holder.hostname}, since ${holder.started_at})`,
        {
          hint: `wait for it or stop it (kill ${holder.pid}); a daemon and manual runs need separate --downloads-dir`,
        },
      );
    }
    // The holder died without cleaning up: take over. `rm` then `wx` again, so two takers cannot both win.
    await fs.rm(file, { force: true });
  }
  throw new SyncError(`could not take the lock ${file}`, {
    hint: "another process keeps taking it; try again",
  });
}

/** Runs `fn` holding the downloads directory's lock, released however `fn` ends. */
export async function withWorkspaceLock<T>(
  downloadsDir: string,
  command: string,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = await acquireWorkspaceLock(downloadsDir, command);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/**
 * The holder of `dir`'s lock as the file says, for `status` (which only reads): `missing` when
 * nobody holds it, `problem` when the file is there but no lock this tool wrote.
 */
export function readLockFile(dir: string): Promise<JsonFileResult<LockHolder>> {
  return parseJsonFile(path.join(path.resolve(dir), LOCK_FILE), holderSchema);
}
