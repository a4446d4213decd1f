import { mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ImageTarballInfo } from "../../src/archive/docker-save.js";
import { IMAGE_INFO_FILE, loadImageInfo, saveImageInfo } from "../../src/workspace/image-info.js";

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const info: ImageTarballInfo = {
  layout: "legacy",
  repoTags: ["presto-coordinator:t"],
  config: "c.json",
  configDigest: digest("c"),
  layers: ["a/layer.tar"],
  layerSizes: [1024],
  diffIds: [digest("d")],
};

describe("image info kept beside the plan", () => {
  let dir: string;
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is used while the tarball is unchanged, and dropped once it changes or is damaged", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "image-info-"));
    const file = path.join(dir, "x.tar.gz");
    await writeFile(file, "tarball bytes");
    await saveImageInfo(dir, new Map([["x86/presto-coordinator:t", { file, info }]]));
    expect((await loadImageInfo(dir)).get("x86/presto-coordinator:t")).toEqual(info);

    await utimes(file, new Date(), new Date(Date.now() + 5_000));
    expect((await loadImageInfo(dir)).size).toBe(0);

    await saveImageInfo(dir, new Map([["x86/presto-coordinator:t", { file, info }]]));
    await writeFile(path.join(dir, IMAGE_INFO_FILE), '{"x86/presto-coordinator:t": {"file": 1}}');
    expect((await loadImageInfo(dir)).size).toBe(0);
    await rm(path.join(dir, IMAGE_INFO_FILE));
    expect((await loadImageInfo(dir)).size).toBe(0);
  });
});
