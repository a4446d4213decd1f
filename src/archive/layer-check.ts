import { createHash } from "node:crypto";
import { PassThrough, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import tar from "tar-stream";
import { describeError } from "../errors.js";

/**
 * What a layer of a `docker save` tarball really holds. A config's `rootfs.diff_ids` names each
 * layer by the sha256 of its uncompressed tar; Docker's containerd image store saves layers as
 * they were pulled, so a layer file may be that tar, or the tar gzip- (or zstd-) compressed. A
 * check decompresses what needs it, hashes the tar and reads it as a tar (headers only), so that
 * a layer that does not match its diff-id, or is no tar at all, is refused before any manifest
 * names it: `docker load` would refuse both, and a registry would serve them to every pull.
 */

export type LayerCompression = "none" | "gzip" | "zstd";

export interface LayerVerdict {
  compression: LayerCompression;
  /** `sha256:<hex>` of the uncompressed bytes: the diff-id they amount to. */
  diffId?: string;
  /** Why the bytes are not a usable layer (not a tar, damaged compression, not checkable). */
  problem?: string;
  /** A problem of this Node.js rather than of the bytes (zstd with no decompressor). */
  unsupported?: boolean;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const SNIFF_BYTES = ZSTD_MAGIC.length;
const CHUNK = 1 << 20;

/** Node.js 22.15 and later decompress zstd; Node 20 does not. */
type ZstdZlib = typeof zlib & { createZstdDecompress?: () => Transform };

function startsWith(bytes: Buffer, magic: number[]): boolean {
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b);
}

/** A layer's compression, from its first bytes. */
export function compressionOf(head: Buffer): LayerCompression {
  if (startsWith(head, ZSTD_MAGIC)) return "zstd";
  if (startsWith(head, GZIP_MAGIC)) return "gzip";
  return "none";
}

/** Hashes what passes on its way to the tar reader. */
class Hasher extends Transform {
  readonly hash = createHash("sha256");

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    callback(null, chunk);
  }
}

/**
 * Fed a layer's stored bytes in order ({@link write}, which resolves when it is ready for more),
 * it gives its verdict at {@link end}. It never throws at the writer: what is wrong is in the
 * verdict, and the caller words it.
 */
export class LayerCheck {
  private readonly input = new PassThrough({ highWaterMark: CHUNK }).on("error", () => undefined);
  private head: Buffer[] = [];
  private headBytes = 0;
  private started: Promise<LayerVerdict> | undefined;
  private kind: LayerCompression | undefined;
  /** An uncompressed layer is hashed as it is written: one stream stage fewer on the hot path. */
  private readonly rawHash = createHash("sha256");

  /** The compression, once the first bytes have been seen. */
  get compression(): LayerCompression | undefined {
    return this.kind;
  }

  /** A zstd layer this Node.js cannot decompress: known from the first bytes on. */
  get unsupported(): boolean {
    return this.kind === "zstd" && !(zlib as ZstdZlib).createZstdDecompress;
  }

  async write(chunk: Buffer): Promise<void> {
    if (!this.started) {
      this.head.push(chunk);
      this.headBytes += chunk.length;
      if (this.headBytes < SNIFF_BYTES) return;
      this.start();
      return;
    }
    await this.feed(chunk);
  }

  async end(): Promise<LayerVerdict> {
    if (!this.started) this.start();
    this.input.end();
    return this.started as Promise<LayerVerdict>;
  }

  private start(): void {
    const head = Buffer.concat(this.head);
    this.head = [];
    const compression = compressionOf(head);
    this.kind = compression;
    if (this.unsupported) {
      this.input.resume();
      this.started = Promise.resolve({
        compression,
        problem: `is zstd-compressed, which this Node.js (${process.version}) cannot decompress to check it against its diff-id; Node.js 22.15 or later can`,
        unsupported: true,
      });
      return;
    }
    this.started = this.verdict(compression);
    if (compression === "none") this.rawHash.update(head);
    this.input.write(head);
  }

  private async feed(chunk: Buffer): Promise<void> {
    // Once the verdict is in (a failure ends the pipeline), the rest is dropped.
    if (this.input.destroyed) return;
    if (this.kind === "none") this.rawHash.update(chunk);
    if (this.input.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.input.off("drain", done);
        this.input.off("close", done);
        resolve();
      };
      this.input.on("drain", done);
      this.input.on("close", done);
    });
  }

  private async verdict(compression: LayerCompression): Promise<LayerVerdict> {
    const hasher = compression === "none" ? undefined : new Hasher({ highWaterMark: CHUNK });
    const reader = tar.extract();
    reader.on("entry", (_header, body, next) => {
      body.on("end", next);
      body.resume();
    });
    const decompress =
      compression === "gzip"
        ? [zlib.createGunzip({ chunkSize: CHUNK })]
        : compression === "zstd"
          ? [((zlib as ZstdZlib).createZstdDecompress as () => Transform)()]
          : [];
    try {
      await pipeline([this.input, ...decompress, ...(hasher ? [hasher] : []), reader]);
    } catch (err) {
      // Keep taking (and dropping) bytes, so a writer waiting on back-pressure is not stuck.
      this.input.resume();
      return { compression, problem: problemOf(err, compression) };
    }
    const hash = hasher ? hasher.hash : this.rawHash;
    return { compression, diffId: `sha256:${hash.digest("hex")}` };
  }
}

function problemOf(err: unknown, compression: LayerCompression): string {
  const message = describeError(err);
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code.startsWith("Z_")) {
    return `is damaged (${compression}: ${message})`;
  }
  if (/unexpected end/i.test(message)) return "is cut short (its tar ends mid-file)";
  return `is not a tar (${message})`;
}
