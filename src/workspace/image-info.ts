import { promises as fs } from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { ImageTarballInfo } from "../archive/docker-save.js";
import { DIGEST_PATTERN } from "../domain/reference.js";
import { readJsonFileOrWarn, writeJsonAtomic, type Warner } from "../util/files.js";

/**
 * What prepare learnt of each tarball (layers, diff IDs, config digest), kept beside the plan so a
 * later `push --engine registry` need not read a multi-GiB tarball once more just to learn it.
 * An entry counts only while the file keeps the size and modification time it had then.
 */
export const IMAGE_INFO_FILE = ".image-info.json";

const infoSchema = z.object({
  layout: z.enum(["legacy", "oci"]),
  repoTags: z.array(z.string()),
  config: z.string(),
  configDigest: z.string().regex(DIGEST_PATTERN),
  layers: z.array(z.string()),
  layerSizes: z.array(z.number().int().nonnegative()),
  diffIds: z.array(z.string().regex(DIGEST_PATTERN)),
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
});

const fileSchema = z.record(
  z.string(),
  z.object({ file: z.string(), size: z.number(), mtimeMs: z.number(), info: infoSchema }),
);

/** Records, for each GitLab tag, its tarball's identity and what it holds. */
export async function saveImageInfo(
  tagDir: string,
  images: Map<string, { file: string; info: ImageTarballInfo }>,
): Promise<void> {
  const record: z.infer<typeof fileSchema> = {};
  for (const [gitlabTag, { file, info }] of images) {
    const stat = await fs.stat(file);
    record[gitlabTag] = { file, size: stat.size, mtimeMs: stat.mtimeMs, info };
  }
  await writeJsonAtomic(path.join(tagDir, IMAGE_INFO_FILE), record);
}

/**
 * The recorded inspections still valid for the files as they are now; empty when none are. A
 * damaged record is only a lost shortcut: `warner` hears of it and the tarballs are read again.
 */
export async function loadImageInfo(
  tagDir: string,
  warner?: Warner,
): Promise<Map<string, ImageTarballInfo>> {
  const valid = new Map<string, ImageTarballInfo>();
  const file = path.join(tagDir, IMAGE_INFO_FILE);
  const recorded = await readJsonFileOrWarn(file, fileSchema, warner, "recorded image inspections");
  for (const [gitlabTag, entry] of Object.entries(recorded ?? {})) {
    try {
      const stat = await fs.stat(entry.file);
      if (stat.size === entry.size && stat.mtimeMs === entry.mtimeMs)
        valid.set(gitlabTag, entry.info);
    } catch {
      // The tarball is gone: the push will say so.
    }
  }
  return valid;
}
