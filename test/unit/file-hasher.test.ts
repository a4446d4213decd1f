import { createHash, randomBytes } from "node:crypto";
import { appendFile, readdir, readlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FileHasher } from "../../src/workspace/file-hasher.js";
import { tempDir } from "./helpers.js";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("FileHasher (the download's SHA-256 on its own thread)", () => {
  it("hashes a file told about as it grows, in steps of any size, up to the size asked", async () => {
    const file = path.join(await tempDir("file-hasher-"), "a.part");
    const bytes = randomBytes(9 * 1024 * 1024 + 17);
    const hasher = new FileHasher(file);
    // Nothing is read before it is said to be there: the file does not exist yet.
    await writeFile(file, bytes.subarray(0, 3));
    hasher.advance(3);
    await appendFile(file, bytes.subarray(3));
    hasher.advance(5 * 1024 * 1024);
    hasher.advance(1024); // behind what it was told: ignored
    expect(await hasher.digest(bytes.length)).toBe(sha256(bytes));
  });

  it("gives the empty file's digest when told of no byte", async () => {
    const file = path.join(await tempDir("file-hasher-"), "never-written.part");
    expect(await new FileHasher(file).digest(0)).toBe(sha256(Buffer.alloc(0)));
  });

  it("fails, rather than hashing less, when the file is shorter than it was told", async () => {
    const file = path.join(await tempDir("file-hasher-"), "short.part");
    await writeFile(file, Buffer.alloc(100));
    const hasher = new FileHasher(file);
    hasher.advance(100);
    await expect(hasher.digest(200)).rejects.toThrow(/ends at byte 100, short of 200/);
  });

  it.runIf(process.platform === "linux")(
    "holds no descriptor of the file once stopped (a removed part file's space comes back)",
    async () => {
      const file = path.join(await tempDir("file-hasher-"), "held.part");
      await writeFile(file, Buffer.alloc(4096));
      const holders = async () => {
        const fds = await readdir("/proc/self/fd");
        const targets = await Promise.all(
          fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")),
        );
        return targets.filter((t) => t === file).length;
      };
      const hasher = new FileHasher(file);
      hasher.advance(4096);
      expect(await holders()).toBe(1);
      await hasher.close();
      expect(await holders()).toBe(0);
    },
  );
});
