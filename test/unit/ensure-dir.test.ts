import { promises as fs } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { errorCode } from "../../src/errors.js";
import { ensureDir } from "../../src/util/files.js";
import { tempDir } from "./helpers.js";

describe("ensureDir", () => {
  it("makes every missing level and accepts what exists", async () => {
    const root = await tempDir("ensure-");
    const deep = path.join(root, "a", "b", "c");
    await ensureDir(deep);
    expect((await fs.stat(deep)).isDirectory()).toBe(true);
    await ensureDir(deep);
    await ensureDir(root);
  });

  it("fails at once below a file system that cannot hold the directory", async () => {
    // Node's recursive mkdir loops forever here; this must end with ENOENT.
    const started = Date.now();
    const error = await ensureDir("/proc/gh-gitlab-sync-nowhere/dir").catch((e: unknown) => e);
    expect(errorCode(error)).toBe("ENOENT");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("says ENOTDIR when a file stands in the way", async () => {
    const root = await tempDir("ensure-");
    await fs.writeFile(path.join(root, "file"), "x");
    const error = await ensureDir(path.join(root, "file", "below")).catch((e: unknown) => e);
    expect(errorCode(error)).toBe("ENOTDIR");
  });
});

describe("directory options", () => {
  it("refuse a NUL byte (an API caller could pass one; argv cannot)", async () => {
    const { parseOptions, workspaceOptionsSchema } = await import("../../src/config/options.js");
    for (const raw of [{ downloadsDir: "a\u0000b" }, { stateDir: "a\u0000b" }]) {
      expect(() => parseOptions(workspaceOptionsSchema, raw)).toThrow(/must not hold a NUL byte/);
    }
  });
});
