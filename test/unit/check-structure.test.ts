/**
 * scripts/check-structure.mjs, the layer rule `npm run lint` keeps: run on small trees made here.
 */
import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "./helpers.js";

const SCRIPT = path.resolve(import.meta.dirname, "../../scripts/check-structure.mjs");

/** Writes `files` (path → source) under a fresh src/ and runs the check on it. */
async function check(files: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const src = path.join(await tempDir("check-structure-"), "src");
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(src, name)), { recursive: true });
    await writeFile(path.join(src, name), text);
  }
  const run = spawnSync(process.execPath, [SCRIPT, src], { encoding: "utf8" });
  return { code: run.status ?? -1, stderr: run.stderr };
}

describe("check-structure", () => {
  it("passes a tree whose arrows point down, archive below the registry", async () => {
    const result = await check({
      "registry/sink.ts": 'import { read } from "../archive/read.js";\nexport const sink = read;\n',
      "archive/read.ts": "export const read = 1;\n",
      "sync/a.ts": 'import { b } from "./b.js";\nexport const a = b;\n',
      "sync/b.ts": "export const b = 1;\n",
    });
    expect(result).toEqual({ code: 0, stderr: "" });
  });

  it("fails on a cycle between two files of one folder, naming both", async () => {
    const result = await check({
      "sync/daemon.ts": 'import { step } from "./daemon-image.js";\nexport const loop = step;\n',
      "sync/daemon-image.ts":
        'import type { Settings } from "./daemon.js";\nexport const step = (s: Settings) => s;\nexport type Settings = number;\n',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /sync\/daemon(-image)?\.ts:1: import cycle between files: sync\/daemon(-image)?\.ts → sync\/daemon(-image)?\.ts → sync\/daemon(-image)?\.ts/,
    );
    expect(result.stderr).toContain("check-structure: 1 problem(s)");
  });

  it("fails on archive importing the registry: archive sits below it", async () => {
    const result = await check({
      "archive/read.ts": 'import { sink } from "../registry/sink.js";\nexport const read = sink;\n',
      "registry/sink.ts": "export const sink = 1;\n",
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      "archive/read.ts:1: archive imports registry, which sits above it or beside it",
    );
  });
});
