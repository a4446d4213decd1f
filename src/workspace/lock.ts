import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { SyncError, errorCode } from "../errors.js";
import { ensureDir, parseJsonFile, refusedWriteCode, type JsonFileResult } from "../util/files.js";
import { isProcessAlive } from "../util/process.js";

export const LOCK_FILE = ".gh-gitlab-sync.lock";
/** Held for the few milliseconds of a takeover only; see {@link acquireWorkspaceLock}. */
const GUARD_SUFFIX = ".takeover";
/** A guard older than this was left by a taker that died mid-takeover. */
const GUARD_STALE_MS = 10_000;
/** Rounds of "create, or look at the holder": losers of a takeover race see the winner within a few. */
const MAX_ROUNDS = 200;

const holderSchema = z.object({
  pid: z.number().int().positive(),
  hostname: z.string(),
  command: z.string(),
  started_at: z.string(),
  /** Unique per acquisition: a pid can be reused, this cannot. Absent in locks of older versions. */
  token: z.string().optional(),
});
export type LockHolder = z.infer<typeof holderSchema>;

export interface WorkspaceLock {
  path: string;
  release(): Promise<void>;
}

type Seen = { state: "missing" } | { state: "held"; raw: string; holder: LockHolder | undefined };

/** What the lock file holds now: its exact text (compared later) and, if it parses, the holder. */
async function look(file: string): Promise<Seen> {
  let raw: string;
  try {
    raw = await fs.readFile(file, "utf8");
  } catch (err) {
    if (errorCode(err) === "ENOENT") return { state: "missing" };
    throw err;
  }
  // Parsed from the very text read, so `raw` and `holder` always describe the same file.
  let holder: LockHolder | undefined;
  try {
    const parsed = holderSchema.safeParse(JSON.parse(raw));
    holder = parsed.success ? parsed.data : undefined;
  } catch {
    holder = undefined;
  }
  return { state: "held", raw, holder };
}

/** A holder on this host whose process is gone; a file that is not a lock of ours counts too. */
function isStale(holder: LockHolder | undefined): boolean {
  return !holder || (holder.hostname === os.hostname() && !isProcessAlive(holder.pid));
}

/** `content` in a private file beside `file`, complete before anyone can see it under `file`. */
async function writeBeside(file: string, content: string): Promise<string> {
  const tmp = `${file}.${process.pid}-${randomBytes(6).toString("hex")}`;
  await fs.writeFile(tmp, content, { flag: "wx" });
  return tmp;
}

/**
 * Creates `file` holding `content` only if it does not exist: `link()` of a complete private file
 * is atomic and exclusive, so no reader ever sees an empty or half-written lock (a `wx` open
 * followed by a write would show one, and a reader would take it for damaged and stale).
 */
async function createExclusive(file: string, content: string): Promise<boolean> {
  const tmp = await writeBeside(file, content);
  try {
    await fs.link(tmp, file);
    return true;
  } catch (err) {
    if (errorCode(err) === "EEXIST") return false;
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/**
 * Removes a takeover guard whose taker died (pid gone on this host) or that is far older than a
 * takeover lasts. It is renamed to a private name first, so that of several processes seeing the
 * same dead guard only one removes it; if what it moved turns out to be a live guard (replaced in
 * between), it is linked back.
 */
async function clearDeadGuard(guard: string): Promise<void> {
  const seen = await look(guard);
  if (seen.state === "missing") return;
  let age = 0;
  try {
    age = Date.now() - (await fs.stat(guard)).mtimeMs;
  } catch {
    return;
  }
  if (!isStale(seen.holder) && age < GUARD_STALE_MS) return;
  const moved = `${guard}.dead-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    await fs.rename(guard, moved);
  } catch (err) {
    if (errorCode(err) === "ENOENT") return;
    throw err;
  }
  const taken = await fs.readFile(moved, "utf8").catch(() => "");
  if (taken !== seen.raw) await fs.link(moved, guard).catch(() => undefined);
  await fs.rm(moved, { force: true });
}

function refusal(dir: string, holder: LockHolder): SyncError {
  return new SyncError(
    `${dir} is in use by '${holder.command}' (pid ${holder.pid} on ${holder.hostname}, since ${holder.started_at})`,
    {
      hint: `wait for it or stop it (kill ${holder.pid}); a daemon and manual runs need separate --downloads-dir`,
    },
  );
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One lock per downloads directory, so two daemons (or a daemon and a manual push) never work on
 * the same files. Holders on another host sharing the directory are respected.
 *
 * Taking a free lock is one exclusive `link()`. Taking over a stale one (its process is gone) is
 * where processes race: a crashed daemon restarted by systemd while an operator runs `push`.
 * "Remove, then create" lets two win (A removes and creates; B, which had read the same stale
 * holder, then removes A's fresh lock). So a takeover is serialised by a guard file beside the
 * lock, created exclusively: only the guard's holder may replace the lock, and only after
 * reading it again and finding the very same stale text it decided on (the token makes every
 * acquisition's text unique); it replaces it with one atomic `rename()` of a complete file, so
 * the lock path is never empty in between for a third process to slip into. Whoever does not
 * get the guard looks again a moment later and then finds the winner alive, and is refused. A
 * guard left by a taker that died in those milliseconds is cleared by {@link clearDeadGuard}.
 */
export async function acquireWorkspaceLock(
  downloadsDir: string,
  command: string,
): Promise<WorkspaceLock> {
  const dir = path.resolve(downloadsDir);
  await ensureDir(dir);
  const file = path.join(dir, LOCK_FILE);
  const guard = `${file}${GUARD_SUFFIX}`;
  const me: LockHolder = {
    pid: process.pid,
    hostname: os.hostname(),
    command,
    started_at: new Date().toISOString(),
    token: randomBytes(12).toString("hex"),
  };
  const content = JSON.stringify(me);
  for (let round = 0; round < MAX_ROUNDS; round += 1) {
    if (await createExclusive(file, content)) return heldLock(file, me);
    const seen = await look(file);
    if (seen.state === "missing") continue;
    if (!isStale(seen.holder) && seen.holder) throw refusal(dir, seen.holder);
    if (await createExclusive(guard, content)) {
      try {
        const again = await look(file);
        if (again.state === "held" && again.raw === seen.raw) {
          const tmp = await writeBeside(file, content);
          await fs.rename(tmp, file);
          return heldLock(file, me);
        }
      } finally {
        await fs.rm(guard, { force: true });
      }
    } else {
      await clearDeadGuard(guard);
    }
    // Someone else is taking over: give them a moment, then look at what they left.
    await pause(5 + Math.random() * 20);
  }
  throw new SyncError(`could not take the lock ${file}`, {
    hint: "other processes keep taking it over; try again",
  });
}

/** Whether the lock file still names this acquisition (nobody took it over meanwhile). */
function isMine(text: string, me: LockHolder): boolean {
  try {
    const result = holderSchema.safeParse(JSON.parse(text));
    return result.success && result.data.token === me.token && result.data.pid === me.pid;
  } catch {
    return false;
  }
}

function heldLock(file: string, me: LockHolder): WorkspaceLock {
  let released = false;
  // A process ended by `process.exit` (a second Ctrl-C) runs no `finally`: this still removes it.
  const onExit = () => {
    try {
      if (isMine(readFileSync(file, "utf8"), me)) rmSync(file, { force: true });
    } catch {
      // Already gone, or unreadable: nothing of ours to remove.
    }
  };
  process.on("exit", onExit);
  return {
    path: file,
    async release() {
      if (released) return;
      released = true;
      process.off("exit", onExit);
      const text = await fs.readFile(file, "utf8").catch(() => undefined);
      if (text === undefined || !isMine(text, me)) return;
      try {
        await fs.rm(file, { force: true });
      } catch (err) {
        // A disk turned read-only (or forbidding) keeps the file: it names this process, gone
        // once it exits, so `status` shows it as left behind and the next run takes it over.
        // Throwing here would only hide why the run ended.
        if (!refusedWriteCode(err)) throw err;
      }
    },
  };
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
