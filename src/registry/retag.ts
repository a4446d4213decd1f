import { Readable } from "node:stream";
import { z } from "zod";
import { SyncError } from "../errors.js";
import { mapLimit } from "../net/limit.js";
import type { Logger } from "../report/logger.js";
import type { ManifestResult, RegistryClient } from "./client.js";
import { ANY_MANIFEST, isManifestList, shortDigest } from "./media-types.js";

export interface RetagOptions {
  client: RegistryClient;
  sourceRepo: string;
  /** A tag or a `sha256:` digest. */
  sourceRef: string;
  targetRepo: string;
  targetTag: string;
  logger: Logger;
  signal?: AbortSignal;
}

export interface RetagResult {
  digest: string;
  mediaType: string;
  /** Blobs linked into the target repository by the registry (cross-repository retags). */
  mountedBlobs: number;
  /** Blobs the registry would not mount, streamed through this machine instead. */
  copiedBlobs: number;
  /** The target tag already named this very manifest; nothing was written. */
  unchanged: boolean;
}

const descriptorSchema = z.object({
  mediaType: z.string().optional(),
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
});

const manifestSchema = z.object({
  mediaType: z.string().optional(),
  config: descriptorSchema.optional(),
  layers: z.array(descriptorSchema).optional(),
  manifests: z.array(descriptorSchema).optional(),
});

type Descriptor = z.infer<typeof descriptorSchema>;

/** What messages about a manifest name it by. */
type ManifestNames = Pick<RetagOptions, "sourceRepo" | "sourceRef">;

/** Blob checks and mounts in flight at once. */
const MOUNT_CONCURRENCY = 4;

/**
 * Gives an image a new name through the registry API: the manifest is read and stored again,
 * byte for byte, under the target tag, so its digest does not change and no layer moves. Into
 * another repository the blobs are mounted first (the registry links them; no bytes travel),
 * and for a multi-platform list every child manifest is copied too.
 */
export async function retag(options: RetagOptions): Promise<RetagResult> {
  const { client, sourceRepo, sourceRef, targetRepo, targetTag, logger, signal } = options;
  const source = await client.getManifest(sourceRepo, sourceRef, ANY_MANIFEST, signal);
  if (!source) {
    throw new SyncError(
      `source ${sourceRepo}:${sourceRef} not found in registry ${client.registry}`,
      {
        hint: "check the repository and tag (gitlab-list shows what the registry holds), or push the image first",
      },
    );
  }
  if (sourceRef.startsWith("sha256:") && source.digest !== sourceRef) {
    throw new SyncError(
      `registry ${client.registry} returned a manifest for ${sourceRepo}@${shortDigest(sourceRef)} whose digest is ${shortDigest(source.digest)}`,
      { hint: "the registry is not serving what it stores; ask its administrator" },
    );
  }
  if ((await client.manifestDigest(targetRepo, targetTag, signal)) === source.digest) {
    logger.info(
      { targetRepo, targetTag, digest: source.digest },
      "target tag already points at the source image",
    );
    return {
      digest: source.digest,
      mediaType: manifestMediaType(source, options),
      mountedBlobs: 0,
      copiedBlobs: 0,
      unchanged: true,
    };
  }
  const result = await copyManifest(options, source, targetTag);
  logger.info(
    {
      sourceRepo,
      sourceRef,
      targetRepo,
      targetTag,
      digest: result.digest,
      mounted: result.mountedBlobs,
      copied: result.copiedBlobs,
    },
    `tagged ${client.registry}/${targetRepo}:${targetTag}`,
  );
  return { ...result, unchanged: false };
}

/**
 * Stores `source` (a manifest read from `sourceRepo`) byte for byte in the target repository
 * under `reference`, a tag or its own digest; into another repository everything it refers to
 * (blobs, and a list's child manifests) is made present first.
 */
export async function copyManifest(
  options: Omit<RetagOptions, "targetTag">,
  source: ManifestResult,
  reference: string,
): Promise<Omit<RetagResult, "unchanged">> {
  const { client, sourceRepo, targetRepo, signal } = options;
  const mediaType = manifestMediaType(source, options);
  const result = { digest: source.digest, mediaType, mountedBlobs: 0, copiedBlobs: 0 };
  if (targetRepo !== sourceRepo) await copyReferences(options, source, mediaType, result);
  const digest = await client.putManifest(targetRepo, reference, source.bytes, mediaType, signal);
  if (digest !== source.digest) {
    throw new SyncError(
      `copying ${sourceRepo}:${options.sourceRef} gave ${targetRepo}:${reference} the digest ${shortDigest(digest)}, not ${shortDigest(source.digest)}`,
      { hint: "the registry rewrote the manifest; pull and push the image instead" },
    );
  }
  return result;
}

/** The Content-Type the registry sent, or, if that says nothing useful, the manifest's own field. */
function manifestMediaType(manifest: ManifestResult, options: ManifestNames): string {
  if (ANY_MANIFEST.includes(manifest.mediaType)) return manifest.mediaType;
  const own = parseManifest(manifest, options).mediaType;
  if (own && ANY_MANIFEST.includes(own)) return own;
  throw new SyncError(
    `${options.sourceRepo}:${options.sourceRef} is a ${manifest.mediaType || "manifest of unknown type"}, which retag cannot copy`,
    {
      hint: "only Docker schema 2 and OCI manifests and lists can be retagged; push the image again",
    },
  );
}

function parseManifest(
  manifest: ManifestResult,
  options: ManifestNames,
): z.infer<typeof manifestSchema> {
  let value: unknown;
  try {
    value = JSON.parse(manifest.bytes.toString("utf8"));
  } catch {
    value = undefined;
  }
  const parsed = manifestSchema.safeParse(value);
  if (!parsed.success) {
    throw new SyncError(`the manifest of ${options.sourceRepo}:${options.sourceRef} is not valid`, {
      hint: "the source image is damaged in the registry; push it again",
    });
  }
  return parsed.data;
}

/** Makes everything `manifest` refers to present in the target repository. */
async function copyReferences(
  options: Omit<RetagOptions, "targetTag">,
  manifest: ManifestResult,
  mediaType: string,
  result: { mountedBlobs: number; copiedBlobs: number },
): Promise<void> {
  const { client, sourceRepo, targetRepo, signal } = options;
  const parsed = parseManifest(manifest, options);
  if (isManifestList(mediaType)) {
    for (const child of parsed.manifests ?? []) {
      const accept = child.mediaType ? [child.mediaType, ...ANY_MANIFEST] : ANY_MANIFEST;
      const bytes = await client.getManifest(sourceRepo, child.digest, accept, signal);
      if (!bytes) {
        throw new SyncError(
          `${sourceRepo}:${options.sourceRef} lists ${shortDigest(child.digest)}, which registry ${client.registry} does not have`,
          { hint: "the source image is incomplete in the registry; push it again" },
        );
      }
      const childType = manifestMediaType(bytes, options);
      await copyReferences(options, bytes, childType, result);
      // The list names its children by digest, so they must exist under that digest in the target.
      await client.putManifest(targetRepo, child.digest, bytes.bytes, childType, signal);
    }
    return;
  }
  const blobs = new Map<string, Descriptor>();
  for (const d of [...(parsed.config ? [parsed.config] : []), ...(parsed.layers ?? [])])
    blobs.set(d.digest, d);
  await mapLimit([...blobs.values()], MOUNT_CONCURRENCY, async (blob) => {
    if (await client.blobExists(targetRepo, blob.digest, signal)) return;
    if (await client.mountBlob(targetRepo, blob.digest, sourceRepo, signal)) {
      result.mountedBlobs += 1;
      return;
    }
    // Foreign layers (Windows base images) live outside the registry and need not be in it.
    if (blob.urls && blob.urls.length > 0) return;
    options.logger.warn(
      { sourceRepo, targetRepo, digest: blob.digest, size: blob.size },
      "the registry would not mount a blob; copying it through this machine",
    );
    await client.uploadBlob(
      targetRepo,
      blob.digest,
      blob.size,
      () => lazyBlob(client, sourceRepo, blob.digest, signal),
      signal,
    );
    result.copiedBlobs += 1;
  });
}

/** A stream that starts the GET only when read, so each upload attempt fetches afresh. */
function lazyBlob(
  client: RegistryClient,
  repository: string,
  digest: string,
  signal: AbortSignal | undefined,
): Readable {
  return Readable.from(
    (async function* () {
      yield* await client.getBlob(repository, digest, signal);
    })(),
  );
}
