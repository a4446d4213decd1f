import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { createHash } from "node:crypto";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { downloadFile } from "../../src/workspace/download.js";
import { SyncError } from "../../src/errors.js";
import { HttpClient } from "../../src/net/http.js";
import { silentLogger } from "../../src/report/logger.js";
import { tempDir } from "./helpers.js";

const body = Buffer.from("0123456789".repeat(1000));
const sha = `sha256:${createHash("sha256").update(body).digest("hex")}`;
let server: Server | undefined;

async function serve(
  handler: (
    req: import("node:http").IncomingMessage,
    res: import("node:http").ServerResponse,
    n: number,
  ) => void,
): Promise<string> {
  let n = 0;
  server = createServer((req, res) => handler(req, res, ++n));
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
}

afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

// The transport the CLI downloads with: undici's streaming GET through the command's client.
const http = new HttpClient();
afterAll(() => http.close());

const base = {
  logger: silentLogger(),
  retryDelayMs: 1,
  freeBytes: async () => 1 << 30,
  get: http.get,
};

describe("downloadFile", () => {
  it("starts over when the server ignores Range, and still verifies", async () => {
    const url = await serve((_req, res) => res.end(body));
    const dir = await tempDir("dl-");
    const dest = path.join(dir, "a.zip");
    await writeFile(`${dest}.part`, body.subarray(0, 500));
    const result = await downloadFile({
      ...base,
      resolveUrl: async () => url,
      dest,
      expectedSize: body.length,
      digest: sha,
    });
    expect(result.size).toBe(body.length);
    expect(await readFile(dest)).toEqual(body);
    expect(await readdir(dir)).toEqual(["a.zip"]);
  });

  it("asks for a fresh URL on every attempt and gives up after the limit, keeping the part", async () => {
    let asked = 0;
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-length": String(body.length) });
      res.write(body.subarray(0, 100));
      // Cut after the bytes have had time to reach the client's disk.
      setTimeout(() => res.destroy(), 50);
    });
    const dir = await tempDir("dl-");
    const dest = path.join(dir, "a.zip");
    const run = downloadFile({
      ...base,
      resolveUrl: async () => (asked++, url),
      dest,
      expectedSize: body.length,
      maxAttempts: 3,
    });
    await expect(run).rejects.toThrow(SyncError);
    await expect(run).rejects.toThrow(/after 3 attempt\(s\)/);
    expect(asked).toBe(3);
    expect(await readdir(dir)).toEqual(["a.zip.part"]);
  });

  it("refuses a body of the wrong size and removes it", async () => {
    const url = await serve((_req, res) => res.end(body.subarray(0, 10)));
    const dir = await tempDir("dl-");
    await expect(
      downloadFile({
        ...base,
        resolveUrl: async () => url,
        dest: path.join(dir, "a.zip"),
        expectedSize: 10_000,
        maxAttempts: 1,
      }),
    ).rejects.toThrow();
    expect((await readdir(dir)).filter((f) => f === "a.zip")).toEqual([]);
  });

  it("does not retry a 404", async () => {
    let hits = 0;
    const url = await serve((_req, res) => {
      hits += 1;
      res.statusCode = 404;
      res.end();
    });
    const dir = await tempDir("dl-");
    await expect(
      downloadFile({ ...base, resolveUrl: async () => url, dest: path.join(dir, "a.zip") }),
    ).rejects.toThrow(/HTTP 404/);
    expect(hits).toBe(1);
  });

  it("refuses a body of the right size whose digest is not GitHub's: the damaged file is removed, none is renamed into place", async () => {
    // One byte changed: the size still matches, only the digest tells.
    const damaged = Buffer.from(body);
    damaged[4321] = (damaged[4321] ?? 0) ^ 0xff;
    const url = await serve((_req, res) => res.end(damaged));
    const dir = await tempDir("dl-");
    const error = await downloadFile({
      ...base,
      resolveUrl: async () => url,
      dest: path.join(dir, "a.zip"),
      expectedSize: body.length,
      digest: sha,
      maxAttempts: 1,
    }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SyncError);
    expect((error as SyncError).message).toBe(
      `the download does not match the artifact (digest mismatch: expected ${sha}, got sha256:${createHash("sha256").update(damaged).digest("hex")})`,
    );
    expect(await readdir(dir)).toEqual([]);
  });

  it("resumes a cut at the part file's length: Range: bytes=<bytes on disk>-, the rest appended, the whole verified", async () => {
    const ranges: Array<string | undefined> = [];
    const url = await serve((req, res, n) => {
      ranges.push(req.headers.range);
      if (n === 1) {
        // The first answer stops after 3,000 bytes: the connection drops mid-body.
        res.writeHead(200, { "content-length": String(body.length) });
        res.write(body.subarray(0, 3000));
        setTimeout(() => res.destroy(), 100);
        return;
      }
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? "")?.[1] ?? 0);
      res.writeHead(206, {
        "content-length": String(body.length - from),
        "content-range": `bytes ${from}-${body.length - 1}/${body.length}`,
      });
      res.end(body.subarray(from));
    });
    const dir = await tempDir("dl-");
    const dest = path.join(dir, "a.zip");
    const result = await downloadFile({
      ...base,
      resolveUrl: async () => url,
      dest,
      expectedSize: body.length,
      digest: sha,
    });
    expect(ranges).toEqual([undefined, "bytes=3000-"]);
    expect(result).toMatchObject({ size: body.length, fetched: body.length, attempts: 2 });
    expect(await readFile(dest)).toEqual(body);
  });
});
