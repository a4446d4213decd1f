import path from "node:path";
import { z } from "zod";
import { IMAGE_TAG_GRAMMAR, isImageTag } from "../domain/images.js";
import { METADATA_KEYS, type MetadataKey } from "../domain/metadata.js";
import { SyncError } from "../errors.js";
import { isInside } from "../util/files.js";

/**
 * The downloads directory, shared with the original tool (SPEC §2 "On-disk layout"):
 *   <downloads>/<tag>/<tag>.zip, metadata.json, extracted/, upload-plan.json
 */
export interface TagLayout {
  downloadsDir: string;
  imageTag: string;
  dir: string;
  zip: string;
  zipPart: string;
  metadata: string;
  extracted: string;
  plan: string;
}

export function tagLayout(downloadsDir: string, imageTag: string): TagLayout {
  // Checked again here, not only on the command line: the tag may come from a file or the API.
  if (!isImageTag(imageTag)) {
    throw new SyncError(`refusing image tag '${imageTag}': not a valid image tag`, {
      hint: `image tags match ${IMAGE_TAG_GRAMMAR}`,
    });
  }
  const root = path.resolve(downloadsDir);
  const dir = path.join(root, imageTag);
  if (!isInside(root, dir) || dir === root) {
    throw new SyncError(`refusing image tag '${imageTag}': it would leave ${root}`);
  }
  return {
    downloadsDir: root,
    imageTag,
    dir,
    zip: path.join(dir, `${imageTag}.zip`),
    zipPart: path.join(dir, `${imageTag}.zip.part`),
    metadata: path.join(dir, "metadata.json"),
    extracted: path.join(dir, "extracted"),
    plan: path.join(dir, "upload-plan.json"),
  };
}

/**
 * metadata.json: the run's metadata block keys (`Image tag`, …) plus provenance, in the
 * original's names — it writes `_run_info`, `_run_branch` and `_run_conclusion` (and, from its
 * daemon, `_tags`, `_run_display`, `_run_id`) and reads `run_id`, `run_name`, `_run_branch` and
 * `_run_conclusion` back. Python writes `None` as null, so those may be null. Unknown keys are
 * kept, so a file written by the original (or a newer version) survives a read-modify-write.
 */
const metadataKeys = Object.fromEntries(
  METADATA_KEYS.map((key) => [key, z.string().nullable().optional()]),
) as Record<MetadataKey, z.ZodOptional<z.ZodNullable<z.ZodString>>>;

export const metadataFileSchema = z
  .object({
    // Every key of the block must be text (or null, Python's None): `"Build native CPU": true`
    // is named as a bad field rather than crashing whatever reads it.
    ...metadataKeys,
    run_id: z.number().int().nullable().optional(),
    run_name: z.string().nullable().optional(),
    repository: z.string().nullable().optional(),
    artifact_name: z.string().nullable().optional(),
    artifact_size_bytes: z.number().nullable().optional(),
    artifact_zip: z.string().nullable().optional(),
    _run_info: z.record(z.string(), z.unknown()).nullable().optional(),
    _run_branch: z.string().nullable().optional(),
    _run_conclusion: z.string().nullable().optional(),
    _run_display: z.string().nullable().optional(),
    _run_id: z.number().int().nullable().optional(),
    _tags: z.array(z.string()).optional(),
  })
  .catchall(z.unknown());
export type MetadataFile = z.infer<typeof metadataFileSchema>;

export const planArtifactSchema = z.object({
  gitlab_tag: z.string(),
  arch: z.string(),
  repo: z.string(),
  file: z.string(),
});
export type PlanArtifact = z.infer<typeof planArtifactSchema>;

/** upload-plan.json, exactly the original's shape. */
export const uploadPlanSchema = z
  .object({
    image_tag: z.string(),
    presto_ref: z.string().nullable().optional(),
    velox_ref: z.string().nullable().optional(),
    platform: z.string().nullable().optional(),
    artifacts: z.array(planArtifactSchema),
  })
  .catchall(z.unknown());
export type UploadPlan = z.infer<typeof uploadPlanSchema>;
