import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { taskProgress } from "../../src/docker/progress.js";
import { progressTask } from "../../src/domain/events.js";
import { progressListener } from "../../src/report/progress.js";
import { capturingLogger } from "./helpers.js";

const messages = (lines: string[]) =>
  lines.map((line) => JSON.parse(line) as Record<string, unknown>).map((r) => r.msg);

describe("progress listener, log lines", () => {
  it("logs a byte transfer at most every few seconds, and once when it is done", async () => {
    const { logger, lines } = capturingLogger();
    const progress = progressListener(logger, { tty: false, everyMs: 60_000 });
    await progressTask(progress, "download presto-images-1", async () => {
      for (const bytes of [1, 2, 3].map((n) => n * 1024 ** 2)) {
        progress({ kind: "bytes", task: "download presto-images-1", bytes, total: 3 * 1024 ** 2 });
      }
    });
    expect(messages(lines)).toEqual([
      "download presto-images-1: 1.0 MiB of 3.0 MiB",
      "download presto-images-1: done",
    ]);
    expect(JSON.parse(lines[1] ?? "{}")).toMatchObject({ bytes: 3 * 1024 ** 2 });
  });

  it("says a transfer with nothing to move is done", async () => {
    const { logger, lines } = capturingLogger();
    await progressTask(progressListener(logger, { tty: false }), "push x/y:1", async () => {});
    expect(messages(lines)).toEqual(["push x/y:1: done"]);
  });

  it("logs each layer state once, and whole-image messages once", () => {
    const { logger, lines } = capturingLogger();
    const progress = progressListener(logger, { tty: false });
    const task = "push r/x86/app:1";
    progress({ kind: "start", task });
    for (const event of [
      { status: "The push refers to repository [r/x86/app]" },
      { status: "The push refers to repository [r/x86/app]" },
      { id: "abc", status: "Preparing" },
      { id: "abc", status: "Pushing", current: 1, total: 9 },
      { id: "abc", status: "Pushing", current: 5, total: 9 },
      { id: "abc", status: "Pushed" },
      { id: "def", status: "Layer already exists" },
    ]) {
      progress(taskProgress(task, event));
    }
    progress({ kind: "end", task, ok: true });
    expect(messages(lines)).toEqual([
      `${task}: The push refers to repository [r/x86/app]`,
      `${task}: abc Preparing`,
      `${task}: abc Pushing`,
      `${task}: abc Pushed`,
      `${task}: def Layer already exists`,
    ]);
    expect(JSON.parse(lines[2] ?? "{}")).toMatchObject({
      layer: "abc",
      status: "Pushing",
      bytes: 9,
    });
  });
});

describe("progress listener, bars", () => {
  it("draws layer bars on the stream it is given, nothing in the log", () => {
    const { logger, lines } = capturingLogger();
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 80 });
    let drawn = "";
    stream.on("data", (chunk: Buffer) => (drawn += chunk.toString()));
    const progress = progressListener(logger, { tty: true, stream });
    const task = "load app:1";
    progress({ kind: "start", task });
    progress(taskProgress(task, { id: "abc", status: "Loading layer", current: 4, total: 8 }));
    progress(taskProgress(task, { id: "abc", status: "Pull complete" }));
    progress({ kind: "end", task, ok: true });
    expect(drawn).toContain("abc [");
    expect(drawn).toContain("Pull complete");
    expect(lines).toEqual([]);
  });
});

describe("docker progress as task events", () => {
  it("marks the final layer states done and keeps whole-image messages apart", () => {
    expect(taskProgress("t", { status: "Loaded image: app:1" })).toEqual({
      kind: "status",
      task: "t",
      status: "Loaded image: app:1",
    });
    expect(taskProgress("t", { id: "l", status: "Pushing", current: 1, total: 2 })).toEqual({
      kind: "part",
      task: "t",
      part: "l",
      status: "Pushing",
      bytes: 1,
      total: 2,
    });
    expect(taskProgress("t", { id: "l", status: "Mounted from x/y" })).toMatchObject({
      done: true,
    });
  });
});
