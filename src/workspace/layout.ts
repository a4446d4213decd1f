import path from "node:path";
import { z } from "zod";
import { IMAGE_TAG_GRAMMAR, isImageTag } from "../domain/images.js";
import { metadataShape } from "../domain/metadata.js";
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
 * metadata.json: the run's metadata block keys (`Image tag`, …) plus provenance. Unknown keys are
 * kept, so a file written by the original (or a newer version) survives a read-modify-write.
 */
export const metadataFileSchema = z
  .object({
    // Every key of the block must be text: `"Build native CPU": true` is named, not a crash.
    ...metadataShape,
    run_id: z.number().int().optional(),
    run_name: z.string().optional(),
    repository: z.string().optional(),
    artifact_name: z.string().optional(),
    artifact_size_bytes: z.number().optional(),
    artifact_zip: z.string().optional(),
    _run_info: z.record(z.string(), z.unknown()).optional(),
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
