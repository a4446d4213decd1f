import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createImageTarballInspector } from "../../src/archive/docker-save.js";
import { extractZip } from "../../src/archive/extract.js";
import { normaliseEntryName } from "../../src/archive/zip-vetting.js";
import { SyncError } from "../../src/errors.js";
import { silentLogger } from "../../src/report/logger.js";
import {
  corruptZipEntry,
  truncateFile,
  writeArtifactZip,
  writeDockerSaveTarball,
  writeSymlinkZip,
  writeZipWithRawNames,
} from "../testbed/image-fixtures.js";

const logger = silentLogger();
const TAG = "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64";
const METADATA = Buffer.from(`Image tag         : ${TAG}\nTarget platform   : linux/amd64\n`);

let root: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "archive-extract-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Everything under `dir`, relative, so a test can say exactly what a failure left behind. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map((e) => e.split(path.sep).join("/")).sort();
}

async function rejection(promise: Promise<unknown>): Promise<SyncError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SyncError);
  return err as SyncError;
}

async function artifact(options: { forceZip64?: boolean } = {}): Promise<{
  zip: string;
  tarball: string;
}> {
  const tarball = path.join(root, `presto-coordinator-${TAG}.tar.gz`);
  await writeDockerSaveTarball(tarball, {
    repoTag: `presto-coordinator:${TAG}`,
    layout: "oci",
    layers: [{ files: { "etc/os-release": "ID=fixture\n" } }, { sizeBytes: 300_000, seed: 1 }],
    gzip: true,
  });
  const zip = path.join(root, `${TAG}.zip`);
  await writeArtifactZip(
    zip,
    [
      { name: "build-metadata.txt", data: METADATA },
      { name: path.basename(tarball), file: tarball },
      { name: "nested/dir/notes.txt", data: Buffer.from("notes\n") },
    ],
    options,
  );
  return { zip, tarball };
}

describe("extractZip", () => {
  it("extracts a streamed artifact (data descriptors) and verifies every entry", async () => {
    const { zip, tarball } = await artifact();
    const dest = path.join(root, "extracted");
    const progress: Array<[number, number]> = [];
    const entries = await extractZip(zip, dest, {
      logger,
      onProgress: (done, total) => progress.push([done, total]),
    });

    expect(entries.map((e) => e.name)).toEqual([
      "build-metadata.txt",
      path.basename(tarball),
      "nested/dir/notes.txt",
    ]);
    const tarBytes = await readFile(tarball);
    const onDisk = entries[1];
    expect(onDisk?.path).toBe(path.join(dest, path.basename(tarball)));
    expect(onDisk?.size).toBe(tarBytes.length);
    expect(onDisk?.crc32).toBe(zlib.crc32(tarBytes));
    // Buffer#equals: vitest's deep equality walks a large buffer byte by byte, slowly.
    expect((await readFile(path.join(dest, path.basename(tarball)))).equals(tarBytes)).toBe(true);
    expect(await readFile(path.join(dest, "build-metadata.txt"))).toEqual(METADATA);
    expect(await tree(root)).toEqual(
      [
        `${TAG}.zip`,
        path.basename(tarball),
        "extracted",
        "extracted/build-metadata.txt",
        `extracted/${path.basename(tarball)}`,
        "extracted/nested",
        "extracted/nested/dir",
        "extracted/nested/dir/notes.txt",
      ].sort(),
    );
    const total = METADATA.length + tarBytes.length + "notes\n".length;
    expect(progress.at(-1)).toEqual([total, total]);
  });

  it("reads ZIP64 records", async () => {
    const { zip, tarball } = await artifact({ forceZip64: true });
    const bytes = await readFile(zip);
    // The ZIP64 end-of-central-directory record proves the fixture really is ZIP64.
    expect(bytes.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(true);
    const entries = await extractZip(zip, path.join(root, "extracted"), { logger });
    expect(entries.map((e) => e.name)).toContain(path.basename(tarball));
    const extracted = await readFile(path.join(root, "extracted", path.basename(tarball)));
    expect(extracted.equals(await readFile(tarball))).toBe(true);
  });

  it("replaces an earlier extraction only once the new one is complete", async () => {
    const { zip } = await artifact();
    const dest = path.join(root, "extracted");
    await mkdir(dest);
    await writeFile(path.join(dest, "stale.txt"), "old");
    await extractZip(zip, dest, { logger });
    expect(await tree(dest)).not.toContain("stale.txt");
    expect((await readdir(root)).filter((n) => n.includes(".tmp-") || n.includes(".old-"))).toEqual(
      [],
    );
  });

  it("removes what a killed run left behind, but not a live process's work", async () => {
    const { zip } = await artifact();
    const dead = path.join(root, "extracted.tmp-999999999");
    const live = path.join(root, `extracted.tmp-${process.ppid}`);
    await mkdir(dead);
    await writeFile(path.join(dead, "half.tar.gz.part"), "x");
    await mkdir(live);
    await extractZip(zip, path.join(root, "extracted"), { logger });
    const names = await readdir(root);
    expect(names).not.toContain("extracted.tmp-999999999");
    expect(names).toContain(`extracted.tmp-${process.ppid}`);
  });

  it("hands each entry's bytes to a tee while writing it", async () => {
    const { zip, tarball } = await artifact();
    const inspectors = new Map<string, ReturnType<typeof createImageTarballInspector>>();
    await extractZip(zip, path.join(root, "extracted"), {
      logger,
      tee: (name) => {
        if (!name.endsWith(".tar.gz")) return undefined;
        const inspector = createImageTarballInspector(name);
        inspectors.set(name, inspector);
        return inspector.sink;
      },
    });
    const info = await inspectors.get(path.basename(tarball))?.result;
    expect(info?.repoTags).toEqual([`presto-coordinator:${TAG}`]);
    expect(info?.layers).toHaveLength(2);
  });

  it("detects a CRC mismatch and leaves neither the directory nor a temporary one", async () => {
    const big = randomBytes(64 * 1024);
    const zip = path.join(root, "a.zip");
    await writeArtifactZip(zip, [
      { name: "build-metadata.txt", data: METADATA },
      { name: "image.tar.gz", data: big, compress: false },
    ]);
    await corruptZipEntry(zip, "image.tar.gz");
    const err = await rejection(extractZip(zip, path.join(root, "extracted"), { logger }));
    expect(err.message).toMatch(/entry "image\.tar\.gz" is damaged \(CRC-32 [0-9a-f]{8}/);
    expect(err.hint).toBe(
      "the artifact is damaged or hostile; fetch it again with download --force (or sync --force)",
    );
    expect(await tree(root)).toEqual(["a.zip"]);
  });

  it("detects damage inside deflated data", async () => {
    const zip = path.join(root, "a.zip");
    await writeArtifactZip(zip, [
      { name: "log.txt", data: Buffer.from("line of text\n".repeat(20_000)) },
    ]);
    await corruptZipEntry(zip, "log.txt");
    const err = await rejection(extractZip(zip, path.join(root, "extracted"), { logger }));
    expect(err.message).toMatch(/entry "log\.txt" is damaged/);
    expect(await tree(root)).toEqual(["a.zip"]);
  });

  it.each([
    ["../../x.txt", "would be written outside the extraction directory"],
    ["a/../../x.txt", "would be written outside the extraction directory"],
    ["..\\..\\x.txt", "would be written outside the extraction directory"],
    ["/tmp/x.txt", "has an absolute path"],
    ["C:/x.txt", "has an absolute path"],
    ["C:x.txt", "has an absolute path"],
  ])("refuses the entry %s before writing anything", async (name, reason) => {
    const workdir = path.join(root, "downloads", "tag");
    await mkdir(workdir, { recursive: true });
    const zip = path.join(workdir, "a.zip");
    await writeZipWithRawNames(zip, [
      { name: "build-metadata.txt", data: METADATA },
      { name, data: Buffer.from("owned") },
    ]);
    const err = await rejection(extractZip(zip, path.join(workdir, "extracted"), { logger }));
    expect(err.message).toBe(`${zip}: entry ${JSON.stringify(name)} ${reason}`);
    expect(err.hint).toBe(
      "the artifact is damaged or hostile; fetch it again with download --force (or sync --force)",
    );
    expect(await tree(root)).toEqual(["downloads", "downloads/tag", "downloads/tag/a.zip"]);
  });

  it("refuses two entries with the same name", async () => {
    const zip = path.join(root, "a.zip");
    await writeZipWithRawNames(zip, [
      { name: "dup/x.txt", data: Buffer.from("one") },
      { name: "dup/x.txt", data: Buffer.from("two") },
    ]);
    const err = await rejection(extractZip(zip, path.join(root, "extracted"), { logger }));
    expect(err.message).toMatch(/entry "dup\/x\.txt" appears twice/);
    expect(await tree(root)).toEqual(["a.zip"]);
  });

  it("refuses a symbolic link entry", async () => {
    const zip = path.join(root, "a.zip");
    await writeSymlinkZip(zip, "image.tar.gz", "/etc/passwd");
    const err = await rejection(extractZip(zip, path.join(root, "extracted"), { logger }));
    expect(err.message).toBe(`${zip}: entry "image.tar.gz" is a symbolic link`);
    expect(await tree(root)).toEqual(["a.zip"]);
  });

  it("refuses other non-regular entries", async () => {
    const zip = path.join(root, "a.zip");
    await writeArtifactZip(zip, [{ name: "fifo", data: Buffer.alloc(0), mode: 0o010644 }]);
    const err = await rejection(extractZip(zip, path.join(root, "extracted"), { logger }));
    expect(err.message).toMatch(/entry "fifo" is not a regular file/);
  });

  it("reports a truncated zip as incomplete", async () => {
    const { zip } = await artifact();
    await truncateFile(zip, 0.6);
    const err = await rejection(extractZip(zip, path.join(root, "extracted"), { logger }));
    expect(err.message).toBe(`${zip} is not a complete zip (no end-of-central-directory record)`);
    expect(err.hint).toBe("re-run download with --force");
    expect(await tree(root)).not.toContain("extracted");
  });

  it("reports a file that is not a zip at all", async () => {
    const zip = path.join(root, "a.zip");
    await writeFile(zip, zlib.gzipSync(Buffer.from("not a zip")));
    const err = await rejection(extractZip(zip, path.join(root, "extracted"), { logger }));
    expect(err.message).toMatch(/is not a complete zip/);
  });

  it("says so when the zip is missing", async () => {
    const err = await rejection(
      extractZip(path.join(root, "nope.zip"), path.join(root, "x"), { logger }),
    );
    expect(err.message).toMatch(/^cannot read .*nope\.zip/);
  });

  it("stops on abort and cleans up", async () => {
    const zip = path.join(root, "a.zip");
    await writeArtifactZip(zip, [
      { name: "first.bin", data: randomBytes(4 << 20), compress: false },
      { name: "second.bin", data: randomBytes(4 << 20), compress: false },
    ]);
    const controller = new AbortController();
    const err = await extractZip(zip, path.join(root, "extracted"), {
      logger,
      signal: controller.signal,
      onProgress: (done) => {
        if (done > 1 << 20) controller.abort();
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error).name).toBe("AbortError");
    expect(await tree(root)).toEqual(["a.zip"]);
  });

  it("does not start when already aborted", async () => {
    const { zip } = await artifact();
    await expect(
      extractZip(zip, path.join(root, "extracted"), { logger, signal: AbortSignal.abort() }),
    ).rejects.toThrow(/abort/i);
  });
});

describe("normaliseEntryName", () => {
  it("keeps ordinary names and tidies separators", () => {
    expect(normaliseEntryName("a/b.txt")).toBe("a/b.txt");
    expect(normaliseEntryName("./a//b/")).toBe("a/b");
    expect(normaliseEntryName("a\\b.txt")).toBe("a/b.txt");
    expect(normaliseEntryName("a/../b.txt")).toBe("b.txt");
  });

  it("refuses names that escape, are absolute, empty or hold NUL", () => {
    for (const name of ["..", "../x", "a/../../x", "/x", "\\x", "D:\\x", ".", "", "a\0b"]) {
      expect(normaliseEntryName(name)).toHaveProperty("refused");
    }
  });
});
