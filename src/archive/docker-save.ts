import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { z } from "zod";
import { canonicalName } from "../domain/reference.js";
import { DamagedInputError, SyncError, describeError } from "../errors.js";
import { GUNZIP_CHUNK, checkedGunzip, gzipFailure } from "./gzip-check.js";
import { LayerCheck, type LayerVerdict } from "./layer-check.js";

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
}

export interface TarballInspector {
  /** Feed it the `.tar.gz` bytes. It never fails a writer: failures land in `result`. */
  sink: Writable;
  result: Promise<ImageTarballInfo>;
}

const NOT_AN_IMAGE_HINT =
  "the artifact does not hold the docker save image this tool expects; check the workflow run";
const REDOWNLOAD_HINT = "the artifact is damaged; re-run download --force";
/** JSON documents in a `docker save` tar are kilobytes; this bounds memory on a hostile tar. */
const MAX_JSON_BYTES = 8 << 20;
const MAX_JSON_TOTAL = 64 << 20;

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
  rootfs: z.object({ type: z.string(), diff_ids: z.array(z.string()) }),
});

const indexSchema = z.object({
  manifests: z.array(
    z.object({ annotations: z.record(z.string(), z.string()).optional() }).passthrough(),
  ),
});

/**
 * Streams a `docker save … | gzip` file once: gunzip (which checks the gzip trailer) into a tar
 * reader that keeps the small JSON documents and checks every layer on its way past (its
 * diff-id, compressed or not, and that it is a tar: layer-check.ts), then checks that every file
 * manifest.json names was present and inside the tarball. Throws a one-line SyncError naming
 * `file` otherwise.
 */
export async function inspectImageTarball(
  file: string,
  options: { signal?: AbortSignal } = {},
): Promise<ImageTarballInfo> {
  const inspector = createImageTarballInspector(file);
  try {
    await pipeline(createReadStream(file, { highWaterMark: GUNZIP_CHUNK }), inspector.sink, {
      signal: options.signal,
    });
  } catch (err) {
    options.signal?.throwIfAborted();
    // The inspector's own verdict (not gzip, cut short, …) says more than the pipeline's error.
    throw await inspector.result.then(
      () => new SyncError(`cannot read ${file} (${describeError(err)})`, { cause: err }),
      (verdict: unknown) => verdict,
    );
  }
  return inspector.result;
}

/**
 * The same check as {@link inspectImageTarball}, fed from elsewhere: `prepare` hands it the
 * bytes of each tarball while they come out of the zip, so nothing is read twice.
 * `label` names the tarball in error messages.
 */
export function createImageTarballInspector(label: string): TarballInspector {
  const [magic, gunzip] = checkedGunzip();
  const collector = new TarCollector();
  const extract = tar.extract();
  extract.on("entry", (header, body, next) => collector.take(header, body, next));
  const result = pipeline(magic, gunzip, extract).then(
    async () => collector.describe(label),
    (err: unknown) => {
      throw tarballFailure(label, err);
    },
  );
  // A caller that stops early (extraction failed) may never await this; that is not an error.
  result.catch(() => undefined);
  return { sink: magic, result };
}

function tarballFailure(label: string, err: unknown): SyncError {
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

  take(header: tar.Header, body: EntryBody, next: () => void): void {
    // A tar cut mid-entry fails this stream too; the same error already fails the pipeline.
    body.on("error", () => undefined);
    const name = header.name.replace(/^(\.\/)+/, "");
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
    body.on("data", (data: unknown) => {
      const chunk = data as Buffer;
      if (keep) chunks.push(chunk);
      if (!check) return;
      body.pause();
      void check.write(chunk).then(() => body.resume());
    });
    body.on("end", () => {
      if (check) this.layers.set(name, check.end());
      if (keep) {
        const bytes = Buffer.concat(chunks);
        // Layer blobs share `blobs/sha256/`; only JSON (a config or manifest) is worth keeping.
        if (bytes[0] === 0x7b || bytes[0] === 0x5b) this.documents.set(name, bytes);
        else this.buffered -= size;
      }
      next();
    });
  }

  async describe(label: string): Promise<ImageTarballInfo> {
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
    return {
      layout,
      repoTags,
      config,
      configDigest: `sha256:${configHex}`,
      layers,
      layerSizes: layers.map((l) => this.sizes.get(l) ?? 0),
      diffIds,
      ...(parsed.architecture !== undefined ? { architecture: parsed.architecture } : {}),
      ...(parsed.os !== undefined ? { os: parsed.os } : {}),
    };
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

function mayBeDocument(name: string): boolean {
  return (
    name === "manifest.json" ||
    name === "index.json" ||
    (!name.includes("/") && name.endsWith(".json")) ||
    /^blobs\/sha256\/[0-9a-f]{64}$/.test(name)
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

function stripDot(name: string): string {
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
      {
        hint: NOT_AN_IMAGE_HINT,
      },
    );
  }
  return parsed.data;
}

/**
 * Checks that the image carries the tag the workflow gave it (`<repo>:<image tag>`), allowing
 * Docker's spelling variants (`docker.io/library/<repo>:<tag>`, which `docker save` of an image
 * pulled by its full name writes). Only Docker Hub's equivalence counts: a tag under another
 * registry or namespace names a different image, and accepting it would hide a workflow that
 * started saving something else. Returns the RepoTag that matched, for `docker tag`.
 */
export function assertRepoTag(info: ImageTarballInfo, expected: string, file: string): string {
  const want = canonicalName(expected);
  const match = info.repoTags.find((tag) => canonicalName(tag) === want);
  if (match === undefined) {
    const found = info.repoTags.length > 0 ? info.repoTags.join(", ") : "none";
    throw new DamagedInputError(`${file} does not hold ${expected} (its RepoTags: ${found})`, {
      hint: "the artifact does not match the image tag; check that the run built this tag",
    });
  }
  return match;
}
