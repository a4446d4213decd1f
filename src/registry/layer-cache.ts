import { z } from "zod";
import type { Logger } from "../report/logger.js";
import { readJsonFileOrWarn, writeJsonAtomic } from "../util/files.js";

/**
 * What earlier pushes learnt about each layer, keyed by its diff-id (the sha256 of the
 * uncompressed tar, which every `docker save` names): the digest and size it had once
 * compressed, and the repositories of each registry it went into. With it a push can ask the
 * registry "do you have this?" (HEAD) or "link it from there" (mount) before spending minutes
 * compressing a layer that is already up.
 */
export const LAYER_CACHE_FILE = "registry-layers.json";
/** Repositories remembered per layer and registry: enough mount sources, bounded file size. */
const MAX_REPOSITORIES = 16;

export interface CachedLayer {
  digest: string;
  size: number;
  mediaType: string;
  /**
   * Known only from the registry's own record (a manifest and its config read back), not from a
   * push of this host: used like any other, but checked (size) before it is relied on.
   */
  learned?: boolean;
}

const DIFF_ID = /^sha256:[0-9a-f]{64}$/;

const entrySchema = z.object({
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  mediaType: z.string().min(1),
  learned: z.boolean().optional(),
  /** registry host → repositories, most recent first. */
  registries: z.record(z.string(), z.array(z.string())),
});

/** An upload a push left unfinished (stopped, or failed for good), to be taken up by the next. */
const uploadSchema = z.object({
  /** The upload's address as the registry last gave it. */
  location: z.string().url(),
  saved_at: z.string(),
});

const fileSchema = z.object({
  version: z.literal(1),
  layers: z.record(z.string(), entrySchema),
  /** `<registry>/<repository>@<diff-id>` → the upload; absent in files of older versions. */
  uploads: z.record(z.string(), uploadSchema).optional(),
  /** `<layer path>#<size>` in a legacy `docker save` → its diff-id; absent in older files. */
  aliases: z.record(z.string(), z.string().regex(DIFF_ID)).optional(),
  /** `<registry>/<repository>@<manifest digest>` → when its layers were learned. */
  learnedImages: z.record(z.string(), z.string()).optional(),
});

type Entry = z.infer<typeof entrySchema>;
type Upload = z.infer<typeof uploadSchema>;

/**
 * Registries drop abandoned uploads after a while (Distribution's purge: a week by default,
 * often set shorter); one older than a day is not worth a request to find that out.
 */
const UPLOAD_MAX_AGE_MS = 24 * 3600 * 1000;
const uploadKey = (registry: string, repository: string, diffId: string) =>
  `${registry}/${repository}@${diffId}`;
/**
 * Legacy layer paths remembered: a build's worth many times over. Docker names a legacy layer
 * after its chain of diff-ids (the top one after the config too), so a path of the same size
 * names the same bytes in the next build's tarballs: its diff-id, and with it the registry's
 * copy, is known before the layer is read. A guess, always checked against the bytes.
 */
const MAX_ALIASES = 512;
/** Registry images whose layers were learned, remembered so none is read twice. */
const MAX_LEARNED_IMAGES = 512;

export class LayerCache {
  private readonly layers: Map<string, Entry>;
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;

  private readonly uploads: Map<string, Upload>;
  private readonly aliases: Map<string, string>;
  private readonly learnedImages: Map<string, string>;

  private constructor(
    private readonly file: string | undefined,
    parsed: Partial<z.infer<typeof fileSchema>> = {},
  ) {
    const { layers = {}, uploads = {}, aliases = {}, learnedImages = {} } = parsed;
    this.layers = new Map(Object.entries(layers));
    this.aliases = new Map(Object.entries(aliases));
    this.learnedImages = new Map(Object.entries(learnedImages));
    const now = Date.now();
    this.uploads = new Map(
      Object.entries(uploads).filter(
        ([, upload]) => now - Date.parse(upload.saved_at) < UPLOAD_MAX_AGE_MS,
      ),
    );
  }

  /**
   * Loads the cache, or starts an empty one when the file is missing. A damaged file is only a
   * lost optimisation, so it is logged and replaced rather than failing the push.
   */
  static async open(file: string, logger?: Logger): Promise<LayerCache> {
    const parsed = await readJsonFileOrWarn(file, fileSchema, logger, "the layer cache");
    return new LayerCache(file, parsed);
  }

  /** A cache that lives as long as the process (tests, one-off pushes). */
  static inMemory(): LayerCache {
    return new LayerCache(undefined);
  }

  get(diffId: string): CachedLayer | undefined {
    const entry = this.layers.get(diffId);
    if (!entry) return undefined;
    const { digest, size, mediaType, learned } = entry;
    return { digest, size, mediaType, ...(learned ? { learned } : {}) };
  }

  /** Whether the registry taught pairs that this host has not proven yet (layer-learning.ts). */
  learnedFrom(registry: string): boolean {
    for (const entry of this.layers.values()) {
      if (entry.learned && (entry.registries[registry]?.length ?? 0) > 0) return true;
    }
    return false;
  }

  /** Whether some layer the cache knows is compressed as this blob. */
  knowsBlob(digest: string): boolean {
    for (const entry of this.layers.values()) if (entry.digest === digest) return true;
    return false;
  }

  /** How many layers the cache knows (learned ones included). */
  knownLayers(): number {
    return this.layers.size;
  }

  /** Repositories of `registry` that this layer was pushed to or found in, most recent first. */
  repositoriesWith(diffId: string, registry: string): string[] {
    return [...(this.layers.get(diffId)?.registries[registry] ?? [])];
  }

  /** Notes that `repository` of `registry` holds the layer, compressed as `layer`. */
  record(diffId: string, layer: CachedLayer, registry: string, repository: string): void {
    const existing = this.layers.get(diffId);
    // A different digest means the layer was compressed afresh (another level or zlib): the
    // old repositories hold the old blob, not this one, so they are no mount source for it.
    const registries =
      existing && existing.digest === layer.digest ? { ...existing.registries } : {};
    const repositories = [
      repository,
      ...(registries[registry] ?? []).filter((r) => r !== repository),
    ];
    registries[registry] = repositories.slice(0, MAX_REPOSITORIES);
    // Pushed or found by this host: what the registry taught is now proven.
    const { digest, size, mediaType } = layer;
    this.layers.set(diffId, { digest, size, mediaType, registries });
    this.dirty = true;
  }

  /**
   * Notes a pair read from the registry's record of an image (`repository` holds `layer`, whose
   * bytes are the layer `diffId` names). A pair this host already knows under another blob is
   * left as it is: its own compression is what it can check.
   */
  learn(diffId: string, layer: CachedLayer, registry: string, repository: string): boolean {
    const existing = this.layers.get(diffId);
    if (existing && existing.digest !== layer.digest) return false;
    const registries = { ...existing?.registries };
    const repositories = registries[registry] ?? [];
    if (!repositories.includes(repository)) {
      registries[registry] = [...repositories, repository].slice(0, MAX_REPOSITORIES);
    }
    const { digest, size, mediaType } = layer;
    this.layers.set(diffId, {
      digest,
      size,
      mediaType,
      ...(existing && !existing.learned ? {} : { learned: true }),
      registries,
    });
    this.dirty = true;
    return !existing;
  }

  /** Drops a pair that turned out wrong (the registry's blob is not the size it was said to be). */
  drop(diffId: string): void {
    if (this.layers.delete(diffId)) this.dirty = true;
  }

  /** Whether the layers of this image (a manifest digest in a repository) were learned already. */
  hasLearned(registry: string, repository: string, manifestDigest: string): boolean {
    return this.learnedImages.has(`${registry}/${repository}@${manifestDigest}`);
  }

  /** Remembers an image read for its layers (whether it taught anything or not). */
  recordLearned(registry: string, repository: string, manifestDigest: string): void {
    this.learnedImages.set(`${registry}/${repository}@${manifestDigest}`, new Date().toISOString());
    for (const oldest of this.learnedImages.keys()) {
      if (this.learnedImages.size <= MAX_LEARNED_IMAGES) break;
      this.learnedImages.delete(oldest);
    }
    this.dirty = true;
  }

  /** Drops a repository that turned out not to hold the layer (deleted, or garbage-collected). */
  forget(diffId: string, registry: string, repository: string): void {
    const entry = this.layers.get(diffId);
    const repositories = entry?.registries[registry];
    if (!entry || !repositories?.includes(repository)) return;
    entry.registries[registry] = repositories.filter((r) => r !== repository);
    this.dirty = true;
  }

  /** The address of the upload of this layer an earlier push left, if any. */
  upload(registry: string, repository: string, diffId: string): URL | undefined {
    const location = this.uploads.get(uploadKey(registry, repository, diffId))?.location;
    return location ? new URL(location) : undefined;
  }

  /** Remembers (or, with `undefined`, forgets) the upload of a layer not yet fully up. */
  recordUpload(registry: string, repository: string, diffId: string, location: URL | undefined) {
    const key = uploadKey(registry, repository, diffId);
    if (location) {
      this.uploads.set(key, { location: location.href, saved_at: new Date().toISOString() });
      this.dirty = true;
    } else if (this.uploads.delete(key)) this.dirty = true;
  }

  /** The diff-id a legacy layer of this path and size had when last read, if any. */
  alias(path: string, size: number): string | undefined {
    return this.aliases.get(`${path}#${size}`);
  }

  recordAlias(path: string, size: number, diffId: string): void {
    if (!DIFF_ID.test(diffId)) return;
    const key = `${path}#${size}`;
    if (this.aliases.get(key) === diffId) return;
    this.aliases.delete(key);
    this.aliases.set(key, diffId);
    for (const oldest of this.aliases.keys()) {
      if (this.aliases.size <= MAX_ALIASES) break;
      this.aliases.delete(oldest);
    }
    this.dirty = true;
  }

  /**
   * Writes the file atomically when anything changed. Calls queue behind each other, so
   * concurrent pushes sharing one cache never interleave their writes.
   */
  save(): Promise<void> {
    const run = async (): Promise<void> => {
      if (!this.file || !this.dirty) return;
      this.dirty = false;
      const layers = Object.fromEntries(this.layers);
      const uploads = Object.fromEntries(this.uploads);
      const aliases = Object.fromEntries(this.aliases);
      const learnedImages = Object.fromEntries(this.learnedImages);
      try {
        await writeJsonAtomic(this.file, { version: 1, layers, uploads, aliases, learnedImages });
      } catch (err) {
        this.dirty = true;
        throw err;
      }
    };
    this.saving = this.saving.then(run, run);
    return this.saving;
  }
}
