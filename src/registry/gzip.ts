import { availableParallelism } from "node:os";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { KiB, MiB } from "../util/bytes.js";

/**
 * Deterministic, parallel gzip (the scheme of pigz and Go's pgzip): the input is cut into
 * fixed-size blocks, each block is raw-deflated on its own in libuv's thread pool with the
 * previous block's last 32 KiB as dictionary (so the ratio barely suffers) and ended with a
 * sync flush, and the pieces are joined behind a fixed gzip header. Block boundaries depend on
 * the bytes alone, never on how they were chunked on the way in, and the header carries no
 * name or mtime, so the same layer tar always gives the same compressed bytes — the same digest
 * on every push, which is what lets a registry recognise a layer it already holds.
 */

export interface GzipOptions {
  /** zlib level 1–9; default 6, gzip's own default. */
  level?: number;
  /** Bytes per independently compressed block; part of the output format, so keep it fixed. */
  blockSize?: number;
  /** Blocks compressed at once; default: the CPU count, at least 2 and at most 4 (the pool size). */
  parallel?: number;
}

export interface GzipTotals {
  /** Uncompressed bytes read so far. */
  size: number;
}

export const DEFAULT_GZIP_LEVEL = 6;
export const DEFAULT_BLOCK_SIZE = MiB;
/** Deflate's window: what a block may refer back to in the one before. */
const WINDOW = 32 * KiB;
/** Fixed header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown". */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);
/** A final, empty fixed-Huffman deflate block: ends the stream after the sync-flushed blocks. */
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);
/** Samples of a block tried at level 1 to decide whether it compresses at all. */
const SAMPLE = 4 * KiB;
const INCOMPRESSIBLE_RATIO = 0.97;

const deflateRaw = promisify(
  (buffer: Buffer, options: zlib.ZlibOptions, callback: (e: Error | null, r: Buffer) => void) =>
    zlib.deflateRaw(buffer, options, callback),
);

/**
 * Compresses `source` to a gzip stream, yielding output pieces in order. `totals` is filled in
 * as the input is read, for progress and for checking the uncompressed size afterwards.
 */
export async function* deterministicGzip(
  source: AsyncIterable<Uint8Array>,
  options: GzipOptions = {},
  totals: GzipTotals = { size: 0 },
): AsyncGenerator<Buffer> {
  const level = options.level ?? DEFAULT_GZIP_LEVEL;
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const parallel = options.parallel ?? Math.max(2, Math.min(4, availableParallelism()));
  let crc = 0;
  let size = 0;
  let previous: Buffer | undefined;
  const inFlight: Array<{ job: Promise<Buffer>; block: Buffer }> = [];
  // Input blocks are reused, not allocated one per MiB: V8 gives a Buffer's memory back only at
  // a major collection, so a fresh block each time piled up hundreds of MiB of them (B4). A block
  // is free again once its own output is out and the next block, which reads its last 32 KiB as
  // dictionary, is compressed too: at most `parallel` + 2 of them exist.
  const free: Buffer[] = [];
  let done: Buffer | undefined;
  const output = async (): Promise<Buffer> => {
    const { job, block } = inFlight.shift() as { job: Promise<Buffer>; block: Buffer };
    const compressed = await job;
    if (done) free.push(done);
    done = block;
    return compressed;
  };
  const start = (block: Buffer): void => {
    crc = zlib.crc32(block, crc);
    size += block.length;
    const dictionary = previous
      ? previous.subarray(Math.max(0, previous.length - WINDOW))
      : undefined;
    const job = compressBlock(block, level, dictionary);
    // Errors surface when the job is awaited in order; this only keeps Node from calling them unhandled.
    job.catch(() => undefined);
    inFlight.push({ job, block });
    previous = block;
  };

  yield GZIP_HEADER;
  // The block being filled: the input is copied in (the source may reuse its buffers, and the
  // block outlives this iteration).
  let current: Buffer | undefined;
  let filled = 0;
  for await (const input of source) {
    let chunk = Buffer.isBuffer(input)
      ? input
      : Buffer.from(input.buffer, input.byteOffset, input.length);
    totals.size += chunk.length;
    while (chunk.length > 0) {
      current ??= free.pop() ?? Buffer.allocUnsafeSlow(blockSize);
      const copied = chunk.copy(current, filled);
      filled += copied;
      chunk = chunk.subarray(copied);
      if (filled < blockSize) break;
      start(current);
      current = undefined;
      filled = 0;
      while (inFlight.length >= parallel) yield await output();
    }
  }
  if (current && filled > 0) start(current.subarray(0, filled));
  while (inFlight.length > 0) yield await output();
  yield FINAL_BLOCK;
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(size % 2 ** 32, 4);
  yield trailer;
}

/**
 * zlib spends as long failing to shrink random bytes (already-compressed files in a layer) as
 * it does compressing text, so a block whose samples do not shrink at level 1 is stored as is:
 * cheap, and still deterministic since the decision depends on the bytes alone.
 */
async function compressBlock(
  block: Buffer,
  level: number,
  dictionary: Buffer | undefined,
): Promise<Buffer> {
  const chosen = level > 0 && (await incompressible(block)) ? 0 : level;
  return deflateWhole(block, {
    level: chosen,
    // One output buffer for the whole block: with zlib's default 16 KiB, Node would hop to the
    // thread pool and back once per 16 KiB, which costs more than the compressing.
    chunkSize: outputBound(block.length),
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    ...(dictionary && chosen > 0 ? { dictionary } : {}),
  });
}

/**
 * `zlib.deflateRaw` without its final copy: the one piece a block comes out as (the output
 * buffer holds a whole block) is handed on as it is, instead of being copied into another.
 */
function deflateWhole(block: Buffer, options: zlib.ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const deflate = zlib.createDeflateRaw(options);
    const pieces: Buffer[] = [];
    deflate.on("data", (piece: Buffer) => pieces.push(piece));
    deflate.once("error", reject);
    deflate.once("end", () =>
      resolve(pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces)),
    );
    deflate.end(block);
  });
}

/** deflate's worst case: stored blocks (5 bytes per 64 KiB) plus the flush marker, with room. */
function outputBound(length: number): number {
  return length + Math.ceil(length / 16384) * 5 + 1024;
}

async function incompressible(block: Buffer): Promise<boolean> {
  if (block.length < SAMPLE * 3) return false;
  // Start, middle and end in one call: one hop to the thread pool instead of three.
  const middle = Math.floor((block.length - SAMPLE) / 2);
  const sample = Buffer.concat([
    block.subarray(0, SAMPLE),
    block.subarray(middle, middle + SAMPLE),
    block.subarray(block.length - SAMPLE),
  ]);
  const compressed = await deflateRaw(sample, { level: 1, chunkSize: outputBound(sample.length) });
  return compressed.length >= sample.length * INCOMPRESSIBLE_RATIO;
}
