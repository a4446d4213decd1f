/**
 * What a person sees in a terminal, read from a real one (tmux) as they would read it: the
 * progress line fits the window and carries percent, bytes, rate and ETA; it is gone before
 * any other line is printed (no debris on the screen afterwards); lines come in the order they
 * happen; a failed `daemon --once` says its error once.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addMissingBuild, singleBuild } from "../testbed/demo-data.js";
import { metadataOf } from "../testbed/scenario.js";
import { startTestbed, testbedExports, testbedGate, type Testbed } from "../testbed/index.js";
import { freePort } from "../testbed/registry.js";
import { runInTerminal, terminalGate, type TerminalRun } from "../testbed/terminal.js";
import { BIN } from "./run-cli.js";

const gate = testbedGate();
const term = terminalGate();

const BUILD = singleBuild(7301, "terminal");
/** A build stopped midway and synced again, through a slower link. */
const RESUMED = singleBuild(7302, "terminal-resume");
const PACE = 256 * 1024;
const UNIT: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 * 1024 };
/**
 * A progress line (the bar itself only where there is room for it), as drawn or as left behind:
 * any verb, so that a second meter for one transfer would be seen too.
 */
const PROGRESS = /^[a-z]+ \S+ +\d+% /;

describe.skipIf(gate.skip || term.skip)(
  `what a person sees in an 80-column terminal ${gate.reason}${term.reason}`,
  () => {
    let tb: Testbed;
    const open: TerminalRun[] = [];
    const inTerminal = async (args: string, env: Record<string, string> = {}) => {
      const run = await runInTerminal(`node ${BIN} ${args}`, {
        columns: 80,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: tb.dir,
          ...testbedExports(tb),
          ...env,
        },
        cwd: tb.dir,
      });
      open.push(run);
      return run;
    };

    beforeAll(async () => {
      tb = await startTestbed();
      await addMissingBuild(tb, BUILD, 0, { layerBytes: 2 << 20 });
      // Paced, so the download takes a few seconds and its bar can be seen moving.
      tb.github.injectFault({
        match: "/artifacts/",
        host: "blob",
        bytesPerSecond: 2 << 20,
        times: Infinity,
      });
    });
    afterAll(async () => {
      for (const run of open) await run.close();
      await tb?.stop();
    });

    it("daemon --once: a progress line within 80 columns, cleared before the next line, lines in order", async () => {
      const run = await inTerminal("daemon --once --engine registry --downloads-dir downloads");
      const bars: string[] = [];
      /** The progress lines of each screen read while it ran. */
      const seen: string[][] = [];
      let finished = false;
      void run.done.then(() => (finished = true));
      while (!finished) {
        const lines = (await run.screen()).filter((line) => PROGRESS.test(line));
        bars.push(...lines);
        seen.push(lines);
        await sleep(100);
      }
      expect(await run.done).toBe(0);
      // Seen while it moved: label, percent, bar, bytes, rate and ETA, and never wider than the window.
      expect(bars.length).toBeGreaterThan(0);
      // The download's label leaves room for a bar at 80 columns.
      expect(
        bars.some((line) => /^download \S+ +\d+% \[[=> ]{6,}\] /.test(line)),
        bars.join("\n"),
      ).toBe(true);
      for (const bar of bars) {
        expect(bar.length).toBeLessThan(80);
        expect(bar).toMatch(
          /^(download presto-images-7301|push x86\/presto-[a-z…-]+) +\d+% (\[[=> ]+\] +)?[\d.]+\/[\d.]+ (KiB|MiB) +[\d.]+ (B|KiB|MiB)\/s ETA (\d+ s|\?)$/,
        );
      }
      // One meter per transfer: the artifact has one line (its download), never a second one
      // for the same bytes read behind it, and no label is on the screen twice.
      for (const screen of seen) {
        const labels = screen.map((line) => line.split(" ").slice(0, 2).join(" "));
        expect(new Set(labels).size, screen.join("\n")).toBe(labels.length);
      }
      // Once it has moved for a moment: a rate and an ETA in seconds.
      expect(
        bars.some((bar) => / [\d.]+ (KiB|MiB)\/s ETA \d+ s$/.test(bar)),
        bars.join("\n"),
      ).toBe(true);
      const screen = await run.screen();
      // Nothing of a bar is left once the transfer is over.
      expect(screen.filter((line) => PROGRESS.test(line))).toEqual([]);
      const index = (text: string) => screen.findIndex((line) => line.includes(text));
      // The daemon streams by default: the push starts while the artifact downloads.
      const order = [
        "daemon: one cycle",
        "Streaming artifact 'presto-images-7301'",
        "Pushing ",
        "pushed ",
        "Cleaning up ",
        "cycle 1 ok:",
      ].map(index);
      expect(
        order.every((i) => i >= 0),
        screen.join("\n"),
      ).toBe(true);
      expect([...order].sort((a, b) => a - b)).toEqual(order);
    }, 120_000);

    it("daemon --once with GitLab unreachable: the error is said once, on the last line", async () => {
      const nobody = `http://127.0.0.1:${await freePort()}`;
      const run = await inTerminal("daemon --once --engine registry --downloads-dir downloads", {
        GITLAB_HOST: nobody,
      });
      expect(await run.done).toBe(1);
      const screen = (await run.screen()).filter((line) => line.trim() !== "");
      const saying = screen.filter((line) => line.includes(`Cannot reach GitLab at ${nobody}`));
      expect(saying, screen.join("\n")).toHaveLength(1);
      expect(screen.at(-1)).toMatch(/^Error: daemon --once: cycle failed: Cannot reach GitLab/);
    }, 120_000);

    it("sync stopped by Ctrl-C: one 'stopped at' line per transfer; the rerun's rate is the link's, not the bytes on disk", async () => {
      const run = RESUMED;
      await addMissingBuild(tb, run, 1, { layerBytes: 1 << 20 });
      const tag = metadataOf(run, 1)["Image tag"] ?? "";
      tb.github.clearFaults();
      tb.github.injectFault({
        match: "/artifacts/",
        host: "blob",
        bytesPerSecond: PACE,
        times: Infinity,
      });
      const args = `sync ${tag} --engine registry --yes --downloads-dir downloads`;

      const first = await inTerminal(args);
      const download = new RegExp(`^download presto-images-${run.id} +(\\d+)% `);
      // Stopped once a good part of the artifact is on disk.
      for (;;) {
        const percent = (await first.screen())
          .map((line) => Number(download.exec(line)?.[1] ?? -1))
          .reduce((a, b) => Math.max(a, b), -1);
        if (percent >= 40) break;
        await sleep(100);
      }
      await first.keys("C-c");
      expect(await first.done).toBe(130);
      const stopped = (await first.screen()).filter((line) => / stopped at /.test(line));
      const tasks = stopped.map((line) => /INFO: (.*): stopped at /.exec(line)?.[1]);
      // The artifact's bytes are one transfer: one line says where they stopped, the download's.
      const artifact = tasks.filter((task) => task?.includes(`presto-images-${run.id}`));
      expect(artifact, stopped.join("\n")).toEqual([`download presto-images-${run.id}`]);
      expect(new Set(tasks).size, stopped.join("\n")).toBe(tasks.length);

      // The rerun resumes the part file: every rate it shows is within the link's pace.
      const again = await inTerminal(args);
      const rates: number[] = [];
      let finished = false;
      void again.done.then(() => (finished = true));
      while (!finished) {
        for (const line of await again.screen()) {
          const rate = / ([\d.]+) (B|KiB|MiB)\/s ETA /.exec(line);
          if (download.test(line) && rate)
            rates.push(Number(rate[1]) * (UNIT[rate[2] ?? "B"] ?? 1));
        }
        await sleep(100);
      }
      expect(await again.done).toBe(0);
      expect(rates.length).toBeGreaterThan(0);
      // The link's first burst aside (up to 1.6× seen in the first second): never the bytes
      // already on disk, which made it 9× before.
      expect(Math.max(...rates), rates.join(", ")).toBeLessThan(PACE * 2);
    }, 180_000);
  },
);
