import { z } from "zod";
import { indexAnnotations, type Annotations } from "../domain/provenance.js";
import { DIGEST_PATTERN } from "../domain/reference.js";
import { SyncError } from "../errors.js";
import { sleep } from "../net/retry.js";
import type { Logger } from "../report/logger.js";
import { parseJsonBytes } from "../util/text.js";
import { sha256Digest, type ManifestResult, type RegistryClient } from "./client.js";
import { ANY_MANIFEST, IMAGE_MANIFESTS, OCI_INDEX, shortDigest } from "./media-types.js";
import { RegistryError } from "./registry-error.js";
import { copyManifest } from "./retag.js";

/**
 * The multi-architecture tag: an OCI image index at `<project>/<repo>:<tag>` listing the image of
 * each platform a build made (`x86/<repo>:<tag>`, `arm/<repo>:<tag>`), so one name pulls the right
 * image on either. Builds of the two platforms land at different times, so the index is read,
 * merged and written again each time: entries this call does not replace are kept.
 */

export interface IndexSource {
  /** One platform's repository: `hercules/veloxtesting/x86/presto-coordinator`. */
  repository: string;
  /**
   * Provenance for this entry (the build being written now). Otherwise the image's own manifest
   * annotations are used, or what the index already said of the same image.
   */
  annotations?: Annotations;
}

export interface ImageIndexOptions {
  client: RegistryClient;
  /** Where the index goes: `hercules/veloxtesting/presto-coordinator`. */
  repository: string;
  tag: string;
  /** The repositories whose image under `tag`, when there, the index lists. */
  sources: IndexSource[];
  logger: Logger;
  signal?: AbortSignal;
}

export interface IndexEntrySummary {
  /** `linux/amd64`, `linux/arm64`, …; `unknown` for an entry without a platform. */
  platform: string;
  digest: string;
  /** The repository it was copied from by this call; absent for an entry kept as it was. */
  from?: string;
}

export interface ImageIndexResult {
  digest: string;
  entries: IndexEntrySummary[];
  /** False when the index already said exactly this: nothing was written. */
  written: boolean;
}

const digest = z.string().regex(DIGEST_PATTERN);
const stringMap = z.record(z.string(), z.string());
const platformSchema = z.looseObject({
  architecture: z.string().min(1),
  os: z.string().min(1),
  variant: z.string().min(1).optional(),
});
type Platform = z.infer<typeof platformSchema>;
const entrySchema = z.looseObject({
  mediaType: z.string().min(1),
  digest,
  size: z.number().int().nonnegative(),
  platform: platformSchema.optional(),
  annotations: stringMap.optional(),
});
type Entry = z.infer<typeof entrySchema>;
const indexSchema = z.looseObject({ manifests: z.array(entrySchema) });
const imageSchema = z.looseObject({
  config: z.object({ digest, size: z.number().int().nonnegative() }),
  annotations: stringMap.optional(),
});
const configSchema = z.object({
  architecture: z.string().min(1),
  os: z.string().min(1),
  variant: z.string().min(1).optional(),
});

/** Rounds of read → merge → write; the one after a write only confirms what it finds. */
const MAX_ROUNDS = 6;
/** The wait before reading again after a spoiled write, jittered: two writers do not meet again. */
const RACE_WAIT_MS = 100;
/**
 * What a registry answers an index write while another writer is at the same index: a child
 * manifest or link it read mid-rewrite (Distribution's file links are not written atomically),
 * or a conflict. The index is read again and merged; none of these means our write is wrong.
 */
const RACE_CODES = new Set(["DIGEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]);

const isWriteRace = (err: unknown): err is RegistryError =>
  err instanceof RegistryError && (err.status === 409 || RACE_CODES.has(err.code ?? ""));
/** An image config is kilobytes; this bounds what a hostile registry can make us hold. */
const MAX_CONFIG_BYTES = 4 << 20;

/**
 * Writes (or updates) the index: the image each source holds under `tag` replaces the entry of
 * its platform, other entries stay. Each image is first copied into the index's repository by
 * digest, its blobs mounted, so no layer byte moves. After a write the index is read back and
 * merged again: a second writer (the other platform's daemon) that wrote in between is merged
 * with rather than overwritten, and the result is settled when a round finds nothing to change.
 * A write refused as registries refuse one while another writer is at the index (see
 * RACE_CODES) is read again and merged; an index that ends up listing every image is success.
 */
export async function writeImageIndex(options: ImageIndexOptions): Promise<ImageIndexResult> {
  const { client, repository, tag, signal } = options;
  const platforms = new Map<string, Platform>();
  let written = false;
  let race: RegistryError | undefined;
  for (let round = 1; round <= MAX_ROUNDS; round += 1) {
    if (race) await sleep(RACE_WAIT_MS * (1 + Math.random()), signal);
    const current = await client.getManifest(repository, tag, ANY_MANIFEST, signal);
    const kept = current ? await currentEntries(options, current, platforms) : [];
    const fresh = await sourceEntries(options, kept, platforms);
    if (fresh.length === 0 && kept.length === 0) {
      throw new SyncError(
        `no image to index: none of ${options.sources.map((s) => `${s.repository}:${tag}`).join(", ")} is in registry ${client.registry}`,
        { hint: "push the images of the build first" },
      );
    }
    const entries = merge(kept, fresh);
    const bytes = indexBytes(entries.map((e) => e.entry));
    const summary = entries.map((e) => ({
      platform: platformKey(e.entry.platform),
      digest: e.entry.digest,
      ...(e.from ? { from: e.from.repository } : {}),
    }));
    if (current?.digest === sha256Digest(bytes)) {
      logIndex(options, current.digest, summary, written);
      return { digest: current.digest, entries: summary, written };
    }
    try {
      await putIndex(options, entries, bytes);
      written = true;
      race = undefined;
    } catch (err) {
      if (!isWriteRace(err)) throw err;
      race = err;
      options.logger.info(
        { index: `${repository}:${tag}`, code: err.code, status: err.status },
        `multi-arch index ${client.registry}/${repository}:${tag}: the registry answered ${err.code ?? err.status} while another writer may be at it; reading it again`,
      );
    }
  }
  // Out of rounds: an index that lists every image there is, whoever wrote it, is what was asked.
  const settled = await settledIndex(options);
  if (settled) {
    logIndex(options, settled.digest, settled.entries, written);
    return { ...settled, written };
  }
  throw (
    race ??
    new SyncError(`the index ${repository}:${tag} kept changing while it was being written`, {
      hint: "another process is writing the same index at this moment; run again",
    })
  );
}

/** The index names its images by digest: each is copied into its repository, then the index. */
async function putIndex(
  options: ImageIndexOptions,
  entries: readonly Candidate[],
  bytes: Buffer,
): Promise<void> {
  const { client, repository, tag, signal } = options;
  for (const { from, manifest } of entries) {
    if (!from || !manifest) continue;
    await copyManifest(
      {
        client,
        sourceRepo: from.repository,
        sourceRef: tag,
        targetRepo: repository,
        logger: options.logger,
        ...(signal ? { signal } : {}),
      },
      manifest,
      manifest.digest,
    );
  }
  await client.putManifest(repository, tag, bytes, OCI_INDEX, signal);
}

/** The index as it stands, when it lists every source's image; else undefined. */
async function settledIndex(
  options: ImageIndexOptions,
): Promise<{ digest: string; entries: IndexEntrySummary[] } | undefined> {
  const { client, repository, tag, signal } = options;
  if ((await unlistedSources(options)).length > 0) return undefined;
  const current = await client.getManifest(repository, tag, ANY_MANIFEST, signal);
  const index = current && indexSchema.safeParse(parseJsonBytes(current.bytes));
  if (!current || !index?.success) return undefined;
  return {
    digest: current.digest,
    entries: index.data.manifests.map((m) => ({
      platform: platformKey(m.platform),
      digest: m.digest,
    })),
  };
}

/**
 * The sources whose image under `tag` the index does not list by digest: what a writer stopped
 * between pushing an image and writing the index leaves (the tag there, one platform short).
 * Every source with an image counts when the tag holds no index; a source without one never.
 */
export async function unlistedSources(
  options: Pick<ImageIndexOptions, "client" | "repository" | "tag" | "sources" | "signal">,
): Promise<string[]> {
  const { client, repository, tag, signal } = options;
  const current = await client.getManifest(repository, tag, ANY_MANIFEST, signal);
  const index =
    current && !IMAGE_MANIFESTS.includes(current.mediaType)
      ? indexSchema.safeParse(parseJsonBytes(current.bytes))
      : undefined;
  const listed = new Set(index?.success ? index.data.manifests.map((m) => m.digest) : []);
  const unlisted: string[] = [];
  for (const source of options.sources) {
    const image = await client.manifestDigest(source.repository, tag, signal);
    if (image !== undefined && !listed.has(image)) unlisted.push(source.repository);
  }
  return unlisted;
}

interface Candidate {
  entry: Entry;
  /** Set for an image this call copies in. */
  from?: IndexSource;
  manifest?: ManifestResult;
}

/** What the tag holds now: an index's entries, or a single image, which becomes one entry. */
async function currentEntries(
  options: ImageIndexOptions,
  current: ManifestResult,
  platforms: Map<string, Platform>,
): Promise<Entry[]> {
  const json = parseJsonBytes(current.bytes);
  const index = indexSchema.safeParse(json);
  if (index.success && !IMAGE_MANIFESTS.includes(current.mediaType)) return index.data.manifests;
  if (IMAGE_MANIFESTS.includes(current.mediaType)) {
    const image = await imageEntry(options, options.repository, current, platforms);
    return [image];
  }
  throw new SyncError(
    `${options.repository}:${options.tag} holds a ${current.mediaType || "manifest"} this tool cannot read as an index`,
    { hint: "delete that tag, or choose another registry project" },
  );
}

/** Each source's image under the tag, as an index entry. */
async function sourceEntries(
  options: ImageIndexOptions,
  kept: readonly Entry[],
  platforms: Map<string, Platform>,
): Promise<Candidate[]> {
  const { client, tag, signal } = options;
  const found: Candidate[] = [];
  for (const source of options.sources) {
    const manifest = await client.getManifest(source.repository, tag, ANY_MANIFEST, signal);
    if (!manifest) continue;
    if (!IMAGE_MANIFESTS.includes(manifest.mediaType)) {
      throw new SyncError(
        `${source.repository}:${tag} is a ${manifest.mediaType || "manifest of unknown type"}, not one image, so it cannot be an entry of the index`,
        { hint: "push that platform's image under this tag again" },
      );
    }
    const listed = kept.find((k) => k.digest === manifest.digest);
    // Already an entry: its platform is known, and its config need not be read again.
    const entry = await imageEntry(
      options,
      source.repository,
      manifest,
      platforms,
      listed?.platform,
    );
    const annotations = source.annotations ?? entry.annotations ?? listed?.annotations;
    found.push({
      entry: { ...entry, ...(annotations ? { annotations } : {}) },
      from: source,
      manifest,
    });
  }
  const seen = new Map<string, string>();
  for (const { entry, from } of found) {
    const key = platformKey(entry.platform);
    const other = seen.get(key);
    if (other !== undefined) {
      throw new SyncError(
        `${other}:${tag} and ${from?.repository ?? "?"}:${tag} are both ${key} images; an index holds one image per platform`,
        { hint: "check which build pushed the wrong platform, and push it again" },
      );
    }
    seen.set(key, from?.repository ?? "?");
  }
  return found;
}

/** An image manifest as an index entry: its platform read from the image's config. */
async function imageEntry(
  options: ImageIndexOptions,
  repository: string,
  manifest: ManifestResult,
  platforms: Map<string, Platform>,
  known?: Platform,
): Promise<Entry> {
  const image = imageSchema.safeParse(parseJsonBytes(manifest.bytes));
  if (!image.success) {
    throw new SyncError(
      `the manifest of ${repository}:${options.tag} (${shortDigest(manifest.digest)}) is not a valid image manifest`,
      { hint: "push that image again" },
    );
  }
  const config = image.data.config.digest;
  const platform =
    known ?? platforms.get(config) ?? (await configPlatform(options, repository, config));
  platforms.set(config, platform);
  return {
    mediaType: manifest.mediaType,
    digest: manifest.digest,
    size: manifest.bytes.length,
    platform,
    ...(image.data.annotations ? { annotations: image.data.annotations } : {}),
  };
}

async function configPlatform(
  options: ImageIndexOptions,
  repository: string,
  digest: string,
): Promise<Platform> {
  const bytes = await options.client.getVerifiedBlob(
    repository,
    digest,
    MAX_CONFIG_BYTES,
    options.signal,
  );
  const config = configSchema.safeParse(parseJsonBytes(bytes));
  if (!config.success) {
    throw new SyncError(
      `the config ${shortDigest(digest)} of ${repository} names no architecture and os, so its platform is unknown`,
      { hint: "rebuild the image with a platform, or leave it out of the index" },
    );
  }
  const { architecture, os, variant } = config.data;
  return { architecture, os, ...(variant ? { variant } : {}) };
}

/** The index's entries: kept ones first replaced by the fresh image of their platform. */
function merge(kept: readonly Entry[], fresh: readonly Candidate[]): Candidate[] {
  const byKey = new Map<string, Candidate>();
  for (const entry of kept) byKey.set(entryKey(entry), { entry });
  for (const candidate of fresh) {
    const key = entryKey(candidate.entry);
    const old = byKey.get(key);
    // Already listed, as it is: nothing to copy.
    if (old && old.entry.digest === candidate.entry.digest && sameAnnotations(old, candidate))
      continue;
    byKey.set(key, candidate);
  }
  return [...byKey.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, candidate]) => candidate);
}

function sameAnnotations(a: Candidate, b: Candidate): boolean {
  return JSON.stringify(a.entry.annotations ?? {}) === JSON.stringify(b.entry.annotations ?? {});
}

/** `linux/arm64`; arm64's v8 variant is arm64 itself, as containerd normalises it. */
function platformKey(platform: Platform | undefined): string {
  if (!platform) return "unknown";
  const variant =
    platform.variant && !(platform.architecture === "arm64" && platform.variant === "v8")
      ? `/${platform.variant}`
      : "";
  return `${platform.os}/${platform.architecture}${variant}`;
}

/** Entries without a platform (attestations and the like) are kept apart, each by its digest. */
function entryKey(entry: Entry): string {
  return entry.platform ? platformKey(entry.platform) : `~${entry.digest}`;
}

/** The same entries always give the same bytes, so an unchanged index is not written again. */
function indexBytes(entries: readonly Entry[]): Buffer {
  const annotations = indexAnnotations(entries);
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: entries.map((e) => ({
      ...e,
      ...(e.annotations ? { annotations: sorted(e.annotations) } : {}),
    })),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
  return Buffer.from(JSON.stringify(index, null, 2));
}

function sorted(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.keys(map)
      .sort()
      .map((k) => [k, map[k] as string]),
  );
}

function logIndex(
  options: ImageIndexOptions,
  digest: string,
  entries: IndexEntrySummary[],
  written: boolean,
): void {
  options.logger.info(
    { digest, platforms: entries.map((e) => e.platform) },
    written
      ? `multi-arch index ${options.client.registry}/${options.repository}:${options.tag} written`
      : `multi-arch index ${options.client.registry}/${options.repository}:${options.tag} already up to date`,
  );
}
