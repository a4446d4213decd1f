import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { acquireWorkspaceLock, LOCK_FILE } from "../../src/workspace/lock.js";
import { backoffSeconds, FailureState } from "../../src/workspace/failures.js";
import { tempDir } from "./helpers.js";

describe("workspace lock", () => {
  it("refuses a second holder and names the first", async () => {
    const dir = await tempDir("lock-");
    const lock = await acquireWorkspaceLock(dir, "daemon");
    await expect(acquireWorkspaceLock(dir, "push x")).rejects.toThrow(
      new RegExp(`in use by 'daemon' \\(pid ${process.pid}`),
    );
    await lock.release();
    const again = await acquireWorkspaceLock(dir, "push x");
    await again.release();
  });

  it("takes over a stale lock left by a dead process", async () => {
    const dir = await tempDir("lock-");
    const child = spawn(process.execPath, ["-e", "0"]);
    const deadPid = await new Promise<number>((resolve) =>
      child.on("exit", () => resolve(child.pid ?? 0)),
    );
    const os = await import("node:os");
    await writeFile(
      path.join(dir, LOCK_FILE),
      JSON.stringify({ pid: deadPid, hostname: os.hostname(), command: "daemon", started_at: "x" }),
    );
    const lock = await acquireWorkspaceLock(dir, "daemon");
    expect(JSON.parse(await readFile(lock.path, "utf8")).pid).toBe(process.pid);
    await lock.release();
  });
});

describe("failure state", () => {
  const policy = { baseSeconds: 60, maxSeconds: 600 };

  it("backs off exponentially up to the cap", () => {
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffSeconds(n, policy))).toEqual([
      60, 120, 240, 480, 600, 600,
    ]);
  });

  it("records failures, waits them out, and clears on success", async () => {
    const state = new FailureState(await tempDir("fail-"), policy);
    const t0 = new Date("2025-01-01T00:00:00Z");
    const first = await state.recordFailure("tag-a", "corrupt zip", t0);
    expect(first).toMatchObject({
      attempts: 1,
      last_error: "corrupt zip",
      next_retry: "2025-01-01T00:01:00.000Z",
    });
    expect(await state.waiting("tag-a", new Date("2025-01-01T00:00:30Z"))).toBeDefined();
    expect(await state.waiting("tag-a", new Date("2025-01-01T00:01:01Z"))).toBeUndefined();
    const second = await state.recordFailure(
      "tag-a",
      "corrupt zip",
      new Date("2025-01-01T00:02:00Z"),
    );
    expect(second.attempts).toBe(2);
    expect(second.next_retry).toBe("2025-01-01T00:04:00.000Z");
    await state.clear("tag-a");
    expect(await state.load()).toEqual({});
  });

  it("a next_retry further ahead than the maximum (a clock that jumped back, another host's file) counts as the maximum from now, kept", async () => {
    const dir = await tempDir("fail-");
    const warnings: string[] = [];
    const state = new FailureState(dir, policy, { warn: (_f, m) => warnings.push(m) });
    const far = {
      attempts: 2,
      last_error: "push failed",
      last_attempt: "2090-01-01T00:00:00.000Z",
      next_retry: "2090-01-01T00:04:00.000Z",
    };
    const near = { ...far, next_retry: "2025-01-01T00:05:00.000Z" };
    await writeFile(path.join(dir, "failures.json"), JSON.stringify({ far, near }));
    const now = new Date("2025-01-01T00:00:00Z");
    expect((await state.waiting("far", now))?.next_retry).toBe("2025-01-01T00:10:00.000Z");
    expect(warnings).toEqual([
      "far: its failure record said to wait until 2090-01-01T00:04:00.000Z, longer than the longest back-off (600 s); waiting until 2025-01-01T00:10:00.000Z instead",
    ]);
    // Kept: a later read does not push the bound on from its own now, so the wait does end.
    const later = new Date("2025-01-01T00:09:00Z");
    expect((await state.load(later)).far?.next_retry).toBe("2025-01-01T00:10:00.000Z");
    expect(await state.waiting("far", new Date("2025-01-01T00:10:01Z"))).toBeUndefined();
    // Within the bound: untouched.
    expect((await state.load(later)).near?.next_retry).toBe("2025-01-01T00:05:00.000Z");
    expect(warnings).toHaveLength(1);
  });
});
