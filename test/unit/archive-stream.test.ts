/**
 * The streaming side of archive/ (issue 15): a zip read front to back while it is still being
 * written (growing-file.ts, zip-stream.ts), each `docker save` tarball in it turned into an image
 * as it streams past (image-stream.ts) — legacy and OCI layouts, a ZIP64 zip — agreeing with
 * what the file-based inspection finds, and a damaged tarball refused on its own while the zip
 * goes on.
 */
import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { inspectImageTarball } from "../../src/archive/docker-save.js";
import { GrowingFile } from "../../src/archive/growing-file.js";
import { createImageStream, type SavedImage } from "../../src/archive/image-stream.js";
import { openEntry, readZipStream, type StreamedEntry } from "../../src/archive/zip-stream.js";
import { expectedImages } from "../../src/domain/images.js";
import { makeArtifactZip } from "../testbed/artifacts.js";
import { makeMetadata } from "../testbed/run-fixtures.js";
import { tempDir } from "./helpers.js";

const metadata = makeMetadata({
  prestoRef: "a".repeat(40),
  veloxRef: "b".repeat(40),
  platform: "linux/amd64",
  mode: "all_native",
});

/** Copies `from` into `to` in pieces, as a download writes its part file, waking the reader. */
async function writeSlowly(from: string, to: string, file: () => GrowingFile): Promise<void> {
  const bytes = await readFile(from);
  const out = await open(to, "a");
  try {
    for (let at = 0; at < bytes.length; at += 64 * 1024) {
      await out.write(bytes.subarray(at, at + 64 * 1024));
      file().wake();
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    await out.close();
  }
  file().settle({ ok: true });
}

/** Every tarball of the zip through createImageStream, while the zip is read. */
async function streamImages(file: GrowingFile, label: string) {
  const images = new Map<string, Promise<SavedImage>>();
  const problems = new Map<string, string>();
  const result = await readZipStream({
    file,
    label,
    onEntry: (entry) => {
      if (!entry.name.endsWith(".tar.gz")) return undefined;
      const stream = createImageStream(entry.name);
      stream.result.catch(() => undefined);
      images.set(entry.name, stream.result);
      return stream.sink;
    },
    onEntryEnd: (entry, problem) => {
      if (problem) problems.set(entry.name, problem.message);
    },
  });
  return { result, images, problems };
}

describe("the streaming zip and image readers", () => {
  it("read a ZIP64 artifact while it is written: legacy and OCI tarballs give the images the files hold", async () => {
    const dir = await tempDir("archive-stream-");
    const made = await makeArtifactZip({
      dir,
      metadata,
      ociRepos: ["presto-native-worker-cpu"],
      forceZip64: true,
    });
    const part = path.join(dir, "download.part");
    await writeFile(part, "");
    const file = await GrowingFile.open(part, made.size);
    try {
      const writing = writeSlowly(made.zip, part, () => file);
      const { result, images, problems } = await streamImages(file, part);
      await writing;
      expect(problems.size).toBe(0);
      expect(result.entries.map((e) => e.name)).toEqual(result.directory.map((e) => e.name));
      for (const image of expectedImages(metadata)) {
        const saved = await images.get(image.tarball);
        const info = await inspectImageTarball(path.join(dir, image.tarball));
        expect(saved?.info.layout).toBe(
          image.repo === "presto-native-worker-cpu" ? "oci" : "legacy",
        );
        expect(saved?.info.repoTags).toEqual([`${image.repo}:${image.imageTag}`]);
        expect(saved?.info.configDigest).toBe(info.configDigest);
        expect(saved?.info.diffIds).toEqual(info.diffIds);
      }
      // An entry read again from the file (the completion pass) gives its bytes back exactly.
      const entry = result.entries.find((e) => e.name.endsWith(".tar.gz")) as StreamedEntry;
      const again: Buffer[] = [];
      for await (const chunk of openEntry(file, entry)) again.push(chunk as Buffer);
      expect(Buffer.concat(again)).toEqual(await readFile(path.join(dir, entry.name)));
    } finally {
      await file.close();
    }
  });

  it("a tarball spoiled half-way is refused alone, naming it; the zip and the other images read on", async () => {
    const dir = await tempDir("archive-stream-bad-");
    const made = await makeArtifactZip({
      dir,
      metadata,
      layerBytes: 256 * 1024,
      mutateTarball: async (repo, file) => {
        if (repo !== "presto-native-worker-gpu") return;
        const bytes = await readFile(file);
        // Cut the gzip stream in the middle: no trailer, no end of tar.
        await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
      },
    });
    const file = await GrowingFile.open(made.zip, made.size);
    file.settle({ ok: true });
    try {
      const { images, problems } = await streamImages(file, made.zip);
      expect(problems.size).toBe(0);
      for (const image of expectedImages(metadata)) {
        const saved = images.get(image.tarball);
        if (image.repo === "presto-native-worker-gpu") {
          await expect(saved).rejects.toThrow(
            new RegExp(`presto-native-worker-gpu-${image.imageTag}\\.tar\\.gz`),
          );
        } else {
          expect((await saved)?.info.repoTags).toEqual([`${image.repo}:${image.imageTag}`]);
        }
      }
    } finally {
      await file.close();
    }
  });
});
