import { Writable } from "node:stream";
import zlib from "node:zlib";
import { DAMAGED_HINT, DamagedInputError } from "../errors.js";
import { drainedOrClosed } from "../util/tee.js";
import type { GrowingFile } from "./growing-file.js";
import { zipIncomplete } from "./zip-vetting.js";

/** The streaming zip reader's two moving parts (zip-stream.ts): where it is, and what passed. */

export const CHUNK = 1 << 20;
/**
 * The zip-bomb bound while sizes are still unknown (the descriptor comes after the data): an
 * entry may not inflate past this many times the bytes it has consumed, plus a floor. A tarball
 * (gzip already) barely deflates further, and text rarely beyond 10:1.
 */
const MAX_RATIO = 64;
const RATIO_FLOOR = 64 << 20;

/** Reads the zip at increasing offsets, with a little look-ahead for headers. */
export class Cursor {
  private buffer: Buffer = Buffer.alloc(0);
  /** File offset of `buffer[0]`. */
  position = 0;

  constructor(
    private readonly file: GrowingFile,
    private readonly label: string,
    private readonly onPosition: ((bytes: number) => void) | undefined,
  ) {}

  /** The next `n` bytes, without moving past them. */
  async need(n: number): Promise<Buffer> {
    while (this.buffer.length < n) {
      const more = await this.file.read(this.position + this.buffer.length);
      if (more.length === 0) throw zipIncomplete(this.label, `it ends at byte ${this.file.size}`);
      this.buffer = this.buffer.length === 0 ? more : Buffer.concat([this.buffer, more]);
    }
    return this.buffer.subarray(0, n);
  }

  async take(n: number): Promise<Buffer> {
    const bytes = Buffer.from(await this.need(n));
    this.skip(n);
    return bytes;
  }

  /** Whatever comes next (at least one byte): data is streamed in the sizes it is read. */
  async chunk(): Promise<Buffer> {
    if (this.buffer.length === 0) await this.need(1);
    return this.buffer;
  }

  skip(n: number): void {
    this.buffer = this.buffer.subarray(n);
    this.position += n;
    this.onPosition?.(this.position);
  }
}

/**
 * Counts and checksums an entry's inflated bytes on their way to its consumer, whose pace it
 * keeps. A consumer that fails is dropped (its owner reports its own verdict); the entry is still
 * read to its end, so the zip goes on.
 */
export class Meter extends Writable {
  crc = 0;
  bytes = 0;
  private consumed: (() => number) | undefined;

  constructor(
    private readonly consumer: Writable | undefined,
    private readonly zip: string,
    private readonly name: string,
  ) {
    super({ highWaterMark: CHUNK });
  }

  limitBy(consumed: () => number): void {
    this.consumed = consumed;
  }

  take(chunk: Buffer): Promise<void> {
    return new Promise((resolve, reject) =>
      this.write(chunk, (err) => (err ? reject(err) : resolve())),
    );
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.end();
      this.once("finish", resolve);
      this.once("error", reject);
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error) => void): void {
    this.crc = zlib.crc32(chunk, this.crc);
    this.bytes += chunk.length;
    if (this.consumed && this.bytes > RATIO_FLOOR + MAX_RATIO * this.consumed()) {
      return callback(
        new DamagedInputError(
          `${this.zip}: entry ${JSON.stringify(this.name)} inflates to more than ${MAX_RATIO} times its size (a zip bomb?)`,
          { hint: DAMAGED_HINT },
        ),
      );
    }
    const consumer = this.consumer;
    if (!consumer || consumer.destroyed || consumer.writableEnded) return callback();
    if (consumer.write(chunk)) return callback();
    void drainedOrClosed(consumer).then(() => callback());
  }

  override _final(callback: (err?: Error) => void): void {
    const consumer = this.consumer;
    if (!consumer || consumer.destroyed) return callback();
    consumer.end();
    callback();
  }
}
