import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type Unzipper from "unzipper";
import { SyncError, describeError, errorCode } from "../errors.js";
import { lazyRequire } from "../lazy.js";
import type { GrowingFile } from "./growing-file.js";
import { CHUNK, Cursor, Meter } from "./zip-cursor.js";
import {
  LOCAL_HEADER_SIZE,
  METHOD_DEFLATE,
  entryRefused,
  vetEntries,
  zipIncomplete,
  type VettedEntry,
} from "./zip-vetting.js";

/**
 * Reads a zip front to back while it is still arriving: GitHub writes artifact zips as a stream
 * (each entry's local header, its deflated data, then a data descriptor with its CRC and sizes;
 * ZIP64 past 4 GiB), so every entry can be inflated and checked as its bytes come in, without
 * waiting for the central directory at the end. The directory stays the authority: once the file
 * is complete it is read and vetted exactly as `prepare` vets it (zip-vetting.ts), and every
 * entry read from the stream must agree with it (offset, name, method, CRC, sizes), so a zip whose
 * local records say one thing and whose directory says another is refused whole.
 *
 * Where an entry's data ends is known from the data itself: deflate ends itself (zlib reports
 * the input it consumed, and the rest belongs to what follows). A stored entry with a data
 * descriptor has no such end, so it is located through the central directory, which means
 * waiting for the download to finish.
 */

export interface LocalEntry {
  /** The name as its local header gives it. */
  name: string;
  /** Offset of its local header. */
  offset: number;
  /** Offset of its data, right after the local header. */
  dataStart: number;
  flags: number;
  method: number;
}

export interface StreamedEntry extends LocalEntry {
  /** CRC-32 and sizes as the entry declares them (descriptor or local header). */
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
}

/** What an entry says of itself: in its data descriptor, or in its local header. */
interface Declared {
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
}

interface Directory {
  entries: VettedEntry[];
  /** Where the central directory starts: right after the last entry, in a zip as written. */
  start: number;
}

export interface ZipStreamOptions {
  file: GrowingFile;
  /** The zip's path, for messages. */
  label: string;
  /** A consumer of the entry's inflated bytes, or `undefined`: then it is only inflated and checked. */
  onEntry: (entry: LocalEntry) => Writable | undefined | Promise<Writable | undefined>;
  /**
   * The entry's data is through, checked against what it declares: `problem` when its CRC or size
   * is not what it says (the zip around it is intact, so reading goes on).
   */
  onEntryEnd?: (entry: StreamedEntry, problem?: SyncError) => void | Promise<void>;
  /** Bytes of the zip read so far. */
  onPosition?: (bytes: number) => void;
  signal?: AbortSignal | undefined;
}

export interface ZipStreamResult {
  entries: StreamedEntry[];
  /** The central directory, vetted. */
  directory: VettedEntry[];
}

const unzipper = lazyRequire<typeof Unzipper>("unzipper");

const LOCAL_SIGNATURE = 0x04034b50;
const DESCRIPTOR_SIGNATURE = 0x08074b50;
/** What may follow an entry: another entry, the central directory, or (empty zip) its end. */
const NEXT_SIGNATURES = new Set([LOCAL_SIGNATURE, 0x02014b50, 0x06054b50, 0x06064b50]);
const FLAG_ENCRYPTED = 0x1;
const FLAG_DESCRIPTOR = 0x8;
const METHOD_STORE = 0;
const ZIP64_EXTRA = 0x0001;
const U32 = 0xffffffff;

/** Reads every entry in order, then checks them against the central directory (see above). */
export async function readZipStream(options: ZipStreamOptions): Promise<ZipStreamResult> {
  return new ZipStreamReader(options).read();
}

class ZipStreamReader {
  private readonly cursor: Cursor;
  private directoryRead: Promise<Directory> | undefined;

  constructor(private readonly options: ZipStreamOptions) {
    this.cursor = new Cursor(options.file, options.label, options.onPosition);
  }

  async read(): Promise<ZipStreamResult> {
    const entries: StreamedEntry[] = [];
    const names = new Set<string>();
    for (;;) {
      this.options.signal?.throwIfAborted();
      const signature = (await this.cursor.need(4)).readUInt32LE(0);
      if (signature !== LOCAL_SIGNATURE) {
        if (NEXT_SIGNATURES.has(signature)) break;
        throw zipIncomplete(
          this.options.label,
          `no entry header at byte ${this.cursor.position} (it holds ${signature.toString(16)})`,
        );
      }
      const entry = await this.localHeader();
      if (names.has(entry.name))
        throw entryRefused(this.options.label, entry.name, "appears twice");
      names.add(entry.name);
      entries.push(await this.entryData(entry));
    }
    const end = this.cursor.position;
    const directory = await this.directory();
    this.crossCheck(entries, directory, end);
    return { entries, directory: directory.entries };
  }

  private async localHeader(): Promise<LocalEntry & { header: Declared; zip64: boolean }> {
    const offset = this.cursor.position;
    const fixed = await this.cursor.take(LOCAL_HEADER_SIZE);
    const flags = fixed.readUInt16LE(6);
    const method = fixed.readUInt16LE(8);
    const nameLength = fixed.readUInt16LE(26);
    const extraLength = fixed.readUInt16LE(28);
    const variable = await this.cursor.take(nameLength + extraLength);
    const name = variable.subarray(0, nameLength).toString("utf8");
    const header: Declared = {
      crc32: fixed.readUInt32LE(14),
      compressedSize: fixed.readUInt32LE(18),
      uncompressedSize: fixed.readUInt32LE(22),
    };
    const zip64 = readZip64(variable.subarray(nameLength), header);
    if (flags & FLAG_ENCRYPTED) throw entryRefused(this.options.label, name, "is encrypted");
    if (method !== METHOD_STORE && method !== METHOD_DEFLATE) {
      throw entryRefused(this.options.label, name, `uses compression method ${method}`);
    }
    const dataStart = this.cursor.position;
    return { name, offset, dataStart, flags, method, header, zip64 };
  }

  private async entryData(
    entry: LocalEntry & { header: Declared; zip64: boolean },
  ): Promise<StreamedEntry> {
    const local: LocalEntry = {
      name: entry.name,
      offset: entry.offset,
      dataStart: entry.dataStart,
      flags: entry.flags,
      method: entry.method,
    };
    const consumer = await this.options.onEntry(local);
    const meter = new Meter(consumer, this.options.label, entry.name);
    const described = (entry.flags & FLAG_DESCRIPTOR) !== 0;
    let consumed: number;
    try {
      if (entry.method === METHOD_DEFLATE) consumed = await this.inflate(meter);
      else {
        const size = described ? await this.storedSize(entry.offset) : entry.header.compressedSize;
        consumed = await this.copy(meter, size);
      }
    } catch (err) {
      if (consumer && !consumer.destroyed) {
        // The failure is told by what this throws; the consumer's own 'error' is no news.
        consumer.on("error", () => undefined);
        consumer.destroy(err as Error);
      }
      throw this.options.signal?.aborted ? err : dataFailure(this.options.label, entry.name, err);
    }
    const declared = described
      ? await this.descriptor(consumed, meter.bytes, entry.zip64)
      : entry.header;
    const result: StreamedEntry = {
      ...local,
      crc32: declared.crc32,
      uncompressedSize: declared.uncompressedSize,
      compressedSize: consumed,
    };
    const problem =
      consumed !== declared.compressedSize || meter.bytes !== declared.uncompressedSize
        ? entryRefused(
            this.options.label,
            entry.name,
            `is damaged (${meter.bytes} bytes from ${consumed}, it declares ${declared.uncompressedSize} from ${declared.compressedSize})`,
          )
        : meter.crc !== declared.crc32
          ? entryRefused(
              this.options.label,
              entry.name,
              `is damaged (CRC-32 ${hex(meter.crc)}, it declares ${hex(declared.crc32)})`,
            )
          : undefined;
    await this.options.onEntryEnd?.(result, problem);
    return result;
  }

  /** Inflates from the cursor until the deflate stream ends; returns the bytes it consumed. */
  private async inflate(meter: Meter): Promise<number> {
    const inflate = zlib.createInflateRaw({ chunkSize: CHUNK });
    meter.limitBy(() => inflate.bytesWritten);
    const flowing = pipeline(inflate, meter);
    flowing.catch(() => undefined);
    let consumed = 0;
    try {
      for (;;) {
        const chunk = await this.cursor.chunk();
        const before = inflate.bytesWritten;
        await new Promise<void>((resolve, reject) => {
          inflate.write(chunk, (err) => (err ? reject(err) : resolve()));
        });
        const used = inflate.bytesWritten - before;
        this.cursor.skip(used);
        consumed += used;
        // zlib takes all it is given until its stream ends: what it left is the next record.
        if (used < chunk.length) break;
      }
      inflate.end();
    } catch (err) {
      inflate.destroy();
      throw err;
    }
    await flowing;
    return consumed;
  }

  private async copy(meter: Meter, size: number): Promise<number> {
    for (let left = size; left > 0;) {
      const chunk = (await this.cursor.chunk()).subarray(0, Math.min(CHUNK, left));
      this.cursor.skip(chunk.length);
      left -= chunk.length;
      await meter.take(chunk);
    }
    await meter.close();
    return size;
  }

  /** A stored entry with a descriptor: its size only the central directory tells. */
  private async storedSize(offset: number): Promise<number> {
    const { entries } = await this.directory();
    const record = entries.find((e) => e.record.offsetToLocalFileHeader === offset);
    if (!record) {
      throw zipIncomplete(
        this.options.label,
        `no directory record for the entry at byte ${offset}`,
      );
    }
    return record.record.compressedSize;
  }

  /**
   * The data descriptor after an entry: an optional signature, the CRC, then both sizes in 4
   * bytes or, for ZIP64, 8 (which the local header need not announce: the 4-byte reading is
   * taken when its sizes match what was read and a record follows it).
   */
  private async descriptor(consumed: number, produced: number, zip64: boolean): Promise<Declared> {
    const head = await this.cursor.need(4);
    if (head.readUInt32LE(0) === DESCRIPTOR_SIGNATURE) this.cursor.skip(4);
    const fields = await this.cursor.need(zip64 ? 20 : 16);
    const crc32 = fields.readUInt32LE(0);
    const short = {
      compressedSize: fields.readUInt32LE(4),
      uncompressedSize: fields.readUInt32LE(8),
    };
    const shortFits =
      !zip64 &&
      short.compressedSize === consumed % 2 ** 32 &&
      short.uncompressedSize === produced % 2 ** 32 &&
      NEXT_SIGNATURES.has(fields.readUInt32LE(12));
    if (shortFits) {
      this.cursor.skip(12);
      return { crc32, ...short };
    }
    const long = await this.cursor.need(20);
    this.cursor.skip(20);
    return {
      crc32,
      compressedSize: Number(long.readBigUInt64LE(4)),
      uncompressedSize: Number(long.readBigUInt64LE(12)),
    };
  }

  /** The central directory of the complete file, vetted as prepare vets it. */
  private directory(): Promise<Directory> {
    this.directoryRead ??= (async () => {
      const { file, label } = this.options;
      await file.finished();
      let directory;
      try {
        directory = await unzipper().Open.custom({
          size: () => Promise.resolve(file.size),
          stream: (offset, length) => file.stream(offset, length ? offset + length : undefined),
        });
      } catch (err) {
        const reason =
          describeError(err) === "FILE_ENDED"
            ? "no end-of-central-directory record"
            : describeError(err);
        throw zipIncomplete(label, reason, err);
      }
      return {
        entries: vetEntries(label, directory, file.size),
        start: directory.offsetToStartOfCentralDirectory,
      };
    })();
    return this.directoryRead;
  }

  /** Every entry read from the stream is one the directory lists, with the same facts. */
  private crossCheck(entries: StreamedEntry[], directory: Directory, end: number): void {
    const { label } = this.options;
    const byOffset = new Map(
      directory.entries.map((e) => [e.record.offsetToLocalFileHeader, e.record]),
    );
    for (const entry of entries) {
      const record = byOffset.get(entry.offset);
      const same =
        record !== undefined &&
        record.path === entry.name &&
        record.compressionMethod === entry.method &&
        record.crc32 === entry.crc32 &&
        record.compressedSize === entry.compressedSize &&
        record.uncompressedSize === entry.uncompressedSize;
      if (!same) {
        throw zipIncomplete(
          label,
          `entry ${JSON.stringify(entry.name)} at byte ${entry.offset} is not what the central directory lists`,
        );
      }
    }
    if (directory.entries.length !== entries.length) {
      throw zipIncomplete(
        label,
        `the central directory lists ${directory.entries.length} entries, the zip holds ${entries.length}`,
      );
    }
    if (directory.start !== end) {
      throw zipIncomplete(label, `its central directory is at byte ${directory.start}, not ${end}`);
    }
  }
}

/** ZIP64 sizes in a local header's extra field, where the 32-bit fields say 0xFFFFFFFF. */
function readZip64(extra: Buffer, header: Declared): boolean {
  for (let at = 0; at + 4 <= extra.length;) {
    const id = extra.readUInt16LE(at);
    const size = extra.readUInt16LE(at + 2);
    if (id === ZIP64_EXTRA) {
      let field = at + 4;
      const next = (): number | undefined => {
        if (field + 8 > at + 4 + size) return undefined;
        const value = Number(extra.readBigUInt64LE(field));
        field += 8;
        return value;
      };
      if (header.uncompressedSize === U32) header.uncompressedSize = next() ?? U32;
      if (header.compressedSize === U32) header.compressedSize = next() ?? U32;
      return true;
    }
    at += 4 + size;
  }
  return false;
}

/**
 * An entry's inflated bytes read again from the file (the streaming sync's second pass over a
 * tarball whose upload a cut ended): its data range, inflated when it is deflated.
 */
export function openEntry(file: GrowingFile, entry: StreamedEntry): Readable {
  const data = file.stream(entry.dataStart, entry.dataStart + entry.compressedSize);
  if (entry.method !== METHOD_DEFLATE) return data;
  const inflate = zlib.createInflateRaw({ chunkSize: CHUNK });
  data.on("error", (err) => inflate.destroy(err));
  return data.pipe(inflate);
}

function dataFailure(zip: string, name: string, err: unknown): SyncError {
  if (err instanceof SyncError) return err;
  if (errorCode(err)?.startsWith("Z_")) {
    return entryRefused(zip, name, `is damaged (${describeError(err)})`, err);
  }
  return new SyncError(`cannot read ${JSON.stringify(name)} from ${zip} (${describeError(err)})`, {
    hint: "rerun; the partial download is kept",
    cause: err,
  });
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}
