import { Transform, type TransformCallback } from "node:stream";
import zlib from "node:zlib";
import {
  DamagedInputError,
  REDOWNLOAD_HINT,
  SyncError,
  describeError,
  errorCode,
} from "../errors.js";

const GZIP_MAGIC = [0x1f, 0x8b] as const;
/** Gunzip output window: large chunks keep per-chunk stream overhead out of the profile. */
export const GUNZIP_CHUNK = 1 << 20;

/** Raised by {@link GzipMagicCheck}; turned into a one-line SyncError by {@link gzipFailure}. */
export class NotGzipError extends Error {
  constructor() {
    super("not gzip");
    this.name = "NotGzipError";
  }
}

/**
 * zlib's own message for a file that is not gzip ("incorrect header check") says little to an
 * operator, and an empty file would pass as "unexpected end of file". Checking the two magic
 * bytes first separates "not gzip at all" from "gzip, but cut short".
 */
export class GzipMagicCheck extends Transform {
  private seen = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (let i = 0; this.seen < GZIP_MAGIC.length && i < chunk.length; i++, this.seen++) {
      if (chunk[i] !== GZIP_MAGIC[this.seen]) return callback(new NotGzipError());
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback(this.seen < GZIP_MAGIC.length ? new NotGzipError() : null);
  }
}

/** A gunzip that refuses non-gzip input up front; zlib itself checks the trailer's CRC and size. */
export function checkedGunzip(): [GzipMagicCheck, zlib.Gunzip] {
  return [new GzipMagicCheck(), zlib.createGunzip({ chunkSize: GUNZIP_CHUNK })];
}

/** The operator-facing error for a gzip-level failure, or undefined when `err` is something else. */
export function gzipFailure(file: string, err: unknown): SyncError | undefined {
  if (err instanceof NotGzipError) {
    return new DamagedInputError(`${file} is not gzip`, { hint: REDOWNLOAD_HINT, cause: err });
  }
  const code = errorCode(err);
  if (code === "Z_BUF_ERROR" || describeError(err) === "unexpected end of file") {
    return new DamagedInputError(`${file} is cut short (incomplete gzip stream)`, {
      hint: REDOWNLOAD_HINT,
      cause: err,
    });
  }
  if (code?.startsWith("Z_")) {
    return new DamagedInputError(`${file} is damaged (gzip: ${describeError(err)})`, {
      hint: REDOWNLOAD_HINT,
      cause: err,
    });
  }
  return undefined;
}
