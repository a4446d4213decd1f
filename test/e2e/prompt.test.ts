/**
 * A yes/no prompt in a real terminal (tmux) stops at once when told to: Ctrl-C at push's
 * "Proceed with upload?", SIGTERM (a service manager, `kill`) at clean's "Proceed with
 * deletion?". One line says so, the status is the signal's, and nothing was pushed or removed.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedImages } from "../../src/domain/images.js";
import { addMissingBuild, singleBuild } from "../testbed/demo-data.js";
import { startTestbed, testbedExports, testbedGate, type Testbed } from "../testbed/index.js";
import { metadataOf } from "../testbed/scenario.js";
import { runInTerminal, terminalGate, type TerminalRun } from "../testbed/terminal.js";
import { gitlabTags } from "./checks.js";
import { BIN, runBinary } from "./run-cli.js";

const gate = testbedGate();
const term = terminalGate();
const BUILD = singleBuild(7401, "prompt");
const TAG = metadataOf(BUILD, 0)["Image tag"] ?? "";

describe.skipIf(gate.skip || term.skip)(
  `a prompt told to stop ${gate.reason}${term.reason}`,
  () => {
    let tb: Testbed;
    let env: Record<string, string>;
    const open: TerminalRun[] = [];
    const inTerminal = async (args: string) => {
      const run = await runInTerminal(`node ${BIN} ${args}`, {
        columns: 80,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tb.dir, ...env },
        cwd: tb.dir,
      });
      open.push(run);
      return run;
    };
    /** Waits for the question, then for the screen to settle on it. */
    const asked = async (run: TerminalRun, question: string) => {
      for (let waited = 0; ; waited += 100) {
        const screen = await run.screen();
        if (screen.some((line) => line.includes(question))) return;
        if (waited > 60_000) throw new Error(`never asked: ${screen.join("\n")}`);
        await sleep(100);
      }
    };
    const filesOf = async () => (await readdir(path.join(tb.dir, "downloads", TAG))).sort();

    beforeAll(async () => {
      tb = await startTestbed();
      env = testbedExports(tb);
      await addMissingBuild(tb, BUILD, 0);
      for (const args of [
        ["download", TAG],
        ["prepare", TAG],
      ]) {
        const done = await runBinary([...args, "--downloads-dir", "downloads"], {
          env,
          cwd: tb.dir,
        });
        expect(done.code, done.stderr).toBe(0);
      }
    });
    afterAll(async () => {
      for (const run of open) await run.close();
      await tb?.stop();
    });

    it("push: Ctrl-C at 'Proceed with upload?' ends it at once (130), nothing pushed", async () => {
      const run = await inTerminal(`push ${TAG} --engine registry --downloads-dir downloads`);
      await asked(run, "Proceed with upload? [y/N]:");
      await run.keys("C-c");
      expect(await run.done).toBe(130);
      const screen = (await run.screen()).filter((line) => line.trim() !== "");
      expect(
        screen.filter((line) => line.includes("Interrupted")),
        screen.join("\n"),
      ).toEqual(["Interrupted by SIGINT; push stopped — nothing was changed"]);
      expect(screen.at(-1)).toBe("Interrupted by SIGINT; push stopped — nothing was changed");
      const present = await gitlabTags(tb);
      const images = expectedImages(metadataOf(BUILD, 0));
      expect(images.length).toBeGreaterThan(0);
      for (const image of images) expect(present.has(image.gitlabTag)).toBe(false);
    }, 120_000);

    it("clean: SIGTERM at 'Proceed with deletion?' ends it at once (143), nothing removed", async () => {
      const before = await filesOf();
      const run = await inTerminal(`clean ${TAG} --downloads-dir downloads`);
      await asked(run, "Proceed with deletion? [y/N]:");
      process.kill(await run.pid(), "SIGTERM");
      expect(await run.done).toBe(143);
      const screen = (await run.screen()).filter((line) => line.trim() !== "");
      expect(screen.at(-1)).toBe("Interrupted by SIGTERM; clean stopped — nothing was changed");
      expect(await filesOf()).toEqual(before);
    }, 120_000);
  },
);
