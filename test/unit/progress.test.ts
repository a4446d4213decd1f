import { describe, expect, it } from "vitest";
import { taskProgress } from "../../src/docker/progress.js";
import { progressTask } from "../../src/domain/events.js";
import { createLogger } from "../../src/report/logger.js";
import { bytePair, duration, progressListener, shortLabel } from "../../src/report/progress.js";
import { createLiveArea, type LiveArea } from "../../src/report/terminal.js";
import { capturingLogger } from "./helpers.js";

const MiB = 1024 ** 2;
const records = (lines: string[]) =>
  lines.map((line) => JSON.parse(line) as Record<string, unknown>);
const messagesAt = (lines: string[], level: number) =>
  records(lines)
    .filter((r) => r.level === level)
    .map((r) => r.msg);
const INFO = 30;
const DEBUG = 20;

/** A clock the test moves by hand. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

/** A live area that keeps the line renderers, so a test can draw them at any width. */
function recordingLive(): LiveArea & { lines: Map<string, (columns: number) => string> } {
  const lines = new Map<string, (columns: number) => string>();
  return {
    lines,
    print: () => undefined,
    set: (key, render) => void lines.set(key, render),
    remove: (key) => void lines.delete(key),
    clear: () => lines.clear(),
  };
}

describe("progress listener, log lines (no terminal)", () => {
  it("logs a transfer at most every few seconds with rate and ETA; its end only at debug", async () => {
    const { logger, lines } = capturingLogger();
    const time = clock();
    const progress = progressListener(logger, { everyMs: 10_000, now: time.now });
    const task = "download presto-images-1";
    await progressTask(progress, task, async () => {
      for (let mib = 1; mib <= 30; mib += 1) {
        time.advance(1000);
        progress({ kind: "bytes", task, bytes: mib * MiB, total: 30 * MiB });
      }
    });
    const info = messagesAt(lines, INFO);
    expect(info).toEqual([
      `${task}: 10.0 MiB of 30.0 MiB (33%), 1.0 MiB/s, ETA 20 s`,
      `${task}: 20.0 MiB of 30.0 MiB (66%), 1.0 MiB/s, ETA 10 s`,
      `${task}: 30.0 MiB of 30.0 MiB (100%), 1.0 MiB/s, ETA 0 s`,
    ]);
    expect(records(lines)[0]).toMatchObject({ bytes: 10 * MiB, total: 30 * MiB, percent: 33.3 });
    expect(messagesAt(lines, DEBUG)).toEqual([`${task}: done after 30 s (30.0 MiB)`]);
  });

  it("an image's layers: no line per layer at the default level, each state change at debug", () => {
    const { logger, lines } = capturingLogger();
    const time = clock();
    const progress = progressListener(logger, { everyMs: 10_000, now: time.now });
    const task = "push r/x86/app:1";
    progress({ kind: "start", task });
    for (const event of [
      { status: "The push refers to repository [r/x86/app]" },
      { status: "The push refers to repository [r/x86/app]" },
      { id: "abc", status: "Preparing" },
      { id: "def", status: "Preparing" },
      { id: "abc", status: "Pushing", current: 4 * MiB, total: 8 * MiB },
      { id: "abc", status: "Pushing", current: 6 * MiB, total: 8 * MiB },
      { id: "abc", status: "Pushed" },
      { id: "def", status: "Layer already exists" },
    ]) {
      time.advance(3000);
      progress(taskProgress(task, event));
    }
    progress({ kind: "end", task, ok: true });
    const debug = messagesAt(lines, DEBUG);
    expect(debug).toEqual([
      `${task}: The push refers to repository [r/x86/app]`,
      `${task}: layer abc Preparing`,
      `${task}: layer def Preparing`,
      `${task}: layer abc Pushing`,
      `${task}: layer abc Pushed`,
      `${task}: layer def Layer already exists`,
      `${task}: done after 24 s (8.0 MiB)`,
    ]);
    // At the default level: the image as one transfer (its layers' bytes added up), at most
    // every 10 s, nothing before a byte moved; the rate is that of the last few seconds.
    const info = messagesAt(lines, INFO);
    expect(info).toEqual([`${task}: 4.0 MiB of 8.0 MiB (50%), 682.7 KiB/s, ETA 6 s`]);
    expect(records(lines).filter((r) => r.level === INFO && "layer" in r)).toEqual([]);
  });

  it("nothing is logged at the default level by a task that moved nothing", async () => {
    const { logger, lines } = capturingLogger();
    await progressTask(progressListener(logger), "push x/y:1", async () => {});
    expect(messagesAt(lines, INFO)).toEqual([]);
  });
});

describe("progress listener, live lines (a terminal)", () => {
  const task = "download presto-images-12345";

  /** A listener drawing on a recording live area, on a clock the test moves. */
  function liveListener() {
    const { logger, lines } = capturingLogger();
    const live = recordingLive();
    const time = clock();
    return { progress: progressListener(logger, { live, now: time.now }), live, time, lines };
  }

  function transfer(bytes: number, total: number) {
    const { progress, live, time, lines } = liveListener();
    progress({ kind: "start", task });
    for (let step = 1; step <= 10; step += 1) {
      time.advance(1000);
      progress({ kind: "bytes", task, bytes: (bytes * step) / 10, total });
    }
    const render = live.lines.get(task);
    if (!render) throw new Error("no live line");
    return { render, live, progress, lines };
  }

  it("at 80 columns: label, percent, bytes, rate and ETA within the width, the bar if there is room", () => {
    const { render, lines } = transfer(3 * 1024 * MiB, 11 * 1024 * MiB);
    const line = render(79);
    expect(line.length).toBeLessThanOrEqual(79);
    // The bar gives way before the label and every figure: here there is no room for it.
    expect(line).toMatch(
      /^download presto-images-12345 +27% +3\.00\/11\.00 GiB 307\.2 MiB\/s ETA 27 s$/,
    );
    // A little more room, and it is there, the label still whole.
    expect(render(90)).toMatch(/^download presto-images-12345 +27% \[=+> *\] +3\.00\/11\.00 GiB /);
    expect(lines).toEqual([]);
  });

  it("after a resume the rate counts only the bytes moved in this run, not those already on disk", () => {
    const { progress, live, time, lines } = liveListener();
    // 40 MiB were on disk; this run moves 256 KiB a second.
    progress({ kind: "start", task });
    for (let second = 1; second <= 3; second += 1) {
      time.advance(1000);
      const moved = second * 256 * 1024;
      progress({ kind: "bytes", task, bytes: 40 * MiB + moved, total: 80 * MiB, moved });
    }
    const line = live.lines.get(task)?.(79) ?? "";
    expect(line).toMatch(/ 50% .*40\.8\/80\.0 MiB +256\.0 KiB\/s ETA 2m37s$/);
    progress({ kind: "end", task, ok: false });
    // One line where it stopped, and what this run moved.
    expect(messagesAt(lines, INFO)).toEqual([
      `${task}: stopped at 40.8 MiB of 80.0 MiB (50%) after 3 s`,
    ]);
  });

  it("a phase without a byte count is named on the line, with its time, instead of a bar at 100%", () => {
    const { progress, live, time, lines } = liveListener();
    const push = "push 127.0.0.1:5000/group/project/x86/presto-coordinator:tag";
    progress({ kind: "start", task: push, total: 10 * MiB });
    time.advance(1000);
    progress({ kind: "bytes", task: push, bytes: 10 * MiB, total: 10 * MiB });
    progress({ kind: "phase", task: push, phase: "uploading and committing" });
    time.advance(12_000);
    const line = live.lines.get(push)?.(79) ?? "";
    expect(line).toBe("push x86/presto-coordinator 10.0 MiB read; uploading and committing … 12 s");
    expect(line).not.toMatch(/100%|ETA/);
    // Bytes moving again take the line back to a meter.
    progress({ kind: "phase", task: push, phase: "reading" });
    progress({ kind: "bytes", task: push, bytes: 5 * MiB, total: 20 * MiB });
    expect(live.lines.get(push)?.(79)).toMatch(/^push x86\/presto-coordinator +25% /);
    // A phase is a debug record, never a line at the default level.
    expect(messagesAt(lines, INFO)).toEqual([]);
    expect(messagesAt(lines, DEBUG)).toContain(`${push}: uploading and committing`);
  });

  it("at 80 columns a real download's label is kept whole", () => {
    const { progress, live, time } = liveListener();
    const real = "download presto-images-502";
    progress({ kind: "start", task: real });
    time.advance(2000);
    progress({ kind: "bytes", task: real, bytes: 101.4 * MiB, total: 288.2 * MiB });
    expect(live.lines.get(real)?.(79)).toMatch(
      /^download presto-images-502 {2}35% \[=+> *\] 101\.4\/288\.2 MiB +50\.7 MiB\/s ETA 4 s$/,
    );
  });

  it("at 200 columns the bar is wider, at 40 the bar and then the ETA give way", () => {
    const { render } = transfer(3 * 1024 * MiB, 11 * 1024 * MiB);
    const wide = render(199);
    expect(wide.length).toBeLessThanOrEqual(199);
    expect(wide).toMatch(/\[={10}> {29}\]/);
    const narrow = render(50);
    expect(narrow.length).toBeLessThanOrEqual(50);
    expect(narrow).not.toContain("[");
    expect(narrow).toContain("27%");
    expect(narrow).toContain("3.00/11.00 GiB");
    for (const columns of [20, 30, 40, 60, 79, 120]) {
      expect(render(columns).length).toBeLessThanOrEqual(columns);
    }
  });

  it("an image's layers make one line with a layer count; the line goes when the task ends", () => {
    const { progress, live, time } = liveListener();
    const push = "push 127.0.0.1:5000/hercules/veloxtesting/x86/presto-coordinator:presto-abc";
    progress({ kind: "start", task: push });
    time.advance(1000);
    progress(taskProgress(push, { id: "a", status: "Pushing", current: 2 * MiB, total: 4 * MiB }));
    progress(taskProgress(push, { id: "b", status: "Layer already exists" }));
    const render = live.lines.get(push) ?? (() => "");
    expect(render(119)).toMatch(
      /^push x86\/presto-coordinator 1\/2 layers +50% \[=+> *\] 2\.0\/4\.0 MiB +2\.0 MiB\/s ETA 1 s$/,
    );
    // At 80 columns the layer count is the first to go.
    expect(render(79)).toMatch(/^push x86\/presto-coordinator +50% \[=+> *\] 2\.0\/4\.0 MiB /);
    progress({ kind: "end", task: push, ok: true });
    expect(live.lines.size).toBe(0);
  });

  it("labels keep the verb and the image's last two path segments", () => {
    expect(shortLabel("push 127.0.0.1:5000/hercules/veloxtesting/x86/presto-coordinator:t1")).toBe(
      "push x86/presto-coordinator",
    );
    expect(shortLabel("push hercules/veloxtesting/arm/presto-native-worker-cpu:t1")).toBe(
      "push arm/presto-native-worker-cpu",
    );
    expect(shortLabel("load presto-coordinator:presto-a-velox-b-linux-amd64")).toBe(
      "load presto-coordinator",
    );
    expect(shortLabel("download presto-images-1")).toBe("download presto-images-1");
    expect(duration(42)).toBe("42 s");
    expect(duration(185)).toBe("3m05s");
    expect(duration(3720)).toBe("1h02m");
    expect(bytePair(12 * MiB, 28.6 * MiB)).toBe("12.0/28.6 MiB");
  });
});

/** A fake terminal: what was written, in order, to which stream. */
function fakeTerminal(columns = 80) {
  const written: Array<[string, string]> = [];
  const stream = (name: string) => ({
    isTTY: true,
    columns,
    write(text: string) {
      written.push([name, text]);
      return true;
    },
  });
  return { written, stderr: stream("stderr"), stdout: stream("stdout") };
}

describe("live area", () => {
  it("clears the bars before any other line and draws them again below it, in order", () => {
    const term = fakeTerminal();
    const live = createLiveArea(term.stderr, { minIntervalMs: 0 });
    live.set("a", () => "bar A");
    live.set("b", () => "bar B");
    live.print(term.stdout, "a line for stdout\n");
    live.print(term.stderr, "a log line\n");
    live.clear();
    expect(term.written).toEqual([
      ["stderr", "bar A"],
      ["stderr", "\r\x1b[Jbar A\nbar B"],
      // Two lines drawn: back to the first, erase to the end, then the line, then the bars.
      ["stderr", "\r\x1b[1A\x1b[J"],
      ["stdout", "a line for stdout\n"],
      ["stderr", "bar A\nbar B"],
      ["stderr", "\r\x1b[1A\x1b[Ja log line\nbar A\nbar B"],
      ["stderr", "\r\x1b[1A\x1b[J"],
    ]);
  });

  it("cuts a line to the terminal's width less one column, so it never wraps", () => {
    const term = fakeTerminal(40);
    const live = createLiveArea(term.stderr);
    live.set("a", (columns) => "x".repeat(columns + 30));
    expect(term.written.at(-1)?.[1].length).toBe(39);
    live.clear();
  });

  it("without live lines, text is written as it is", () => {
    const term = fakeTerminal();
    const live = createLiveArea(term.stderr);
    live.print(term.stdout, "plain\n");
    expect(term.written).toEqual([["stdout", "plain\n"]]);
  });

  it("log records go through it in the order they are made (pretty, synchronous)", () => {
    const term = fakeTerminal();
    const live = createLiveArea(term.stderr, { minIntervalMs: 0 });
    const logger = createLogger({
      format: "pretty",
      isTTY: false,
      write: (text) => live.print(term.stderr, text),
    });
    live.set("bar", () => "BAR");
    logger.info({ hidden: "field" }, "first");
    term.stdout.write("between\n");
    logger.warn("second");
    live.clear();
    const text = term.written.map(([, t]) => t).join("");
    expect(text.indexOf("first")).toBeLessThan(text.indexOf("between"));
    expect(text.indexOf("between")).toBeLessThan(text.indexOf("second"));
    expect(text).not.toContain("hidden");
    expect(text).toMatch(/INFO: first\n/);
  });
});
