import zlib from "node:zlib";

export type Crc32 = (data: Uint8Array, previous?: number) => number;

/**
 * Node ≥ 20.15 and ≥ 22.2 carry zlib's own CRC-32 (several GB/s); `engines` still admits older
 * 20.x releases, which get a table-driven fallback that is slower but gives the same values.
 */
export const crc32: Crc32 = resolveCrc32();

function resolveCrc32(): Crc32 {
  const native: unknown = (zlib as { crc32?: unknown }).crc32;
  if (typeof native === "function") {
    return (data, previous = 0) => (native as (d: Uint8Array, v: number) => number)(data, previous);
  }
  return tableCrc32;
}

let table: Uint32Array | undefined;

function crcTable(): Uint32Array {
  if (table) return table;
  table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

/** The IEEE CRC-32 that zip and gzip use; exported so tests can check it against the native one. */
export function tableCrc32(data: Uint8Array, previous = 0): number {
  const t = crcTable();
  let c = (previous ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) {
    c = (t[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}
