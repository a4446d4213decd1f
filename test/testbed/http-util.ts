/**
 * Small pieces shared by the HTTP stand-ins: listening on a free loopback port, byte ranges,
 * streaming a body with back-pressure (and on demand: slowly, or cut after N bytes).
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ListeningServer {
  server: http.Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Starts `handler` on 127.0.0.1 at a port the OS picks. */
export async function listenOnFreePort(handler: http.RequestListener): Promise<ListeningServer> {
  const server = http.createServer(handler);
  // Tests stop downloads half-way; sockets left waiting must not hold up close().
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Bytes served from memory or from a file on disk (large artifacts). */
export type ByteSource = Buffer | string;

export async function sizeOf(source: ByteSource): Promise<number> {
  return Buffer.isBuffer(source) ? source.length : (await stat(source)).size;
}

export type RangeResult =
  { kind: "none" } | { kind: "ok"; start: number; end: number } | { kind: "unsatisfiable" };

/** One `bytes=` range (the only form clients here send); several ranges are served whole. */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: "none" };
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return { kind: "none" };
  const [, first = "", last = ""] = match;
  if (first === "" && last === "") return { kind: "none" };
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0) return { kind: "unsatisfiable" };
    return { kind: "ok", start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return { kind: "unsatisfiable" };
  return { kind: "ok", start, end };
}

export interface BodyOptions {
  /** Destroy the connection once this many body bytes went out. */
  cutAfterBytes?: number;
  /** Pace the body at this rate (bytes per second, held against the clock). */
  bytesPerSecond?: number;
  /** Called as bytes go out, for the stand-in's request log. */
  onBytes?: (sent: number) => void;
}

const CHUNK = 64 * 1024;

async function* chunksOf(source: ByteSource, start: number, end: number): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(source)) {
    for (let offset = start; offset <= end; offset += CHUNK) {
      yield source.subarray(offset, Math.min(end + 1, offset + CHUNK));
    }
    return;
  }
  if (end < start) return;
  for await (const chunk of createReadStream(source, { start, end, highWaterMark: CHUNK })) {
    yield chunk as Buffer;
  }
}

function waitForDrainOrClose(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}

/**
 * Writes bytes `start..end` of `source` (headers already set), honouring back-pressure so a
 * client that stops reading really stops the transfer; returns the bytes written.
 */
export async function streamBody(
  res: http.ServerResponse,
  source: ByteSource,
  start: number,
  end: number,
  options: BodyOptions = {},
): Promise<number> {
  let sent = 0;
  const started = performance.now();
  for await (const chunk of chunksOf(source, start, end)) {
    if (res.destroyed) break;
    let piece = chunk;
    if (options.cutAfterBytes !== undefined && sent + piece.length >= options.cutAfterBytes) {
      piece = piece.subarray(0, Math.max(0, options.cutAfterBytes - sent));
      if (piece.length > 0) await new Promise<void>((resolve) => res.write(piece, () => resolve()));
      sent += piece.length;
      options.onBytes?.(sent);
      res.destroy();
      return sent;
    }
    const flushed = res.write(piece);
    sent += piece.length;
    options.onBytes?.(sent);
    if (options.bytesPerSecond) {
      // Paced against the clock, not chunk by chunk: the rate holds at tens of MiB/s too.
      const ahead = started + (sent / options.bytesPerSecond) * 1000 - performance.now();
      if (ahead >= 1) await sleep(ahead);
    }
    // The pacing sleep may outlast the drain: wait only if the buffer is still full.
    if (!flushed && res.writableNeedDrain) await waitForDrainOrClose(res);
  }
  if (!res.destroyed) res.end();
  return sent;
}

export function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): number {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
  return Buffer.byteLength(text);
}
