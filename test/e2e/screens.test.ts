/**
 * How long the output is as a person sees it in an 80-column terminal (issue 22): at the default
 * level a 3-image `push` and a `sync` fit in about 20 rows, each path shown once. The screens are
 * read from tmux without joining wrapped lines, so a line wider than the window counts as the rows
 * it takes. With SCREENS_OUT set, the three screens (push, sync, daemon --once) are written there
 * with their row counts, for a closing note.
 */
import { writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addMissingBuild, DEMO_RUNS, seedDemo, singleBuild } from "../testbed/demo-data.js";
import { startTestbed, testbedExports, testbedGate, type Testbed } from "../testbed/index.js";
import { metadataOf } from "../testbed/scenario.js";
import { runInTerminal, terminalGate, type TerminalRun } from "../testbed/terminal.js";
import { BIN, runBinary } from "./run-cli.js";

const gate = testbedGate();
const term = terminalGate();

/** The most rows a 3-image push or a sync may take at 80 columns ("about 20"). */
const MOST_ROWS = 22;

const tagOf = (index: number): string => {
  const run = DEMO_RUNS[index];
  if (!run) throw new Error(`no demo run ${index}`);
  return metadataOf(run, index)["Image tag"] ?? "";
};

describe.skipIf(gate.skip || term.skip)(
  `output length in an 80-column terminal ${gate.reason}${term.reason}`,
  () => {
    let tb: Testbed;
    const screens: string[] = [];
    const env = () => ({
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: tb.dir,
      ...testbedExports(tb),
    });

    /** Runs the CLI in an 80-column window; its rows once it has ended (blank ones at the end dropped). */
    const inTerminal = async (args: string): Promise<string[]> => {
      const run: TerminalRun = await runInTerminal(`node ${BIN} ${args}`, {
        columns: 80,
        env: env(),
        cwd: tb.dir,
      });
      try {
        const code = await run.done;
        const rows = await run.rows();
        while (rows.length > 0 && rows.at(-1)?.trim() === "") rows.pop();
        expect(code, rows.join("\n")).toBe(0);
        screens.push(`$ gh-gitlab-sync ${args}   (${rows.length} rows)\n${rows.join("\n")}\n`);
        return rows;
      } finally {
        await run.close();
      }
    };

    beforeAll(async () => {
      tb = await startTestbed();
      await seedDemo(tb);
    });
    afterAll(async () => {
      if (process.env.SCREENS_OUT) await writeFile(process.env.SCREENS_OUT, screens.join("\n"));
      await tb?.stop();
    });

    it("a 3-image push (registry engine) fits in about 20 rows", async () => {
      const tag = tagOf(1);
      for (const args of [
        ["download", tag, "--output-dir", "downloads"],
        ["prepare", tag, "--downloads-dir", "downloads"],
      ]) {
        const done = await runBinary(args, { env: env(), cwd: tb.dir, timeoutMs: 240_000 });
        expect(done.code, done.stderr).toBe(0);
      }
      const rows = await inTerminal(
        `push ${tag} --downloads-dir downloads --engine registry --yes`,
      );
      expect(rows.join("\n")).toContain("Push complete:");
      expect(rows.length, rows.join("\n")).toBeLessThanOrEqual(MOST_ROWS);
    }, 300_000);

    it("a sync fits in about 20 rows", async () => {
      const rows = await inTerminal(
        `sync ${tagOf(2)} --downloads-dir downloads --engine registry --yes`,
      );
      expect(rows.length, rows.join("\n")).toBeLessThanOrEqual(MOST_ROWS);
    }, 300_000);

    it("daemon --once, as a person sees it: short at a terminal too", async () => {
      await addMissingBuild(tb, singleBuild(7401, "screens"), 3, { layerBytes: 2 << 20 });
      const rows = await inTerminal("daemon --once --engine registry --downloads-dir downloads");
      expect(rows.join("\n")).toMatch(/cycle 1 ok:/);
      // At a terminal its records carry the short lines too; the journal's are whole.
      expect(rows.join("\n")).toContain("INFO: Pushing x86/presto-coordinator ...");
    }, 300_000);
  },
);
