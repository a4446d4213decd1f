import { mkdir, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fromNow, humanStatus } from "../../src/commands/status.js";
import { envFlag } from "../../src/config/options.js";
import { expectedImages } from "../../src/domain/images.js";
import { SyncError, UsageError } from "../../src/errors.js";
import { crossReference, expectedFromRuns } from "../../src/sync/xref.js";
import type { WorkflowRun } from "../../src/github/runs.js";
import { LOCK_FILE } from "../../src/workspace/lock.js";
import { readDaemonStatus, writeLastCycle } from "../../src/workspace/status.js";
import { makeMetadata } from "../testbed/run-fixtures.js";
import { tempDir } from "./helpers.js";

const summary = {
  cycle: 3,
  result: "partial" as const,
  startedAt: "2025-11-07T10:00:00.000Z",
  seconds: 12.5,
  runs: 20,
  missing: 2,
  pushed: 3,
  synced: 1,
  failed: 1,
  deferred: 1,
  downloadedBytes: 3 * 1024 ** 3,
  uploadedBytes: 1024,
  logBytes: 0,
};

describe("the daemon's state as status reads it", () => {
  it("a lock, the last cycle and the failures, soonest retry first", async () => {
    const downloads = await tempDir("status-unit-");
    const state = path.join(downloads, ".state");
    await writeLastCycle(state, summary, new Date("2025-11-07T10:00:12.500Z"));
    await writeFile(
      path.join(state, "failures.json"),
      JSON.stringify({
        "presto-b-linux-arm64": {
          attempts: 2,
          last_error: "prepare failed: bad",
          last_attempt: "2025-11-07T09:00:00Z",
          next_retry: "2025-11-07T11:00:00Z",
        },
        "presto-a-linux-amd64": {
          attempts: 1,
          last_error: "push failed: down",
          last_attempt: "2025-11-07T09:30:00Z",
          next_retry: "2025-11-07T09:45:00Z",
        },
      }),
    );
    await writeFile(
      path.join(downloads, LOCK_FILE),
      JSON.stringify({
        pid: process.pid,
        hostname: hostname(),
        command: "daemon",
        started_at: "2025-11-07T08:00:00Z",
      }),
    );
    const status = await readDaemonStatus(downloads, state);
    expect(status.lock).toMatchObject({ pid: process.pid, command: "daemon", alive: true });
    expect(status.lastCycle).toMatchObject({
      cycle: 3,
      ok: false,
      backing_off: 1,
      finished_at: "2025-11-07T10:00:12.500Z",
    });
    expect(status.failures.map((f) => f.imageTag)).toEqual([
      "presto-a-linux-amd64",
      "presto-b-linux-arm64",
    ]);

    const lines = humanStatus(status, new Date("2025-11-07T10:05:00Z")).join("\n");
    expect(lines).toContain(
      `Lock        : held by 'daemon', pid ${process.pid} on ${hostname()}\n              since 2025-11-07T08:00:00Z (2.1 h ago)`,
    );
    expect(lines).toContain("Last cycle  : #3 partial, finished 2025-11-07T10:00:12Z (5 min ago)");
    expect(lines).toContain(
      "20 runs, 2 missing, 3 tags pushed, 1 failed, 1 backing off\n              3.00 GiB downloaded in 12.5 s",
    );
    expect(lines).toContain(
      "  presto-a-linux-amd64\n    1 attempt(s), the last 2025-11-07T09:30:00Z\n    retried in the next cycle\n    last error: push failed: down",
    );
    expect(lines).toContain("    next retry 2025-11-07T11:00:00Z (in 55 min)");
    for (const line of lines.split("\n")) expect(line.length).toBeLessThanOrEqual(80);
  });

  it("no downloads directory is an error, not a free lock: a mistyped --downloads-dir", async () => {
    const parent = await tempDir("status-unit-");
    const missing = path.join(parent, "dowloads");
    const error = await readDaemonStatus(missing, path.join(missing, ".state")).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SyncError);
    expect((error as SyncError).oneLine()).toMatch(
      new RegExp(
        `^no downloads directory at ${missing} — give status the daemon's --downloads-dir`,
      ),
    );
  });

  it("no state directory is nothing recorded; a damaged file is one error naming it", async () => {
    const downloads = await tempDir("status-unit-");
    const none = await readDaemonStatus(downloads, path.join(downloads, ".state"));
    expect(none).toMatchObject({ stateFound: false, lock: null, lastCycle: null, failures: [] });

    const state = path.join(downloads, ".state");
    await mkdir(state);
    await writeFile(path.join(state, "last-cycle.json"), "{ not json");
    const error = await readDaemonStatus(downloads, state).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SyncError);
    expect((error as SyncError).message).toBe(
      `cannot read the daemon's state: ${path.join(state, "last-cycle.json")} is not valid JSON`,
    );
  });

  it("tells how far a time is in words", () => {
    const now = new Date("2025-11-07T10:00:00Z");
    expect(fromNow("2025-11-07T10:00:30Z", now)).toBe("in 30 s");
    expect(fromNow("2025-11-07T07:00:00Z", now)).toBe("3.0 h ago");
    expect(fromNow("2025-11-17T10:00:00Z", now)).toBe("in 10 days");
    expect(fromNow("soon", now)).toBe("at an unreadable time");
  });
});

describe("yes/no environment variables", () => {
  it("reads 1/0 and their words, refuses anything else", () => {
    expect(envFlag({ X: "1" }, "X")).toBe(true);
    expect(envFlag({ X: " Yes " }, "X")).toBe(true);
    expect(envFlag({ X: "0" }, "X")).toBe(false);
    expect(envFlag({ X: "" }, "X")).toBe(false);
    expect(envFlag({}, "X")).toBe(false);
    expect(() => envFlag({ X: "maybe" }, "X")).toThrow(UsageError);
  });
});

describe("xref and multi-architecture tags", () => {
  const run = (id: number, platform: "linux/amd64" | "linux/arm64") => ({
    run: {
      id,
      conclusion: "success",
      run_started_at: `2025-11-0${id}T00:00:00Z`,
      created_at: "",
      name: "n",
      html_url: "",
    } as unknown as WorkflowRun,
    metadata: makeMetadata({
      prestoRef: "a".repeat(40),
      veloxRef: "b".repeat(40),
      platform,
      mode: "single",
      workerVariant: "java",
    }),
  });
  const expected = expectedFromRuns([run(1, "linux/amd64"), run(2, "linux/arm64")]);
  const tag = expectedImages(run(1, "linux/amd64").metadata)[0]?.tag ?? "";

  it("an index tag has the runs of its images behind it; --platform looks for extras under its arch", () => {
    const present = new Set([
      `x86/presto-coordinator:${tag}`,
      `presto-coordinator:${tag}`,
      "x86/presto-coordinator:stray",
      "arm/presto-coordinator:stray",
      "presto-coordinator:stray",
    ]);
    expect(crossReference(expected, present).extra).toEqual([
      "arm/presto-coordinator:stray",
      "presto-coordinator:stray",
      "x86/presto-coordinator:stray",
    ]);
    expect(crossReference(expected, present, { arch: "x86" }).extra).toEqual([
      "x86/presto-coordinator:stray",
    ]);
  });
});
