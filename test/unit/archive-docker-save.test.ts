import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import tar from "tar-stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  assertPlatform,
  assertRepoTag,
  inspectImageTarball,
  type ImageTarballInfo,
} from "../../src/archive/docker-save.js";
import { canonicalName } from "../../src/domain/reference.js";
import { DamagedInputError, SyncError } from "../../src/errors.js";
import { truncateFile, writeDockerSaveTarball, type LayerSpec } from "../testbed/image-fixtures.js";

const TAG = "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64";
const REPO_TAG = `presto-coordinator:${TAG}`;
const BASE: LayerSpec = {
  files: { "etc/os-release": "ID=fixture\n", "bin/true": Buffer.from([0x7f, 0x45]) },
};

let root: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "archive-docker-save-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<SyncError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SyncError);
  return err as SyncError;
}

/** Every regular file of a (gzipped) tar, with its sha256, read independently of the code under test. */
async function tarDigests(file: string): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  const extract = tar.extract();
  extract.on("entry", (header, body, next) => {
    const hash = createHash("sha256");
    body.on("data", (chunk: unknown) => hash.update(chunk as Buffer));
    body.on("end", () => {
      if (header.type === "file") digests.set(header.name, `sha256:${hash.digest("hex")}`);
      next();
    });
  });
  await pipeline(createReadStream(file), zlib.createGunzip(), extract);
  return digests;
}

describe.each(["legacy", "oci"] as const)("inspectImageTarball on a %s docker save", (layout) => {
  it("reads RepoTags, layers and diff_ids, and the layers match their diff_ids", async () => {
    const file = path.join(root, "image.tar.gz");
    const written = await writeDockerSaveTarball(file, {
      repoTag: REPO_TAG,
      layout,
      layers: [BASE, { sizeBytes: 200_000, seed: 7 }],
      gzip: true,
    });
    const info = await inspectImageTarball(file);
    expect(info).toEqual({
      layout,
      repoTags: [REPO_TAG],
      config: written.config,
      configDigest: written.configDigest,
      layers: written.layers,
      layerSizes: expect.any(Array) as unknown,
      diffIds: written.diffIds,
      architecture: "amd64",
      os: "linux",
      variant: undefined,
    } satisfies Record<keyof ImageTarballInfo, unknown>);
    if (layout === "legacy") expect(info.config).toBe(`${written.configDigest.slice(7)}.json`);
    else expect(info.layers[0]).toMatch(/^blobs\/sha256\/[0-9a-f]{64}$/);

    // The fixture is only useful if Docker would load it: each layer hashes to its diff_id.
    const digests = await tarDigests(file);
    info.layers.forEach((layer, i) => expect(digests.get(layer)).toBe(info.diffIds[i]));
    expect(digests.get(info.config)).toBe(info.configDigest);
    expect(assertRepoTag(info, REPO_TAG, file)).toBe(REPO_TAG);
    expect(() => assertPlatform(info, "linux/amd64", file)).not.toThrow();
  });

  it("refuses an image whose config's architecture is not the build's platform, naming both", async () => {
    const file = path.join(root, "arm.tar.gz");
    await writeDockerSaveTarball(file, {
      repoTag: REPO_TAG,
      layout,
      layers: [BASE],
      gzip: true,
      architecture: "arm",
      variant: "v7",
    });
    const info = await inspectImageTarball(file);
    expect(info.variant).toBe("v7");
    expect(() => assertPlatform(info, "linux/arm/v7", file)).not.toThrow();
    const error = (() => {
      try {
        assertPlatform(info, "linux/arm64", file);
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(DamagedInputError);
    expect((error as DamagedInputError).message).toBe(
      `${file} is not an image of its build: its config says linux/arm/v7 but the build's target platform is linux/arm64`,
    );
  });

  it("reports a tar cut short inside a complete gzip stream", async () => {
    const plain = path.join(root, "image.tar");
    await writeDockerSaveTarball(plain, {
      repoTag: REPO_TAG,
      layout,
      layers: [{ sizeBytes: 100_000, seed: 1 }],
    });
    const bytes = await readFile(plain);
    const file = path.join(root, "image.tar.gz");
    await writeFile(file, zlib.gzipSync(bytes.subarray(0, 60_000)));
    const err = await rejection(inspectImageTarball(file));
    expect(err.message).toMatch(/is cut short|is not a docker save image/);
  });
});

describe("inspectImageTarball failures", () => {
  it("refuses a file that is not gzip", async () => {
    const file = path.join(root, "image.tar.gz");
    await writeFile(file, "plain text, not gzip\n");
    const err = await rejection(inspectImageTarball(file));
    expect(err.message).toBe(`${file} is not gzip`);
  });

  it("refuses an empty file as not gzip", async () => {
    const file = path.join(root, "image.tar.gz");
    await writeFile(file, "");
    expect((await rejection(inspectImageTarball(file))).message).toBe(`${file} is not gzip`);
  });

  it("detects a gzip stream cut short", async () => {
    const file = path.join(root, "image.tar.gz");
    await writeDockerSaveTarball(file, {
      repoTag: REPO_TAG,
      layout: "oci",
      layers: [{ sizeBytes: 100_000, seed: 2 }],
      gzip: true,
    });
    await truncateFile(file, 0.7);
    const err = await rejection(inspectImageTarball(file));
    expect(err.message).toBe(`${file} is cut short (incomplete gzip stream)`);
  });

  it("detects damage that the gzip trailer's CRC catches", async () => {
    // Stored (level 0) gzip, a byte flipped inside the layer's body: the tar still reads (layer
    // bodies are drained, not parsed), so only the trailer's CRC-32 can tell.
    const file = path.join(root, "image.tar.gz");
    await writeDockerSaveTarball(file, {
      repoTag: REPO_TAG,
      layout: "legacy",
      layers: [{ sizeBytes: 200_000, seed: 3 }],
      gzip: true,
      gzipLevel: 0,
    });
    const bytes = await readFile(file);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = (bytes[middle] as number) ^ 0xff;
    await writeFile(file, bytes);
    const err = await rejection(inspectImageTarball(file));
    expect(err.message).toBe(`${file} is damaged (gzip: incorrect data check)`);
  });

  it("refuses gzip of something that is not a tar", async () => {
    const file = path.join(root, "image.tar.gz");
    await writeFile(file, zlib.gzipSync(Buffer.from("x".repeat(2000))));
    const err = await rejection(inspectImageTarball(file));
    expect(err.message).toMatch(new RegExp(`^${file} is not a docker save image \\(not a tar`));
  });

  it("refuses a tar that is not a docker save", async () => {
    const pack = tar.pack();
    pack.entry({ name: "hello.txt" }, "hello");
    pack.finalize();
    const file = path.join(root, "image.tar.gz");
    await pipeline(pack, zlib.createGzip(), (await import("node:fs")).createWriteStream(file));
    const err = await rejection(inspectImageTarball(file));
    expect(err.message).toBe(`${file} is not a docker save image (no manifest.json)`);
  });

  it("refuses a docker save whose manifest names a layer the tar lacks", async () => {
    const config = Buffer.from(
      JSON.stringify({ rootfs: { type: "layers", diff_ids: ["sha256:00"] } }),
    );
    const pack = tar.pack();
    pack.entry({ name: "config.json" }, config);
    pack.entry(
      { name: "manifest.json" },
      JSON.stringify([{ Config: "config.json", RepoTags: [REPO_TAG], Layers: ["abc/layer.tar"] }]),
    );
    pack.finalize();
    const file = path.join(root, "image.tar.gz");
    await pipeline(pack, zlib.createGzip(), (await import("node:fs")).createWriteStream(file));
    const err = await rejection(inspectImageTarball(file));
    expect(err.message).toBe(
      `${file} is incomplete: abc/layer.tar named by manifest.json is not in the tar`,
    );
  });

  it("names a missing file", async () => {
    const err = await rejection(inspectImageTarball(path.join(root, "nope.tar.gz")));
    expect(err.message).toMatch(/nope\.tar\.gz.*ENOENT/);
  });
});

describe("shared base layers", () => {
  it("the same files give byte-identical layers across images", async () => {
    const a = await writeDockerSaveTarball(path.join(root, "a.tar.gz"), {
      repoTag: `presto-coordinator:${TAG}`,
      layout: "oci",
      layers: [BASE, { files: { "opt/a": "a" } }],
      gzip: true,
    });
    const b = await writeDockerSaveTarball(path.join(root, "b.tar.gz"), {
      repoTag: `presto-native-worker-cpu:${TAG}`,
      layout: "legacy",
      layers: [BASE, { files: { "opt/b": "b" } }],
      gzip: true,
    });
    expect(a.diffIds[0]).toBe(b.diffIds[0]);
    expect(a.diffIds[1]).not.toBe(b.diffIds[1]);
  });
});

describe("assertRepoTag", () => {
  const info = (repoTags: string[]): ImageTarballInfo => ({
    layout: "legacy",
    repoTags,
    config: "c.json",
    configDigest: "sha256:c",
    layers: [],
    layerSizes: [],
    diffIds: [],
  });

  it("names the file, the expected tag and the tags found", () => {
    let caught: unknown;
    try {
      assertRepoTag(info(["presto-coordinator:other"]), REPO_TAG, "/d/x.tar.gz");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SyncError);
    expect((caught as SyncError).message).toBe(
      `/d/x.tar.gz does not hold ${REPO_TAG} (its RepoTags: presto-coordinator:other)`,
    );
    expect(() => assertRepoTag(info([]), REPO_TAG, "f")).toThrow(/its RepoTags: none/);
  });

  it("accepts Docker's spellings of the same name, and only those", () => {
    for (const spelled of [
      `docker.io/library/${REPO_TAG}`,
      `library/${REPO_TAG}`,
      `index.docker.io/library/${REPO_TAG}`,
    ]) {
      expect(assertRepoTag(info(["other:1", spelled]), REPO_TAG, "f")).toBe(spelled);
    }
    for (const other of [
      `ghcr.io/rapidsai/${REPO_TAG}`,
      `rapidsai/${REPO_TAG}`,
      `localhost:5000/${REPO_TAG}`,
    ]) {
      expect(() => assertRepoTag(info([other]), REPO_TAG, "f")).toThrow(SyncError);
    }
  });

  it("canonicalises references the way Docker does", () => {
    expect(canonicalName("x:t")).toBe("docker.io/library/x:t");
    expect(canonicalName("org/x:t")).toBe("docker.io/org/x:t");
    expect(canonicalName("localhost:5000/x:t")).toBe("localhost:5000/x:t");
    expect(canonicalName("reg.example.com/a/b:t")).toBe("reg.example.com/a/b:t");
  });
});
