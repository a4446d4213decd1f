import { createHash } from "node:crypto";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { z } from "zod";
import { DamagedInputError, REDOWNLOAD_HINT, SyncError, describeError } from "../errors.js";
import { checkedGunzip, gzipFailure } from "./gzip-check.js";
import { LayerCheck, type LayerCompression, type LayerVerdict } from "./layer-check.js";

/**
 * The image abstraction: a `docker save … | gzip` stream (legacy layout, or Docker ≥ 25's OCI
 * layout; layers plain or saved already compressed) read once, front to back, into an image —
 * its config, its layers as streams with their diff-ids, its RepoTags.
 *
 * A `docker save` tar names its config and RepoTags only at its end (manifest.json comes last),
 * so a reader cannot know up front which entries are layers or what they should hash to. Every
 * file that is not one of the image's own metadata files is therefore checked as it streams past
 * (layer-check.ts: decompressed where needed, hashed, read as a tar), and offered to `onLayer`,
 * which may take its bytes (the registry engine compresses and uploads them on the way) or leave
 * them. Once the tar has ended, the image is verified whole: manifest.json, a config matching its
 * digest, and every layer the tar its diff-id names. Only then does `result` resolve.
 */

export interface ImageTarballInfo {
  /** `oci` for Docker ≥ 25 (`oci-layout` + `index.json`, which also carry a manifest.json). */
  layout: "legacy" | "oci";
  repoTags: string[];
  /** The config's path inside the tar, as manifest.json names it. */
  config: string;
  /** `sha256:<hex>` of the config bytes as read, i.e. the image ID. */
  configDigest: string;
  /** Layer paths inside the tar, base first, as manifest.json names them. */
  layers: string[];
  /**
   * Sizes of the layer files in the tar: uncompressed tars, except from Docker's containerd
   * image store, which saves layers as they were pulled (possibly gzip-compressed).
   */
  layerSizes: number[];
  /** `rootfs.diff_ids` from the config: the sha256 of each uncompressed layer tar. */
  diffIds: string[];
  architecture?: string;
  os?: string;
  variant?: string;
}

/** A layer candidate as it starts to stream past. */
export interface LayerStart {
  /** Its path inside the tar. */
  path: string;
  /** Its size in the tar. */
  size: number;
  /**
   * `sha256:<hex>` its name gives it in the OCI layout (`blobs/sha256/<hex>`): the diff-id of a
   * plain layer, the blob digest of a compressed one. A legacy layer's path says nothing.
   */
  namedDigest?: string;
  /** From its first bytes. */
  compression: LayerCompression;
}

/** Whoever takes a layer's bytes: fed them in order, told the check's verdict at the end. */
export interface LayerSink {
  /** Resolves when the sink can take more (back-pressure on the tar). */
  write(chunk: Buffer): Promise<void>;
  end(verdict: LayerVerdict): void;
  /** The tar failed before the layer's end. */
  fail(err: Error): void;
}

/** Asked at each layer candidate; `undefined` leaves the bytes to the check alone. */
export type LayerHook = (
  layer: LayerStart,
) => LayerSink | undefined | Promise<LayerSink | undefined>;

/** What a read of the whole stream gives: the verified image, its config, each layer's verdict. */
export interface SavedImage {
  info: ImageTarballInfo;
  configBytes: Buffer;
}

export interface ImageStream {
  /** Feed it the `.tar.gz` bytes. It never fails a writer: failures land in `result`. */
  sink: Writable;
  result: Promise<SavedImage>;
}

export const NOT_AN_IMAGE_HINT =
  "the artifact does not hold the docker save image this tool expects; check the workflow run";
/** JSON documents in a `docker save` tar are kilobytes; this bounds memory on a hostile tar. */
const MAX_JSON_BYTES = 8 << 20;
const MAX_JSON_TOTAL = 64 << 20;
const OCI_BLOB = /^blobs\/sha256\/([0-9a-f]{64})$/;

const manifestSchema = z
  .array(
    z.object({
      Config: z.string().min(1),
      RepoTags: z.array(z.string()).nullish(),
      Layers: z.array(z.string().min(1)),
    }),
  )
  .min(1);

const configSchema = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  rootfs: z.object({ type: z.string(), diff_ids: z.array(z.string()) }),
});

const indexSchema = z.object({
  manifests: z.array(
    z.object({ annotations: z.record(z.string(), z.string()).optional() }).passthrough(),
  ),
});

/**
 * Reads a `docker save … | gzip` stream into an image (see the top of this file). `label` names
 * the tarball in error messages; every failure is a one-line SyncError naming it.
 */
export function createImageStream(label: string, onLayer?: LayerHook): ImageStream {
  const [magic, gunzip] = checkedGunzip();
  const collector = new TarCollector(onLayer);
  const extract = tar.extract();
  extract.on("entry", (header, body, next) => {
    collector.take(header, body).then(
      () => next(),
      (err: unknown) => {
        extract.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
  const result = pipeline(magic, gunzip, extract).then(
    async () => collector.describe(label),
    (err: unknown) => {
      collector.abandon(err);
      throw tarballFailure(label, err);
    },
  );
  // A caller that stops early (the zip failed) may never await this; that is not an error.
  result.catch(() => undefined);
  return { sink: magic, result };
}

export function tarballFailure(label: string, err: unknown): SyncError {
  if (err instanceof SyncError) return err;
  const gz = gzipFailure(label, err);
  if (gz) return gz;
  const message = describeError(err);
  if (/unexpected end of data/i.test(message)) {
    return new DamagedInputError(`${label} is cut short (the tar inside ends mid-file)`, {
      hint: REDOWNLOAD_HINT,
      cause: err,
    });
  }
  if (/invalid tar header|checksum/i.test(message)) {
    return new DamagedInputError(`${label} is not a docker save image (not a tar: ${message})`, {
      hint: NOT_AN_IMAGE_HINT,
      cause: err,
    });
  }
  return new SyncError(`cannot read ${label} (${message})`, { hint: REDOWNLOAD_HINT, cause: err });
}

/** tar-stream's entry stream (a streamx Readable, not a Node one). */
type EntryBody = tar.ExtractEvents["entry"][1];

/** Keeps what identifies the image, and checks every layer candidate as it streams past. */
class TarCollector {
  private readonly sizes = new Map<string, number>();
  private readonly documents = new Map<string, Buffer>();
  private readonly layers = new Map<string, Promise<LayerVerdict>>();
  private buffered = 0;
  /** The sink of the layer streaming now, told when the tar fails under it. */
  private current: LayerSink | undefined;

  constructor(private readonly onLayer: LayerHook | undefined) {}

  async take(header: tar.Header, body: EntryBody): Promise<void> {
    // A tar cut mid-entry fails this stream too; the same error already fails the pipeline.
    body.on("error", () => undefined);
    const name = stripDot(header.name);
    const size = header.size ?? 0;
    const isFile = header.type === "file" || header.type === "contiguous-file";
    if (isFile) this.sizes.set(name, size);
    // manifest.json comes last, so which entries are layers is not known yet: all but the
    // image's own metadata files are checked (a JSON blob costs nothing to check).
    const check = isFile && !isMetadataFile(name) ? new LayerCheck() : undefined;
    const keep =
      isFile &&
      mayBeDocument(name) &&
      size <= MAX_JSON_BYTES &&
      this.buffered + size <= MAX_JSON_TOTAL;
    if (keep) this.buffered += size;
    const chunks: Buffer[] = [];
    let sink: LayerSink | undefined;
    let offered = !check || !this.onLayer;
    /** Chunks seen before the compression was known: the sink gets them first. */
    const early: Buffer[] = [];
    for await (const data of body) {
      const chunk = data as Buffer;
      if (keep) chunks.push(chunk);
      if (!check) continue;
      await check.write(chunk);
      if (offered) {
        if (sink) await sink.write(chunk);
        continue;
      }
      early.push(chunk);
      if (check.compression === undefined) continue;
      offered = true;
      sink = await this.offer(name, size, check.compression, early[0]);
      if (sink) for (const piece of early) await sink.write(piece);
      early.length = 0;
    }
    if (check) {
      const verdict = check.end();
      this.layers.set(name, verdict);
      if (sink) {
        const taken = sink;
        this.current = undefined;
        void verdict.then((v) => taken.end(v));
      }
    }
    if (keep) {
      const bytes = Buffer.concat(chunks);
      // Layer blobs share `blobs/sha256/`; only JSON (a config or manifest) is worth keeping.
      if (looksLikeJson(bytes)) this.documents.set(name, bytes);
      else this.buffered -= size;
    }
  }

  /** Offers a layer candidate to the hook; JSON (an OCI config or manifest blob) is no layer. */
  private async offer(
    name: string,
    size: number,
    compression: LayerCompression,
    head: Buffer | undefined,
  ): Promise<LayerSink | undefined> {
    if (!this.onLayer || (compression === "none" && looksLikeJson(head))) return undefined;
    const hex = OCI_BLOB.exec(name)?.[1];
    const sink = await this.onLayer({
      path: name,
      size,
      compression,
      ...(hex ? { namedDigest: `sha256:${hex}` } : {}),
    });
    this.current = sink;
    return sink;
  }

  /** The tar failed: a layer mid-way is told so, or its taker would wait for more. */
  abandon(err: unknown): void {
    this.current?.fail(err instanceof Error ? err : new Error(String(err)));
    this.current = undefined;
  }

  async describe(label: string): Promise<SavedImage> {
    const manifestBytes = this.documents.get("manifest.json");
    if (!manifestBytes) {
      const what = this.sizes.size === 0 ? "an empty tar" : "no manifest.json";
      throw new DamagedInputError(`${label} is not a docker save image (${what})`, {
        hint: NOT_AN_IMAGE_HINT,
      });
    }
    const manifests = parseJson(label, "manifest.json", manifestBytes, manifestSchema);
    if (manifests.length !== 1) {
      throw new DamagedInputError(`${label} holds ${manifests.length} images; expected one`, {
        hint: NOT_AN_IMAGE_HINT,
      });
    }
    const manifest = manifests[0] as z.infer<typeof manifestSchema>[number];
    const config = stripDot(manifest.Config);
    const layers = manifest.Layers.map(stripDot);
    const outside = [config, ...layers].find(leavesTarball);
    if (outside !== undefined) {
      throw new DamagedInputError(
        `${label}: manifest.json names ${JSON.stringify(outside)}, a path outside the tarball`,
        { hint: NOT_AN_IMAGE_HINT },
      );
    }
    const missing = [config, ...layers].filter((name) => !this.sizes.has(name));
    if (missing.length > 0) {
      throw new DamagedInputError(
        `${label} is incomplete: ${missing.join(", ")} named by manifest.json is not in the tar`,
        { hint: REDOWNLOAD_HINT },
      );
    }
    const configBytes = this.documents.get(config);
    if (!configBytes) {
      throw new DamagedInputError(`${label}: the image config ${config} is not JSON`, {
        hint: NOT_AN_IMAGE_HINT,
      });
    }
    const configHex = createHash("sha256").update(configBytes).digest("hex");
    const namedHex = /([0-9a-f]{64})(\.json)?$/.exec(config)?.[1];
    if (namedHex && namedHex !== configHex) {
      throw new DamagedInputError(
        `${label}: the image config ${config} does not match its digest`,
        {
          hint: REDOWNLOAD_HINT,
        },
      );
    }
    const parsed = parseJson(label, config, configBytes, configSchema);
    const diffIds = parsed.rootfs.diff_ids;
    if (diffIds.length !== layers.length) {
      throw new DamagedInputError(
        `${label}: the config lists ${diffIds.length} layers but manifest.json ${layers.length}`,
        { hint: NOT_AN_IMAGE_HINT },
      );
    }
    await this.verifyLayers(label, layers, diffIds);
    const layout = this.sizes.has("oci-layout") && this.sizes.has("index.json") ? "oci" : "legacy";
    let repoTags = manifest.RepoTags ?? [];
    if (repoTags.length === 0 && layout === "oci") repoTags = this.indexImageNames(label);
    const info: ImageTarballInfo = {
      layout,
      repoTags,
      config,
      configDigest: `sha256:${configHex}`,
      layers,
      layerSizes: layers.map((l) => this.sizes.get(l) ?? 0),
      diffIds,
      ...(parsed.architecture !== undefined ? { architecture: parsed.architecture } : {}),
      ...(parsed.os !== undefined ? { os: parsed.os } : {}),
      ...(parsed.variant !== undefined ? { variant: parsed.variant } : {}),
    };
    return { info, configBytes };
  }

  /** Every layer is the tar its diff-id names: what `docker load` would check, checked first. */
  private async verifyLayers(label: string, layers: string[], diffIds: string[]): Promise<void> {
    for (const [index, layer] of layers.entries()) {
      const verdict = await this.layers.get(layer);
      if (!verdict) continue;
      if (verdict.problem !== undefined) {
        const Failure = verdict.unsupported ? SyncError : DamagedInputError;
        throw new Failure(`${label}: layer ${layer} ${verdict.problem}`, {
          hint: verdict.unsupported ? "run the tool on Node.js 22.15 or later" : REDOWNLOAD_HINT,
        });
      }
      if (verdict.diffId !== diffIds[index]) {
        throw new DamagedInputError(
          `${label}: layer ${layer} does not match its diff-id ${diffIds[index] ?? "?"} (its ${verdict.compression === "none" ? "" : `${verdict.compression}-decompressed `}bytes hash to ${verdict.diffId ?? "?"})`,
          { hint: REDOWNLOAD_HINT },
        );
      }
    }
  }

  /** Docker ≥ 25 also names the image in index.json; used when manifest.json has no RepoTags. */
  private indexImageNames(label: string): string[] {
    const bytes = this.documents.get("index.json");
    if (!bytes) return [];
    const index = parseJson(label, "index.json", bytes, indexSchema);
    return index.manifests.flatMap((m) => {
      const name = m.annotations?.["io.containerd.image.name"];
      return name ? [name] : [];
    });
  }
}

function looksLikeJson(bytes: Buffer | undefined): boolean {
  return bytes !== undefined && (bytes[0] === 0x7b || bytes[0] === 0x5b);
}

function mayBeDocument(name: string): boolean {
  return (
    name === "manifest.json" ||
    name === "index.json" ||
    (!name.includes("/") && name.endsWith(".json")) ||
    OCI_BLOB.test(name)
  );
}

/** The image's own files, never a layer. */
function isMetadataFile(name: string): boolean {
  return (
    name === "manifest.json" ||
    name === "index.json" ||
    name === "oci-layout" ||
    name === "repositories" ||
    (!name.includes("/") && name.endsWith(".json"))
  );
}

/** A path that could reach outside the tarball if something ever extracted it. */
function leavesTarball(name: string): boolean {
  return (
    name.startsWith("/") ||
    name.includes("\\") ||
    name.includes("\0") ||
    name.split("/").some((segment) => segment === "..")
  );
}

export function stripDot(name: string): string {
  return name.replace(/^(\.\/)+/, "");
}

function parseJson<T>(label: string, what: string, bytes: Buffer, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    throw new DamagedInputError(`${label}: ${what} is not valid JSON (${describeError(err)})`, {
      hint: NOT_AN_IMAGE_HINT,
      cause: err,
    });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join(".") || "(top)";
    throw new DamagedInputError(
      `${label}: ${what} is not what docker save writes (${where}: ${issue?.message})`,
      { hint: NOT_AN_IMAGE_HINT },
    );
  }
  return parsed.data;
}
