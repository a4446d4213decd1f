/**
 * Issue 13, the archives and the disk: downloads that do not stop, zip bombs (an honest one and
 * one whose directory lies), layers that do not match their diff-ids or are no tar, manifest
 * paths out of the tarball, logs and spools without end. Each is generated here, small. Where
 * the test runs as root a small tmpfs plays the full disk; the same faults are also played
 * everywhere with an injected free-space function or /dev/full.
 */
import { execFileSync } from "node:child_process";
import type { ServerResponse } from "node:http";
import {
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rm,
  statfs,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { inspectImageTarball } from "../../src/archive/docker-save.js";
import { extractZip } from "../../src/archive/extract.js";
import { DamagedInputError, SyncError, isDamagedInput } from "../../src/errors.js";
import { createGithubClient } from "../../src/github/client.js";
import { fetchRunMetadata } from "../../src/github/metadata.js";
import { HttpClient } from "../../src/net/http.js";
import { silentLogger } from "../../src/report/logger.js";
import { downloadFile, type DownloadProgress } from "../../src/workspace/download.js";
import { streamGetOf } from "../../src/net/http.js";
import { writeArtifactZip } from "../testbed/image-fixtures.js";
import { layerTar, sha256, writeHostileSave } from "../testbed/hostile-images.js";
import { endlessBody, hostileServer } from "../testbed/hostile-http.js";
import { failure, tempDir } from "./helpers.js";

const logger = silentLogger();
const MiB = 1024 * 1024;
const REPO_TAG = "presto-coordinator:presto-a-velox-b-linux-amd64";
const isRoot = process.getuid?.() === 0;

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function serve(
  handler: Parameters<typeof hostileServer>[0],
): Promise<{ url: string; hits: () => number }> {
  const server = await hostileServer(handler);
  return { url: server.url, hits: () => server.seen.length };
}

const endless = (res: ServerResponse): void => endlessBody(res, "application/octet-stream");

/**
 * A small file system of `size`, unmounted and removed when the test ends; only as root. Its
 * directory is not `tempDir`'s: that one is removed by a hook that may run before the unmount,
 * which leaves the mount point behind in /tmp.
 */
async function smallDisk(size: string): Promise<string> {
  const top = await mkdtemp(path.join(tmpdir(), "hostile-disk-"));
  const dir = path.join(top, "mnt");
  await mkdir(dir);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
  closers.push(async () => {
    execFileSync("umount", [dir]);
    await rm(top, { recursive: true, force: true });
  });
  return dir;
}

async function freeOn(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return Number(stats.bavail) * Number(stats.bsize);
}

/** Makes the central directory claim `size` uncompressed bytes for `entry` (non-ZIP64 zips). */
async function declareSize(zipFile: string, entry: string, size: number): Promise<void> {
  const bytes = await readFile(zipFile);
  const eocd = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  let at = bytes.readUInt32LE(eocd + 16);
  while (bytes.readUInt32LE(at) === 0x02014b50) {
    const nameLength = bytes.readUInt16LE(at + 28);
    const name = bytes.subarray(at + 46, at + 46 + nameLength).toString();
    if (name === entry) {
      bytes.writeUInt32LE(size, at + 24);
      await writeFile(zipFile, bytes);
      return;
    }
    at += 46 + nameLength + bytes.readUInt16LE(at + 30) + bytes.readUInt16LE(at + 32);
  }
  throw new Error(`no entry ${entry}`);
}

/** A zip of `bytes` zeros: a few hundred KiB that inflate to `bytes`. */
async function bomb(dir: string, bytes: number, declared?: number): Promise<string> {
  const zip = path.join(dir, "bomb.zip");
  await writeArtifactZip(zip, [{ name: "zeros.bin", data: Buffer.alloc(bytes) }]);
  if (declared !== undefined) await declareSize(zip, "zeros.bin", declared);
  return zip;
}

describe("downloads (issue 13, failure 2)", () => {
  it("stops an endless body at the declared size, +0 bytes, without retrying, and keeps nothing", async () => {
    const host = await serve((_req, res) => endless(res));
    const dir = await tempDir("hostile-dl-");
    const seen: DownloadProgress[] = [];
    const error = await failure(
      downloadFile({
        resolveUrl: async () => `${host.url}/a.zip`,
        get: streamGetOf(globalThis.fetch),
        dest: path.join(dir, "a.zip"),
        expectedSize: MiB,
        logger,
        retryDelayMs: 1,
        freeBytes: async () => 1 << 30,
        onProgress: (p) => seen.push(p),
      }),
    );
    expect(error.oneLine()).toMatch(
      /^download failed: the server sent more than the artifact's 1048576 bytes — .*partial file was removed/,
    );
    expect(Math.max(...seen.map((p) => p.bytes))).toBeLessThanOrEqual(MiB);
    expect(host.hits()).toBe(1);
    expect(await readdir(dir)).toEqual([]);
  });

  it("ends at once on a full disk, giving the space back (ENOSPC from /dev/full)", async () => {
    const host = await serve((_req, res) => endless(res));
    const dir = await tempDir("hostile-dl-");
    const dest = path.join(dir, "a.zip");
    await symlink("/dev/full", `${dest}.part`);
    const error = await failure(
      downloadFile({
        resolveUrl: async () => `${host.url}/a.zip`,
        get: streamGetOf(globalThis.fetch),
        dest,
        logger,
        retryDelayMs: 1,
      }),
    );
    expect(error.message).toBe(
      `ENOSPC writing ${dest}.part: no space left on the disk holding ${dir}; the partial download was removed`,
    );
    expect(host.hits()).toBe(1);
    expect(await readdir(dir)).toEqual([]);
  });

  it.runIf(isRoot)(
    "on a small disk: the endless body fills nothing, and ENOSPC leaves the disk as it was",
    async () => {
      const disk = await smallDisk("96m");
      const free = await freeOn(disk);
      const host = await serve((_req, res) => endless(res));
      const capped = await failure(
        downloadFile({
          resolveUrl: async () => `${host.url}/a.zip`,
          get: streamGetOf(globalThis.fetch),
          dest: path.join(disk, "capped.zip"),
          expectedSize: MiB,
          logger,
        }),
      );
      expect(capped.message).toMatch(/sent more than the artifact's/);
      // No declared size at all: the disk fills, and the download gives its space back.
      const full = await failure(
        downloadFile({
          resolveUrl: async () => `${host.url}/a.zip`,
          get: streamGetOf(globalThis.fetch),
          dest: path.join(disk, "full.zip"),
          logger,
          retryDelayMs: 1,
        }),
      );
      expect(full.message).toMatch(
        /^ENOSPC writing .*\/full\.zip\.part: no space left on the disk holding .*; the partial download was removed$/,
      );
      expect(host.hits()).toBe(2);
      expect(await readdir(disk)).toEqual([]);
      expect(await freeOn(disk)).toBe(free);
    },
  );
});

describe("zip bombs (issue 13, failure 4)", () => {
  it("refuses, before writing a byte, a zip whose directory declares more than the disk has", async () => {
    const dir = await tempDir("hostile-zip-");
    const zip = await bomb(dir, 64 * 1024, Math.floor(1.9 * 1024 * MiB));
    const dest = path.join(dir, "extracted");
    const error = await failure(
      extractZip(zip, dest, { logger, freeBytes: async () => 512 * MiB }),
    );
    expect(error.message).toMatch(
      /^not enough disk space in .* for extracting bomb\.zip \(1\.90 GiB of files\): 1\.90 GiB needed \(and 64\.0 MiB to spare\), 512\.0 MiB free$/,
    );
    expect(await readdir(dir)).toEqual(["bomb.zip"]);
  });

  it("stops an entry at the size its directory gives it, however far it would inflate", async () => {
    const dir = await tempDir("hostile-zip-");
    const zip = await bomb(dir, 8 * MiB, 1000);
    let most = 0;
    const error = await failure(
      extractZip(zip, path.join(dir, "extracted"), {
        logger,
        freeBytes: async () => 1 << 30,
        onProgress: (done) => (most = Math.max(most, done)),
      }),
    );
    expect(error).toBeInstanceOf(DamagedInputError);
    expect(error.message).toMatch(
      /entry "zeros\.bin" inflates past the 1000 bytes the directory gives it/,
    );
    expect(most).toBeLessThanOrEqual(1000);
    expect(await readdir(dir)).toEqual(["bomb.zip"]);
  });

  it.runIf(isRoot)("on a small disk: neither bomb fills it", async () => {
    const disk = await smallDisk("96m");
    const free = await freeOn(disk);
    const dir = await tempDir("hostile-zip-");
    // 128 MiB of zeros in a zip of a few hundred KiB: more than the 96 MiB disk holds.
    const honest = await bomb(dir, 128 * MiB);
    expect((await failure(extractZip(honest, path.join(disk, "a"), { logger }))).message).toMatch(
      /not enough disk space/,
    );
    const lying = path.join(dir, "lying.zip");
    await copyFile(honest, lying);
    await declareSize(lying, "zeros.bin", 1000);
    expect((await failure(extractZip(lying, path.join(disk, "b"), { logger }))).message).toMatch(
      /inflates past the 1000 bytes/,
    );
    expect(await readdir(disk)).toEqual([]);
    expect(await freeOn(disk)).toBe(free);
  });
});

describe("layers (issue 13, failure 3)", () => {
  async function inspect(layers: Parameters<typeof writeHostileSave>[2]): Promise<unknown> {
    const file = path.join(await tempDir("hostile-save-"), "image.tar.gz");
    await writeHostileSave(file, REPO_TAG, layers);
    return inspectImageTarball(file).catch((err: unknown) => err);
  }

  it("accepts a gzip-compressed layer (the containerd image store's) that matches its diff-id", async () => {
    const good = await layerTar({ "etc/os-release": "ID=fixture\n" });
    const info = await inspect([{ stored: zlib.gzipSync(good) }]);
    expect(info).toMatchObject({ diffIds: [sha256(good)], repoTags: [REPO_TAG] });
  });

  it("refuses a gzip-compressed layer whose content does not match its diff-id", async () => {
    const good = await layerTar({ "etc/os-release": "ID=fixture\n" });
    const evil = await layerTar({ "etc/os-release": "ID=evil\n" });
    const error = await inspect([{ stored: zlib.gzipSync(evil), diffId: sha256(good) }]);
    expect(error).toBeInstanceOf(DamagedInputError);
    expect((error as SyncError).message).toMatch(
      new RegExp(
        `layer 0/layer\\.tar does not match its diff-id ${sha256(good)} \\(its gzip-decompressed bytes hash to ${sha256(evil)}\\)`,
      ),
    );
  });

  it("refuses an uncompressed layer that does not match its diff-id", async () => {
    const good = await layerTar({ a: "1" });
    const error = await inspect([{ stored: await layerTar({ a: "2" }), diffId: sha256(good) }]);
    expect(isDamagedInput(error)).toBe(true);
    expect((error as SyncError).message).toMatch(/does not match its diff-id/);
  });

  it("refuses a layer that is not a tar, even when its diff-id is its own hash", async () => {
    const junk = Buffer.from("this is not a tar archive at all ".repeat(40));
    const error = await inspect([{ stored: junk }]);
    expect(isDamagedInput(error)).toBe(true);
    expect((error as SyncError).message).toMatch(/layer 0\/layer\.tar is not a tar \(/);
    const gzippedJunk = await inspect([{ stored: zlib.gzipSync(junk) }]);
    expect((gzippedJunk as SyncError).message).toMatch(/is not a tar/);
  });

  it("refuses a manifest that names a layer outside the tarball", async () => {
    const error = await inspect([{ stored: await layerTar({ a: "1" }), path: "../x" }]);
    expect(error).toBeInstanceOf(DamagedInputError);
    expect((error as SyncError).message).toMatch(
      /manifest\.json names "\.\.\/x", a path outside the tarball/,
    );
  });
});

describe("run logs without end", () => {
  /** A GitHub whose one job's log, and whose run-log zip, never end. */
  async function endlessLogs(): Promise<{ api: string; blobHits: () => number }> {
    const blob = await serve((_req, res) => endless(res));
    const api = await serve((req, res) => {
      const url = req.url ?? "";
      if (url.includes("/jobs?") || url.endsWith("/jobs")) {
        const body = { total_count: 1, jobs: [{ id: 71, name: "build", steps: [] }] };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      } else if (url.includes("/logs")) {
        res.writeHead(302, { location: `${blob.url}${url}?sig=s` }).end();
      } else res.writeHead(404).end();
    });
    return { api: api.url, blobHits: blob.hits };
  }

  it("stops reading a job log at its limit, and spools no more of the run-log zip than its limit", async () => {
    const { api, blobHits } = await endlessLogs();
    const http = new HttpClient({ env: {} });
    closers.push(() => http.close());
    const tmp = await tempDir("hostile-logs-");
    const client = createGithubClient({ baseUrl: api, token: "t", logger, fetch: http.fetch });
    const error = await failure(
      fetchRunMetadata(client, {
        repo: "o/r",
        run: 7,
        logger,
        tmpDir: tmp,
        limits: { jobLog: MiB, runLogZip: 2 * MiB },
      }),
    );
    expect(error.message).toBe("the logs of run 7 are larger than 2.0 MiB; stopped");
    expect(blobHits()).toBe(2);
    expect(await readdir(tmp)).toEqual([]);
  });
});
