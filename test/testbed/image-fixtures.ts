/**
 * Generated stand-ins for what the build workflow produces: `docker save` tarballs (legacy and
 * Docker ≥ 25 OCI layouts) and the artifact zip around them, plus ways to spoil a zip. Nothing
 * is downloaded and no Docker is needed; the tarballs are valid enough for `docker load`.
 */
import { createCipheriv, createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { PassThrough, Readable, Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import tar from "tar-stream";
import yazl from "yazl";

export type LayerSpec =
  | { files: Record<string, string | Buffer> }
  | {
      sizeBytes: number;
      seed: number;
      /**
       * Share (0–1) of the bytes that are text-like and compress, the rest staying random: real
       * layers mix binaries, text and already-compressed files. Default 0: incompressible.
       */
      textShare?: number;
    };

export interface DockerSaveOptions {
  /** `<repo>:<tag>`, as `docker save <repo>:<tag>` records it. */
  repoTag: string;
  layout: "legacy" | "oci";
  layers: LayerSpec[];
  /** gzip -9 the tarball, as the workflow does (`docker save … | gzip -9`). */
  gzip?: boolean;
  /** Lower levels make large benchmark fixtures quicker to write. */
  gzipLevel?: number;
  architecture?: string;
  os?: string;
  /** The config's `variant` (`v7` of `linux/arm/v7`); none unless given. */
  variant?: string;
}

export interface WrittenImage {
  file: string;
  repoTag: string;
  /** `sha256:<hex>` of the config: the image ID. */
  configDigest: string;
  /** The config's path inside the tar (manifest.json `Config`). */
  config: string;
  /** Layer paths inside the tar (manifest.json `Layers`). */
  layers: string[];
  diffIds: string[];
}

/** Fixed metadata so the same `{files}` give byte-identical layer tars (shared base layers). */
const EPOCH = new Date("2024-01-01T00:00:00Z");
const CREATED = EPOCH.toISOString().replace(".000Z", "Z");
const CHUNK = 1 << 20;

interface LayerBlob {
  hex: string;
  size: number;
  open(): Readable;
}

export async function writeDockerSaveTarball(
  file: string,
  options: DockerSaveOptions,
): Promise<WrittenImage> {
  const layers: LayerBlob[] = [];
  for (const spec of options.layers) layers.push(await layerBlob(spec));
  const diffIds = layers.map((l) => `sha256:${l.hex}`);
  const configBytes = json({
    architecture: options.architecture ?? "amd64",
    os: options.os ?? "linux",
    ...(options.variant ? { variant: options.variant } : {}),
    created: CREATED,
    config: {
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      Cmd: ["/bin/sh"],
    },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: layers.map((_, i) => ({ created: CREATED, created_by: `fixture layer ${i}` })),
  });
  const configHex = sha256(configBytes);
  const pack = tar.pack();
  const out: Writable[] = options.gzip
    ? [zlib.createGzip({ level: options.gzipLevel ?? 9 }), createWriteStream(file)]
    : [createWriteStream(file)];
  const written = pipeline([pack as unknown as Readable, ...out]);
  const layout = options.layout === "legacy" ? writeLegacy : writeOci;
  const names = await layout(pack, options.repoTag, layers, configBytes, configHex);
  pack.finalize();
  await written;
  return {
    file,
    repoTag: options.repoTag,
    configDigest: `sha256:${configHex}`,
    config: names.config,
    layers: names.layers,
    diffIds,
  };
}

type LayoutWriter = (
  pack: tar.Pack,
  repoTag: string,
  layers: LayerBlob[],
  configBytes: Buffer,
  configHex: string,
) => Promise<{ config: string; layers: string[] }>;

const writeLegacy: LayoutWriter = async (pack, repoTag, layers, configBytes, configHex) => {
  const layerPaths: string[] = [];
  let parent = "";
  for (const layer of layers) {
    // Docker's v1 ids chain each layer to its parent; identical layers at two depths stay distinct.
    const id = sha256(Buffer.from(`${parent}\n${layer.hex}`));
    await addDir(pack, `${id}/`);
    await addEntry(pack, `${id}/VERSION`, Buffer.from("1.0"));
    const v1 = { id, ...(parent ? { parent } : {}), created: CREATED };
    await addEntry(pack, `${id}/json`, json(v1));
    await addStream(pack, `${id}/layer.tar`, layer.size, layer.open());
    layerPaths.push(`${id}/layer.tar`);
    parent = id;
  }
  const config = `${configHex}.json`;
  await addEntry(pack, config, configBytes);
  await addEntry(
    pack,
    "manifest.json",
    json([{ Config: config, RepoTags: [repoTag], Layers: layerPaths }]),
  );
  await addEntry(pack, "repositories", repositories(repoTag, parent));
  return { config, layers: layerPaths };
};

const writeOci: LayoutWriter = async (pack, repoTag, layers, configBytes, configHex) => {
  await addDir(pack, "blobs/");
  await addDir(pack, "blobs/sha256/");
  const written = new Set<string>();
  for (const layer of layers) {
    if (written.has(layer.hex)) continue;
    written.add(layer.hex);
    await addStream(pack, `blobs/sha256/${layer.hex}`, layer.size, layer.open());
  }
  await addEntry(pack, `blobs/sha256/${configHex}`, configBytes);
  const manifest = json({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: `sha256:${configHex}`,
      size: configBytes.length,
    },
    layers: layers.map((l) => ({
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: `sha256:${l.hex}`,
      size: l.size,
    })),
  });
  const manifestHex = sha256(manifest);
  await addEntry(pack, `blobs/sha256/${manifestHex}`, manifest);
  const tag = repoTag.slice(repoTag.lastIndexOf(":") + 1);
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: `sha256:${manifestHex}`,
        size: manifest.length,
        annotations: {
          "io.containerd.image.name": familiarToFull(repoTag),
          "org.opencontainers.image.ref.name": tag,
        },
      },
    ],
  };
  await addEntry(pack, "index.json", json(index));
  const config = `blobs/sha256/${configHex}`;
  const layerPaths = layers.map((l) => `blobs/sha256/${l.hex}`);
  await addEntry(
    pack,
    "manifest.json",
    json([{ Config: config, RepoTags: [repoTag], Layers: layerPaths }]),
  );
  await addEntry(pack, "oci-layout", json({ imageLayoutVersion: "1.0.0" }));
  await addEntry(pack, "repositories", repositories(repoTag, layers.at(-1)?.hex ?? configHex));
  return { config, layers: layerPaths };
};

/** How Docker 25 spells the image name in index.json: `presto:x` → `docker.io/library/presto:x`. */
function familiarToFull(repoTag: string): string {
  const first = repoTag.split("/")[0] ?? "";
  const hasRegistry =
    repoTag.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasRegistry) return repoTag;
  return repoTag.includes("/") ? `docker.io/${repoTag}` : `docker.io/library/${repoTag}`;
}

function repositories(repoTag: string, topId: string): Buffer {
  const colon = repoTag.lastIndexOf(":");
  return json({ [repoTag.slice(0, colon)]: { [repoTag.slice(colon + 1)]: topId } });
}

async function layerBlob(spec: LayerSpec): Promise<LayerBlob> {
  if ("files" in spec) {
    const bytes = await filesLayerTar(spec.files);
    return { hex: sha256(bytes), size: bytes.length, open: () => Readable.from([bytes]) };
  }
  // Large layers are generated twice (hash, then write) rather than held in memory.
  const open = (): Readable => randomLayerTar(spec.sizeBytes, spec.seed, spec.textShare ?? 0);
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of open()) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hex: hash.digest("hex"), size, open };
}

async function filesLayerTar(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  const collected = collect(pack as unknown as Readable);
  const dirs = new Set<string>();
  for (const name of Object.keys(files)) {
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(`${parts.slice(0, i).join("/")}/`);
  }
  const entries = [...dirs].map((d) => ({ name: d, body: undefined as Buffer | undefined }));
  for (const [name, body] of Object.entries(files)) {
    entries.push({ name, body: typeof body === "string" ? Buffer.from(body) : body });
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.body === undefined) await addDir(pack, e.name);
    else await addEntry(pack, e.name, e.body);
  }
  pack.finalize();
  return collected;
}

function randomLayerTar(sizeBytes: number, seed: number, textShare: number): Readable {
  const pack = tar.pack();
  const body =
    textShare > 0 ? mixedBytes(sizeBytes, seed, textShare) : pseudoRandom(sizeBytes, seed);
  void (async () => {
    await addDir(pack, "data/");
    await addStream(pack, `data/blob-${seed}.bin`, sizeBytes, body);
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  return pack as unknown as Readable;
}

/** Deterministic, incompressible bytes at memory speed: an AES-CTR keystream keyed by the seed. */
export function pseudoRandom(sizeBytes: number, seed: number): Readable {
  const key = createHash("sha256").update(`seed:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  let left = sizeBytes;
  return new Readable({
    read() {
      if (left === 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, CHUNK);
      left -= n;
      this.push(cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n)));
    },
  });
}

const TEXT_UNIT = 4096;
let textCorpus: Buffer | undefined;

/** 256 KiB of word salad from a fixed vocabulary: compresses about 3:1, like source and logs. */
function corpus(): Buffer {
  if (textCorpus) return textCorpus;
  let state = 0x2545f491;
  const next = (n: number): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state >>> 8) % n;
  };
  const letters = "etaoinshrdlcumwfgypbvkjxqz_/.";
  const words = Array.from({ length: 512 }, () =>
    Array.from({ length: 2 + next(9) }, () => letters[next(letters.length)]).join(""),
  );
  const parts: string[] = [];
  let length = 0;
  while (length < 256 * 1024) {
    const word = `${words[next(words.length)] ?? ""}${next(12) === 0 ? "\n" : " "}`;
    parts.push(word);
    length += word.length;
  }
  textCorpus = Buffer.from(parts.join(""));
  return textCorpus;
}

/**
 * Deterministic bytes of which `textShare` compresses: each 4 KiB unit keeps its random head and
 * ends in a slice of the text corpus chosen by that head, so a unit depends on the seed alone.
 */
export function mixedBytes(sizeBytes: number, seed: number, textShare: number): Readable {
  const text = corpus();
  const textLength = Math.round(TEXT_UNIT * Math.min(1, Math.max(0, textShare)));
  const mix = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      for (let unit = 0; unit + TEXT_UNIT <= chunk.length; unit += TEXT_UNIT) {
        const from = chunk.readUInt32LE(unit) % (text.length - textLength);
        text.copy(chunk, unit + TEXT_UNIT - textLength, from, from + textLength);
      }
      done(null, chunk);
    },
  });
  return pseudoRandom(sizeBytes, seed).pipe(mix);
}

const HEADER_DEFAULTS = { mtime: EPOCH, uid: 0, gid: 0, uname: "", gname: "" };

function addDir(pack: tar.Pack, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ ...HEADER_DEFAULTS, name, type: "directory", mode: 0o755 }, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

function addEntry(pack: tar.Pack, name: string, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ ...HEADER_DEFAULTS, name, mode: 0o644 }, body, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

async function addStream(
  pack: tar.Pack,
  name: string,
  size: number,
  body: Readable,
): Promise<void> {
  const entry = pack.entry({ ...HEADER_DEFAULTS, name, size, mode: 0o644 });
  await pipeline(body, entry);
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

// ---------------------------------------------------------------------------------------------
// The artifact zip

export interface ZipEntrySpec {
  name: string;
  file?: string;
  data?: Buffer;
  /** Override the default (deflate text and tarballs alike, as GitHub's artifact zips do). */
  compress?: boolean;
  /** Unix mode including the type bits, e.g. `0o120777` for a symbolic link. */
  mode?: number;
}

export interface ZipOptions {
  /** ZIP64 records for every entry and the end of the directory, even for small sizes. */
  forceZip64?: boolean;
  /** Store tarballs instead of deflating them (compression does not shrink a .tar.gz). */
  storeTarballs?: boolean;
  compressionLevel?: number;
}

/**
 * A zip written as a stream, like GitHub's: every entry has general-purpose bit 3 set and a data
 * descriptor after its data (yazl does that for every stream it is given).
 */
export async function writeArtifactZip(
  zipFile: string,
  entries: ZipEntrySpec[],
  options: ZipOptions = {},
): Promise<void> {
  const zip = new yazl.ZipFile();
  const written = pipeline(zip.outputStream as unknown as Readable, createWriteStream(zipFile));
  for (const entry of entries) {
    const input = entry.file
      ? createReadStream(entry.file)
      : Readable.from([entry.data ?? Buffer.alloc(0)]).pipe(new PassThrough());
    const isTarball = entry.name.endsWith(".tar.gz") || entry.name.endsWith(".tar");
    const compress = entry.compress ?? !(isTarball && options.storeTarballs);
    zip.addReadStream(input, entry.name, {
      compress,
      ...(compress && options.compressionLevel !== undefined
        ? { compressionLevel: options.compressionLevel }
        : {}),
      forceZip64Format: Boolean(options.forceZip64),
      mtime: EPOCH,
      ...(entry.mode !== undefined ? { mode: entry.mode } : {}),
    });
  }
  zip.end({ forceZip64Format: Boolean(options.forceZip64), comment: "" });
  await written;
}

/**
 * A zip whose entries carry names yazl (rightly) refuses to write, such as `../../x`, `/etc/x`
 * or `..\\..\\x`: written under placeholders of the same length, then patched in place.
 * Names are not covered by any CRC, so the result is otherwise a well-formed zip.
 */
export async function writeZipWithRawNames(
  zipFile: string,
  entries: Array<{ name: string; data: Buffer }>,
): Promise<void> {
  const placeholders = entries.map((e, i) => {
    const stem = `p${i}_`;
    const len = Buffer.byteLength(e.name);
    if (len < stem.length) throw new Error(`name ${e.name} too short for a placeholder`);
    return stem + "x".repeat(len - stem.length);
  });
  await writeArtifactZip(
    zipFile,
    entries.map((e, i) => ({ name: placeholders[i] as string, data: e.data })),
  );
  const bytes: Buffer = await readFile(zipFile);
  entries.forEach((e, i) => {
    replaceAll(bytes, Buffer.from(placeholders[i] as string), Buffer.from(e.name));
  });
  await writeFile(zipFile, bytes);
}

function replaceAll(haystack: Buffer, from: Buffer, to: Buffer): void {
  let at = haystack.indexOf(from);
  while (at !== -1) {
    to.copy(haystack, at);
    at = haystack.indexOf(from, at + from.length);
  }
}

/** A zip holding one symbolic link entry (unix mode S_IFLNK in the external attributes). */
export async function writeSymlinkZip(
  zipFile: string,
  linkName: string,
  target: string,
): Promise<void> {
  await writeArtifactZip(zipFile, [
    { name: "build-metadata.txt", data: Buffer.from("Image tag: x\n") },
    { name: linkName, data: Buffer.from(target), mode: 0o120777, compress: false },
  ]);
}

/**
 * Flips one byte in the middle of an entry's compressed data, leaving every header intact, as
 * a bad disk or a broken proxy would. With a stored entry the damage shows only in the CRC.
 */
export async function corruptZipEntry(zipFile: string, entryName: string): Promise<void> {
  const bytes = await readFile(zipFile);
  const { localHeaderOffset, compressedSize } = findCentralRecord(bytes, entryName);
  const nameLength = bytes.readUInt16LE(localHeaderOffset + 26);
  const extraLength = bytes.readUInt16LE(localHeaderOffset + 28);
  const dataStart = localHeaderOffset + 30 + nameLength + extraLength;
  const at = dataStart + Math.floor(compressedSize / 2);
  bytes[at] = (bytes[at] as number) ^ 0xff;
  const handle = await open(zipFile, "r+");
  try {
    await handle.write(bytes, at, 1, at);
  } finally {
    await handle.close();
  }
}

/** Cuts a file down to a fraction of its size, as an interrupted download leaves it. */
export async function truncateFile(file: string, keepFraction = 0.5): Promise<void> {
  const { size } = await stat(file);
  await truncate(file, Math.floor(size * keepFraction));
}

function findCentralRecord(
  zip: Buffer,
  entryName: string,
): { localHeaderOffset: number; compressedSize: number } {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error("no end of central directory");
  let cdOffset = zip.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff) {
    const locator = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x07]));
    const zip64Eocd = Number(zip.readBigUInt64LE(locator + 8));
    cdOffset = Number(zip.readBigUInt64LE(zip64Eocd + 48));
  }
  let at = cdOffset;
  while (zip.readUInt32LE(at) === 0x02014b50) {
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const name = zip.subarray(at + 46, at + 46 + nameLength).toString("utf8");
    if (name === entryName) {
      let compressedSize = zip.readUInt32LE(at + 20);
      let localHeaderOffset = zip.readUInt32LE(at + 42);
      const extra = zip.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength);
      const zip64 = readZip64Extra(extra, {
        uncompressed: zip.readUInt32LE(at + 24) === 0xffffffff,
        compressed: compressedSize === 0xffffffff,
        offset: localHeaderOffset === 0xffffffff,
      });
      compressedSize = zip64.compressed ?? compressedSize;
      localHeaderOffset = zip64.offset ?? localHeaderOffset;
      return { localHeaderOffset, compressedSize };
    }
    at += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`no entry ${entryName} in the zip`);
}

function readZip64Extra(
  extra: Buffer,
  present: { uncompressed: boolean; compressed: boolean; offset: boolean },
): { compressed?: number; offset?: number } {
  let at = 0;
  while (at + 4 <= extra.length) {
    const id = extra.readUInt16LE(at);
    const size = extra.readUInt16LE(at + 2);
    if (id === 0x0001) {
      let field = at + 4;
      const next = (): number => {
        const value = Number(extra.readBigUInt64LE(field));
        field += 8;
        return value;
      };
      if (present.uncompressed) next();
      const compressed = present.compressed ? next() : undefined;
      const offset = present.offset ? next() : undefined;
      return { compressed, offset };
    }
    at += 4 + size;
  }
  return {};
}
