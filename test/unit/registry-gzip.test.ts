import { createHash, randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { deterministicGzip, type GzipOptions } from "../../src/registry/gzip.js";

async function gzipAll(chunks: Buffer[], options: GzipOptions = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const piece of deterministicGzip(
    (async function* () {
      yield* chunks;
    })(),
    options,
  )) {
    out.push(piece);
  }
  return Buffer.concat(out);
}

/** Splits `data` into pieces of irregular sizes, as a tar reader hands them over. */
function chunked(data: Buffer, sizes: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length] as number;
    chunks.push(data.subarray(at, at + n));
    at += n;
  }
  return chunks;
}

function textish(size: number): Buffer {
  const words = ["layer", "tar", "usr/lib", "presto", "velox", "\n", "0123", "coordinator "];
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < size; i++) {
    const w = words[(i * 7 + (i >> 3)) % words.length] as string;
    parts.push(w);
    length += w.length;
  }
  return Buffer.from(parts.join("")).subarray(0, size);
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("deterministicGzip", () => {
  const blockSize = 64 * 1024;

  it("gives a gzip stream that gunzip restores, for compressible and random data", async () => {
    const data = Buffer.concat([textish(300_000), randomBytes(200_000), textish(5)]);
    const gz = await gzipAll(chunked(data, [1000, 70_000, 3]), { blockSize });
    expect(gunzipSync(gz).equals(data)).toBe(true);
    expect(gz.subarray(0, 10).toString("hex")).toBe("1f8b08000000000000ff");
  });

  it("does not depend on how the input is chunked, nor on the parallelism", async () => {
    const data = Buffer.concat([textish(250_000), randomBytes(150_000)]);
    const a = await gzipAll([data], { blockSize, parallel: 4 });
    const b = await gzipAll(chunked(data, [1, 4093, 65_537, 17]), { blockSize, parallel: 2 });
    const c = await gzipAll(chunked(data, [blockSize]), { blockSize, parallel: 1 });
    expect(sha(b)).toBe(sha(a));
    expect(sha(c)).toBe(sha(a));
  });

  it("compresses text and stores random bytes with little overhead", async () => {
    const text = textish(1 << 20);
    const random = randomBytes(1 << 20);
    expect((await gzipAll([text], { blockSize })).length).toBeLessThan(text.length / 10);
    const stored = await gzipAll([random], { blockSize });
    expect(stored.length).toBeLessThan(random.length * 1.01);
    expect(gunzipSync(stored).equals(random)).toBe(true);
  });

  it("handles empty input and a last partial block", async () => {
    expect(gunzipSync(await gzipAll([])).length).toBe(0);
    const data = textish(blockSize + 1);
    expect(gunzipSync(await gzipAll([data], { blockSize })).equals(data)).toBe(true);
  });
});
