import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { LOCK_FILE } from "../../src/workspace/lock.js";
import { tempDir } from "./helpers.js";

/**
 * Six real processes take over one stale lock at the same moment, trial after trial. The workers
 * stay up between trials (a fresh node per attempt would cost more than the race itself) and
 * each waits for "go" on stdin, so all six start acquiring within the same few milliseconds.
 */
const WORKERS = 6;
const TRIALS = 40;
const lockModule = pathToFileURL(path.resolve("dist/workspace/lock.js")).href;

const WORKER_SOURCE = `
import { createInterface } from "node:readline";
const { acquireWorkspaceLock } = await import(${JSON.stringify(lockModule)});
let held;
for await (const line of createInterface({ input: process.stdin })) {
  const [verb, dir] = line.split(" ");
  if (verb === "go") {
    try {
      held = await acquireWorkspaceLock(dir, "worker " + process.pid);
      console.log(JSON.stringify({ won: true }));
    } catch (err) {
      console.log(JSON.stringify({ won: false, message: err.message }));
    }
  } else if (verb === "release") {
    await held?.release();
    held = undefined;
    console.log(JSON.stringify({ released: true }));
  }
}
`;

interface Worker {
  child: ChildProcessWithoutNullStreams;
  next(): Promise<Record<string, unknown>>;
}

function startWorker(): Worker {
  const child = spawn(process.execPath, ["--input-type=module", "-e", WORKER_SOURCE]);
  const waiting: Array<(value: Record<string, unknown>) => void> = [];
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    const value = JSON.parse(line) as Record<string, unknown>;
    const resolve = waiting.shift();
    if (resolve) resolve(value);
    else lines.push(value);
  });
  return {
    child,
    next: () => {
      const ready = lines.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "0"]);
  return new Promise((resolve) => child.on("exit", () => resolve(child.pid ?? 0)));
}

const workers: Worker[] = [];
afterAll(() => {
  for (const worker of workers) worker.child.kill();
});

describe("workspace lock under a takeover race", () => {
  it("lets exactly one of six processes take over a stale lock, every time", async () => {
    const root = await tempDir("lock-race-");
    for (let i = 0; i < WORKERS; i += 1) workers.push(startWorker());
    const stalePid = await deadPid();
    const winnersPerTrial: number[] = [];
    for (let trial = 0; trial < TRIALS; trial += 1) {
      const dir = path.join(root, `t${trial}`);
      await mkdir(dir);
      await writeFile(
        path.join(dir, LOCK_FILE),
        JSON.stringify({
          pid: stalePid,
          hostname: os.hostname(),
          command: "daemon",
          started_at: "2025-01-01T00:00:00.000Z",
        }),
      );
      for (const worker of workers) worker.child.stdin.write(`go ${dir}\n`);
      const results = await Promise.all(workers.map((w) => w.next()));
      const winners = results.filter((r) => r.won === true);
      winnersPerTrial.push(winners.length);
      expect(winners.length, `trial ${trial}: ${JSON.stringify(results)}`).toBe(1);
      // Every loser is told who holds it: the winner's pid, host and command.
      const holderPid = workers[results.findIndex((r) => r.won === true)]?.child.pid;
      for (const loser of results.filter((r) => r.won !== true)) {
        expect(loser.message).toContain(`in use by 'worker ${holderPid}' (pid ${holderPid} on`);
        expect(loser.message).toContain(os.hostname());
      }
      for (const worker of workers) worker.child.stdin.write("release\n");
      await Promise.all(workers.map((w) => w.next()));
      // Released, and no guard or private temporary file left behind.
      expect(await readdir(dir)).toEqual([]);
    }
    expect(winnersPerTrial).toEqual(Array.from({ length: TRIALS }, () => 1));
  });

  it("is removed when the process is ended by process.exit (a second Ctrl-C), which runs no finally", async () => {
    const dir = await tempDir("lock-exit-");
    const source = `
      const { acquireWorkspaceLock } = await import(${JSON.stringify(lockModule)});
      await acquireWorkspaceLock(${JSON.stringify(dir)}, "daemon");
      process.exit(130);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", source]);
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(130);
    expect(await readdir(dir)).toEqual([]);
  });
});
