import { afterEach, describe, expect, it, vi } from "vitest";
import { ANSWER_GRACE_MS, Link, MAX_DRAIN_MS, chunkBody } from "../../src/registry/chunk-body.js";
import { capturingLogger } from "./helpers.js";

const SLICE = 256 << 10;

describe("chunkBody: a chunk's PATCH body that a stop ends whole", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends the whole chunk when nothing stops it", async () => {
    const bytes = Buffer.alloc(3 * SLICE + 5, 1);
    const chunk = chunkBody(
      bytes,
      new AbortController().signal,
      new Link(),
      capturingLogger().logger,
    );
    const sent = Buffer.concat(await chunk.body().toArray());
    expect(sent.equals(bytes)).toBe(true);
    expect(chunk.cut).toBe(false);
    chunk.dispose();
  });

  it("ends the body after the slice on its way once stopped, and says it was cut", async () => {
    const stop = new AbortController();
    const chunk = chunkBody(
      Buffer.alloc(8 * SLICE, 2),
      stop.signal,
      new Link(),
      capturingLogger().logger,
    );
    const sent: Buffer[] = [];
    for await (const slice of chunk.body()) {
      sent.push(slice as Buffer);
      if (sent.length === 2) stop.abort(new Error("stopped"));
    }
    expect(Buffer.concat(sent).length).toBe(2 * SLICE);
    expect(chunk.cut).toBe(true);
    chunk.dispose();
  });

  it("cuts the request only once the link had time to carry what it was handed, and the answer a second more", async () => {
    vi.useFakeTimers();
    const link = new Link();
    const log = capturingLogger();
    // 1 MiB a second, as earlier chunks went.
    link.rate = (1 << 20) / 1000;
    const stop = new AbortController();
    const chunk = chunkBody(Buffer.alloc(16 * SLICE, 3), stop.signal, link, log.logger);
    const reader = chunk.body();
    for (let i = 0; i < 16; i += 1) reader.read();
    stop.abort(new Error("stopped"));
    // 4 MiB handed over at 1 MiB/s: about 4 s to cross, then the answer's second.
    await vi.advanceTimersByTimeAsync(4_000 + ANSWER_GRACE_MS - 100);
    expect(chunk.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(200);
    expect(chunk.signal.aborted).toBe(true);
    expect(log.lines.join("\n")).toContain("finishing the upload chunk on its way (about 4 s)");
    chunk.dispose();
  });

  it("gives a registry that never answered a chunk before one second, and a slow link at most the cap", async () => {
    vi.useFakeTimers();
    const stop = new AbortController();
    const first = chunkBody(Buffer.alloc(SLICE), stop.signal, new Link(), capturingLogger().logger);
    first.body().read();
    const slow = new Link();
    slow.rate = 1 / 1000; // a byte a second
    const crawling = chunkBody(Buffer.alloc(SLICE), stop.signal, slow, capturingLogger().logger);
    crawling.body().read();
    stop.abort(new Error("stopped"));
    await vi.advanceTimersByTimeAsync(ANSWER_GRACE_MS + 1);
    expect(first.signal.aborted).toBe(true);
    expect(crawling.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(MAX_DRAIN_MS);
    expect(crawling.signal.aborted).toBe(true);
    first.dispose();
    crawling.dispose();
  });
});
