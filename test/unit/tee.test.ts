import { PassThrough, Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { Tee } from "../../src/util/tee.js";

/** A writer that takes each chunk only after `ms`, like `docker load`'s request body on a busy engine. */
function slowWriter(ms: number): { writer: Writable; bytes: () => number } {
  let bytes = 0;
  const writer = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      setTimeout(callback, ms);
    },
  });
  return { writer, bytes: () => bytes };
}

describe("Tee", () => {
  it("leaves a slow writer to take its last bytes after the tee has finished (no destroy on a normal end)", async () => {
    const fast = new PassThrough();
    fast.resume();
    // The slow writer accepts a write at once (under its mark) and takes it 20 ms later: the tee
    // is done with its own work long before the slow writer has finished.
    const slow = slowWriter(20);
    const slowFinished = new Promise<boolean>((resolve) => {
      slow.writer.once("finish", () => resolve(true));
      slow.writer.once("close", () => resolve(slow.writer.writableFinished));
    });
    const tee = new Tee([fast, slow.writer]);
    const data = Buffer.alloc(3000, 7);
    for (let i = 0; i < 3; i++) tee.write(data.subarray(i * 1000, (i + 1) * 1000));
    tee.end();
    expect(await slowFinished).toBe(true);
    expect(slow.bytes()).toBe(data.length);
  });

  it("destroys every writer when the tee fails", async () => {
    const a = new PassThrough();
    const b = new PassThrough();
    const tee = new Tee([a, b]);
    tee.on("error", () => undefined);
    tee.destroy(new Error("cut"));
    await new Promise((resolve) => setImmediate(resolve));
    expect(a.destroyed).toBe(true);
    expect(b.destroyed).toBe(true);
  });

  it("destroyed with a cause by its reader and heard by no one, it does not end the process; its writers carry the cause", async () => {
    const a = new PassThrough();
    const heard: unknown[] = [];
    a.on("error", (err) => heard.push(err));
    // No listener on the tee: the zip reader destroys it on an interrupt (issue 22's Ctrl-C).
    new Tee([a]).destroy(new Error("interrupted by SIGINT"));
    await new Promise((resolve) => setImmediate(resolve));
    expect(a.destroyed).toBe(true);
    expect(heard).toEqual([new Error("interrupted by SIGINT")]);
  });
});
