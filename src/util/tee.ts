import { Writable } from "node:stream";

/**
 * Resolves once `target` wants more (`drain`) or can take no more (`close`): what a writer that
 * got `false` from `write()` waits for before it goes on.
 */
export function drainedOrClosed(target: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      target.off("drain", done);
      target.off("close", done);
      resolve();
    };
    target.on("drain", done);
    target.on("close", done);
  });
}

/**
 * One stream of bytes to several writers at the pace of the slowest. A writer that fails or
 * closes is left out from then on, and the others go on: each writer's owner reports its own
 * verdict (the check of a tarball must see every byte even when the engine loading it gave up).
 */
export class Tee extends Writable {
  constructor(private readonly targets: Writable[]) {
    super({ highWaterMark: 1 << 20 });
    for (const target of targets) target.on("error", () => undefined);
    // Its own failure (a reader that destroys it with the cause: an interrupt, a damaged entry)
    // goes to each writer, whose owner reports it; unheard here, it would end the process.
    this.on("error", () => undefined);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    const waits = this.targets
      .filter((t) => !t.destroyed && !t.writableEnded)
      .filter((t) => !t.write(chunk))
      .map(drainedOrClosed);
    if (waits.length === 0) return callback();
    void Promise.all(waits).then(() => callback());
  }

  /** Ends every writer and finishes once each has taken all it was given (or closed). */
  override _final(callback: () => void): void {
    const open = this.targets.filter((t) => !t.destroyed && !t.writableFinished);
    for (const target of open) target.end();
    void Promise.all(
      open.map(
        (t) =>
          new Promise<void>((resolve) => {
            if (t.writableFinished || t.destroyed) return resolve();
            t.once("finish", () => resolve());
            t.once("close", () => resolve());
          }),
      ),
    ).then(() => callback());
  }

  /**
   * Destroys the writers only when the tee itself failed or was cut short. After a normal finish
   * (Writable destroys itself then), a writer still handing its last bytes to a slow reader, such
   * as `docker load`'s request body, must be left to finish: destroying it lost the end of the
   * tarball and left the engine waiting for it.
   */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (error || !this.writableFinished) {
      for (const target of this.targets)
        if (!target.writableFinished) target.destroy(error ?? undefined);
    }
    callback(error);
  }
}
