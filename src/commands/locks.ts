import path from "node:path";
import { stateDirFor, type WorkspaceOptions } from "../config/options.js";
import { SyncError, UsageError, errorCode } from "../errors.js";
import { isInside } from "../util/files.js";
import { LOCK_FILE, withWorkspaceLock } from "../workspace/lock.js";

/**
 * The locks a command that writes takes: the downloads directory's, and also the state
 * directory's when --state-dir puts it elsewhere, so that two daemons given different downloads
 * directories but one state directory cannot both write its failures.json and caches.
 *
 * A directory that cannot hold a lock is the operator's to fix before anything can run, so it is
 * a usage error naming the path and the flag: read-only, not a directory, or a lock path that is
 * a directory.
 */
export async function withWorkspaceLocks<T>(
  workspace: WorkspaceOptions,
  command: string,
  fn: () => Promise<T>,
  downloadsFlag = "--downloads-dir",
): Promise<T> {
  const downloads = path.resolve(workspace.downloadsDir);
  const state = stateDirFor(workspace);
  return locked(downloads, downloadsFlag, command, () =>
    isInside(downloads, state) ? fn() : locked(state, "--state-dir", command, fn),
  );
}

async function locked<T>(
  dir: string,
  flag: string,
  command: string,
  fn: () => Promise<T>,
): Promise<T> {
  let taken = false;
  try {
    return await withWorkspaceLock(dir, command, () => {
      taken = true;
      return fn();
    });
  } catch (err) {
    // Only the taking of the lock is worded here; what the command itself threw goes on as it is.
    if (taken) throw err;
    throw lockFailure(err, dir, flag);
  }
}

function lockFailure(err: unknown, dir: string, flag: string): unknown {
  if (err instanceof SyncError) return err;
  const code = errorCode(err);
  const lock = path.join(dir, LOCK_FILE);
  switch (code) {
    case "EROFS":
    case "EACCES":
    case "EPERM":
      return new UsageError(
        `cannot write to ${dir} (${code === "EROFS" ? "read-only file system" : "permission denied"})`,
        `give ${flag} a directory this user can write to`,
      );
    case "ENOTDIR":
    case "EEXIST":
      return new UsageError(`${dir} is not a directory`, `give ${flag} a directory`);
    case "ENOENT":
      // What recursive mkdir reports when a parent cannot be made (on a read-only mount, too).
      return new UsageError(
        `cannot create ${dir}`,
        `give ${flag} a directory this user can write to`,
      );
    case "EISDIR":
    case "ERR_FS_EISDIR":
      return new UsageError(
        `${lock} is a directory, not this tool's lock file`,
        `remove that directory (the tool never makes one there) or give ${flag} another directory`,
      );
    case "ENOSPC":
      return new SyncError(`no space left on the disk holding ${dir} to write its lock`, {
        hint: "free disk space and run again",
        cause: err,
      });
    default:
      return err;
  }
}
