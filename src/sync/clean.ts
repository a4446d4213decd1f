import { promises as fs } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { isInside, parseJsonFile } from "../util/files.js";
import { tagLayout } from "../workspace/layout.js";

/**
 * What `clean` removes for a tag: the tag's directory (zip, partial download, metadata,
 * extraction, plan) and the original tool's older layout (`<downloads>/<run_id>/` and
 * `<downloads>/presto-images-<run_id>.zip`). Every candidate is checked to lie inside the
 * downloads directory, whatever metadata.json says: the file is input and may be hostile.
 */
export async function cleanTargets(downloadsDir: string, imageTag: string): Promise<string[]> {
  const layout = tagLayout(downloadsDir, imageTag);
  const candidates = [layout.dir];
  const runId = await runIdOf(layout.metadata);
  if (runId !== undefined) {
    candidates.push(path.join(layout.downloadsDir, String(runId)));
    candidates.push(path.join(layout.downloadsDir, `presto-images-${runId}.zip`));
  }
  const targets: string[] = [];
  for (const candidate of candidates) {
    if (!isInside(layout.downloadsDir, candidate) || candidate === layout.downloadsDir) continue;
    if (await existsNoFollow(candidate)) targets.push(candidate);
  }
  return targets;
}

/** Only a plain positive integer counts as a run id; anything else in the file is ignored. */
async function runIdOf(metadataPath: string): Promise<number | undefined> {
  const result = await parseJsonFile(
    metadataPath,
    z.object({ run_id: z.number().int().positive() }),
  );
  return result.ok ? result.value.run_id : undefined;
}

async function existsNoFollow(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes the targets. `fs.rm` does not follow symbolic links: a link inside the tag directory
 * pointing elsewhere is removed as a link, its target untouched.
 */
export async function removeTargets(targets: string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const target of targets) {
    if (!(await existsNoFollow(target))) continue;
    await fs.rm(target, { recursive: true, force: true });
    removed.push(target);
  }
  return removed;
}
