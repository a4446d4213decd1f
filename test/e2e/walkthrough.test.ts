/**
 * The README's five-minute walkthrough, run as written: its shell block line by line with bash,
 * on the testbed `npm run testbed` starts, with the variables the testbed prints (the README
 * shows them with example values; the test takes the real ones from the same function). Each
 * command must succeed, and the walkthrough's story must hold: something missing at first,
 * nothing at the end.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../testbed/demo-data.js";
import { startTestbed, testbedExports, testbedGate, type Testbed } from "../testbed/index.js";
import { findOnPath } from "../testbed/system.js";
import { runBinary } from "./run-cli.js";

const gate = testbedGate();
// Asynchronous: the stand-ins answer from this very process.
const exec = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The fenced blocks of the README section that starts with `heading`. */
function sectionBlocks(heading: string): Array<{ lang: string; body: string }> {
  const readme = readFileSync(path.join(root, "README.md"), "utf8");
  const start = readme.indexOf(`\n## ${heading}`);
  if (start < 0) throw new Error(`README has no section "${heading}"`);
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1] ?? "",
    body: m[2] ?? "",
  }));
}

/** Shell command lines of a block: comments and blank lines dropped, `\` continuations joined. */
function commandLines(body: string): string[] {
  return body
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

describe.skipIf(gate.skip || !findOnPath("bash"))(
  `README: the five-minute walkthrough, and where files go ${gate.reason}`,
  () => {
    let tb: Testbed;
    let home: string;
    const blocks = sectionBlocks("Five-minute walkthrough");
    const printed = blocks.find((b) => b.lang === "text");
    const shell = blocks.filter((b) => b.lang === "sh").map((b) => commandLines(b.body));

    beforeAll(async () => {
      tb = await startTestbed();
      await seedDemo(tb);
      home = path.join(tb.dir, "home");
      await mkdir(home);
    });
    afterAll(async () => tb?.stop());

    it("shows the variables the testbed really prints", () => {
      expect(printed, "a text block with what npm run testbed prints").toBeDefined();
      const shown = [...(printed?.body ?? "").matchAll(/^export (\w+)=/gm)].map((m) => m[1]);
      expect(shown).toEqual(["PATH", ...Object.keys(testbedExports(tb))]);
    });

    it("runs as written, and ends with nothing missing", async () => {
      const [setup, ...rest] = shell;
      expect(setup?.[0]).toBe("npm run testbed");
      const lines = rest.flat();
      expect(lines.length).toBeGreaterThan(5);
      // The person's shell: the testbed's variables, the checkout's bin on PATH, an empty cache.
      const env = {
        PATH: `${path.join(root, "bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        HOME: home,
        XDG_CACHE_HOME: path.join(home, ".cache"),
        ...testbedExports(tb),
      };
      const outputs: string[] = [];
      for (const line of lines) {
        // The testbed's own variables are set above, with its real addresses.
        if (/^export /.test(line)) continue;
        try {
          const { stdout } = await exec("bash", ["-euo", "pipefail", "-c", line], {
            cwd: home,
            env,
            timeout: 120_000,
          });
          outputs.push(stdout);
        } catch (err) {
          const e = err as { code?: number; stdout?: string; stderr?: string };
          throw new Error(
            `README line failed (exit ${e.code}): ${line}\n${e.stdout ?? ""}${e.stderr ?? ""}`,
          );
        }
      }
      const all = outputs.join("\n");
      expect(all).toContain("Images present in GitHub runs but missing on GitLab:");
      expect(all).toContain("Push complete:");
      expect(outputs.at(-1)).toContain("No missing GitLab images.");
    }, 300_000);

    it("leaves the downloads it made only in the directory it was run from", async () => {
      expect((await readdir(home)).sort()).toEqual([".cache", "downloads"]);
    });

    it("gh-list and xref keep their cache in $XDG_CACHE_HOME unless given a downloads or state directory", async () => {
      const cwd = path.join(tb.dir, "listing-cwd");
      const cache = path.join(tb.dir, "listing-cache");
      await mkdir(cwd);
      const env = { ...testbedExports(tb), HOME: home, XDG_CACHE_HOME: cache };
      for (const command of ["gh-list", "xref"]) {
        const result = await runBinary([command, "--log-format", "json"], { env, cwd });
        expect(result.code, result.stderr).toBe(0);
      }
      expect(await readdir(cwd)).toEqual([]);
      expect((await readdir(path.join(cache, "gh-gitlab-sync", "runs"))).length).toBeGreaterThan(0);
      // Given a downloads directory, the cache lives in it, as for the commands that download.
      const listed = await runBinary(
        ["gh-list", "--downloads-dir", "here", "--log-format", "json"],
        {
          env,
          cwd,
        },
      );
      expect(listed.code, listed.stderr).toBe(0);
      expect((await readdir(path.join(cwd, "here", ".state", "runs"))).length).toBeGreaterThan(0);
    });

    it("download takes --downloads-dir as every other command does, and the original's --output-dir", async () => {
      const tag = "presto-00da7b9d631d-velox-00da7b9d631d-linux-arm64";
      const env = { ...testbedExports(tb), HOME: home };
      for (const [flag, dir] of [
        ["--downloads-dir", "by-downloads-dir"],
        ["--output-dir", "by-output-dir"],
      ] as const) {
        const target = path.join(tb.dir, dir);
        const result = await runBinary(["download", tag, flag, target, "--log-format", "json"], {
          env,
          cwd: home,
        });
        expect(result.code, result.stderr).toBe(0);
        expect(await readdir(path.join(target, tag))).toEqual(
          expect.arrayContaining([`${tag}.zip`, "metadata.json"]),
        );
      }
      const both = await runBinary(
        ["download", tag, "--output-dir", "a", "--downloads-dir", "b", "--log-format", "json"],
        { env, cwd: home },
      );
      expect(both.code).toBe(2);
      expect(both.stderr).toMatch(/--output-dir 'a' and --downloads-dir 'b' disagree/);
    });
  },
);
