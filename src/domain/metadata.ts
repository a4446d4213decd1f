import { z } from "zod";

/**
 * The build metadata block (SPEC §1.2) that the workflow's "Record build metadata" step prints:
 * its keys, in the order the workflow prints them, and the shape of a parsed block. GitHub's
 * logs, the metadata cache and metadata.json all hold it.
 */
export const METADATA_KEYS = [
  "Presto repository",
  "Presto ref",
  "Velox repository",
  "Velox ref",
  "Target platform",
  "Worker bundle mode",
  "Build native CPU",
  "Build native GPU",
  "Build Java worker",
  "Image tag",
  // Printed by older revisions of the workflow only.
  "Registry push",
  "Generated at",
] as const;

export type MetadataKey = (typeof METADATA_KEYS)[number];
export type RunMetadata = Partial<Record<MetadataKey, string>>;

const KNOWN = new Set<string>(METADATA_KEYS);

/**
 * Where a run's block was found: its build job's log, or the run-log zip's step file or job
 * file. Kept with each cached block, so a cache hit can still say where the block came from.
 */
export const METADATA_SOURCES = ["job-log", "run-log-step", "run-log-job"] as const;
export type MetadataSource = (typeof METADATA_SOURCES)[number];

/** Every metadata key as an optional string: what each file holding a block checks. */
export const metadataShape = Object.fromEntries(
  METADATA_KEYS.map((key) => [key, z.string().optional()]),
) as Record<MetadataKey, z.ZodOptional<z.ZodString>>;

/** The metadata keys of a record, every value a string (a file may hold other keys too). */
export const runMetadataSchema = z
  .object(metadataShape)
  .catchall(z.unknown())
  .transform((record) => pickMetadata(record));

/** The metadata keys of a record whose values are strings, in the block's order. */
export function pickMetadata(record: Record<string, unknown>): RunMetadata {
  const metadata: RunMetadata = {};
  for (const key of METADATA_KEYS) {
    const value = record[key];
    if (typeof value === "string") metadata[key] = value;
  }
  return metadata;
}

export function isMetadataKey(key: string): key is MetadataKey {
  return KNOWN.has(key);
}
