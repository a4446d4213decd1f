import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { extractZip } from "../../src/archive/extract.js";
import { silentLogger } from "../../src/report/logger.js";
import { writeJsonAtomic } from "../../src/util/files.js";
import { downloadFile } from "../../src/workspace/download.js";
import { streamGetOf } from "../../src/net/http.js";
import { writeArtifactZip } from "../testbed/image-fixtures.js";
import { failure, tempDir } from "./helpers.js";

/**
 * A disk that fills up while the tool writes: a real, small tmpfs (as root; elsewhere the case
 * is skipped with the reason, since nothing short of a real full disk shows the real errno
 * paths). Each write must end in one line naming the directory and the room it needed, and
 * leave nothing that looks complete.
 */
const TMPFS_BYTES = 2 << 20;
const BLOB = randomBytes(6 << 20);

function canMount(): { ok: boolean; reason: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: "(needs root to mount a tmpfs)" };
  return { ok: true, reason: "" };
}
const gate = canMount();

describe.skipIf(!gate.ok)(`a full disk ${gate.reason}`, () => {
  let scratch: string;
  let disk: string;
  let server: Server;
  let url: string;

  beforeAll(async () => {
    // Made here rather than with tempDir: the mount must outlive single tests.
    scratch = await mkdtemp(path.join(tmpdir(), "disk-full-"));
    disk = path.join(scratch, "disk");
    await mkdir(disk);
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_BYTES}`, "tmpfs", disk]);
    server = createServer((_req, res) => {
      res.writeHead(200, { "content-length": String(BLOB.length) });
      res.end(BLOB);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    if (disk) execFileSync("umount", [disk]);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  async function emptyDir(name: string): Promise<string> {
    const dir = path.join(disk, name);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  it("download: the disk fills up mid-way (after the free-space check passed)", async () => {
    const dir = await emptyDir("download");
    const dest = path.join(dir, "a.zip");
    const err = await failure(
      downloadFile({
        logger: silentLogger(),
        get: streamGetOf(globalThis.fetch),
        resolveUrl: () => Promise.resolve(url),
        dest,
        expectedSize: BLOB.length,
        retryDelayMs: 1,
        // Room at the start; something else takes it while the download runs.
        freeBytes: () => Promise.resolve(1 << 30),
      }),
    );
    // The room the whole artifact needs: the partial file is given back, the disk left as it was.
    expect(err.message).toBe(
      `ENOSPC writing ${dest}.part: no space left on the disk holding ${dir} (6.0 MiB needed); the partial download was removed`,
    );
    expect(err.hint).toContain("free disk space");
    expect(await readdir(dir)).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });

  it("extraction: the disk fills up mid-way (after the free-space check passed); nothing extracted is left", async () => {
    const zip = path.join(await tempDir("disk-full-zip-"), "a.zip");
    await writeArtifactZip(zip, [{ name: "image.tar.gz", data: BLOB, compress: false }]);
    const tag = await emptyDir("tag");
    const err = await failure(
      extractZip(zip, path.join(tag, "extracted"), {
        logger: silentLogger(),
        // Room at the start; something else takes it while the entries are written.
        freeBytes: () => Promise.resolve(1 << 30),
      }),
    );
    expect(err.message).toMatch(
      new RegExp(`^no space left on the disk holding ${tag} \\([0-9.]+ MiB needed\\)$`),
    );
    expect(await readdir(tag)).toEqual([]);
  });

  it("a state write: the old file stays whole, no temporary file is left", async () => {
    const dir = await emptyDir("state");
    const file = path.join(dir, "failures.json");
    await writeFile(file, "{}");
    // Fill the disk, leaving less than the new record needs.
    const filler = await open(path.join(disk, "filler"), "w");
    try {
      for (;;) await filler.write(Buffer.alloc(64 << 10));
    } catch {
      // Full.
    } finally {
      await filler.close();
    }
    const err = await failure(writeJsonAtomic(file, { record: "x".repeat(200_000) }));
    expect(err.message).toMatch(
      new RegExp(`^ENOSPC writing ${file}: no space left on the disk \\([0-9.]+ KiB needed\\)$`),
    );
    expect(err.hint).toBe(
      `free disk space under ${dir} (gh-gitlab-sync clean <tag> removes finished downloads) and run again`,
    );
    expect(await readFile(file, "utf8")).toBe("{}");
    expect(await readdir(dir)).toEqual(["failures.json"]);
  });
});
