import { Writable } from "node:stream";

/**
 * One stream of bytes to several writers at the pace of the slowest. A writer that fails or
 * closes is left out from then on, and the others go on: each writer's owner reports its own
 * verdict (the check of a tarball must see every byte even when the engine loading it gave up).
 */
export class Tee extends Writable {
  constructor(private readonly targets: Writable[]) {
    super({ highWaterMark: 1 << 20 });
    for (const target of targets) target.on("error", () => undefined);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    const waits = this.targets
      .filter((t) => !t.destroyed && !t.writableEnded)
      .filter((t) => !t.write(chunk))
      .map(
        (t) =>
          new Promise<void>((resolve) => {
            const done = (): void => {
              t.off("drain", done);
              t.off("close", done);
              resolve();
            };
            t.on("drain", done);
            t.on("close", done);
          }),
      );
    if (waits.length === 0) return callback();
    void Promise.all(waits).then(() => callback());
  }

  override _final(callback: () => void): void {
    for (const target of this.targets) if (!target.destroyed) target.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    for (const target of this.targets)
      if (!target.writableFinished) target.destroy(error ?? undefined);
    callback(error);
  }
}
