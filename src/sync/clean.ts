import { promises as fs, type Dirent } from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { StepReporter } from "../domain/events.js";
import { describeError } from "../errors.js";
import { isInside, parseJsonFile } from "../util/files.js";
import { metadataFileSchema, tagLayout } from "../workspace/layout.js";
import { githubRuns, runLine, storedRunOf, type RunSource } from "./run-provenance.js";

/**
 * What `clean` removes for a tag, as the original does: the tag's directory (zip, partial
 * download, metadata, extraction, plan), the original's older per-run directory
 * `<downloads>/<run id>/`, and the artifacts lying at the top of the downloads directory named
 * after the tag or the run (`<tag>.zip`, `presto-images-<run id>.zip`, `….tar.gz`). Every
 * candidate is a direct entry of the downloads directory, so nothing outside it is ever touched
 * whatever metadata.json says (the file is input and may be hostile); a link is removed as a
 * link, its target left alone.
 */

export type CleanKind = "tag directory" | "run directory" | "artifact" | "link";

export interface CleanTarget {
  path: string;
  kind: CleanKind;
}

const ARTIFACT = /\.(zip|tar\.gz)$/;

/**
 * A run id appears in a name as a whole number, not inside a longer one: run 123 names
 * `presto-images-123.zip` but not `presto-images-1234.zip` (the original's `*123*` glob took both).
 */
function namesRun(name: string, runId: number): boolean {
  return new RegExp(`(^|[^0-9A-Za-z])${runId}([^0-9A-Za-z]|$)`).test(name);
}

/** Only a plain positive integer counts as a run id; any other value in the file is ignored. */
const runIdsSchema = z.object({
  run_id: z.number().int().positive().optional().catch(undefined),
  _run_id: z.number().int().positive().optional().catch(undefined),
});

async function storedRunIds(metadataPath: string): Promise<number[]> {
  const read = await parseJsonFile(metadataPath, runIdsSchema);
  return read.ok ? [read.value.run_id, read.value._run_id].filter((id) => id !== undefined) : [];
}

async function entriesOf(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** Every path clean would remove for the tag, the tag's directory first. */
export async function findCleanTargets(
  downloadsDir: string,
  imageTag: string,
  knownRunIds: number[] = [],
): Promise<CleanTarget[]> {
  const layout = tagLayout(downloadsDir, imageTag);
  const runIds = [...new Set([...(await storedRunIds(layout.metadata)), ...knownRunIds])];
  const targets: CleanTarget[] = [];
  // The tag's directory first, then by name (code units, the same on every machine).
  const rank = (e: Dirent): string => (e.name === imageTag ? "" : `~${e.name}`);
  const tagDirFirst = (await entriesOf(layout.downloadsDir)).sort((a, b) =>
    rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0,
  );
  for (const entry of tagDirFirst) {
    const full = path.join(layout.downloadsDir, entry.name);
    if (!isInside(layout.downloadsDir, full) || full === layout.downloadsDir) continue;
    const link = entry.isSymbolicLink();
    const dir = entry.isDirectory();
    let kind: CleanKind | undefined;
    if (entry.name === imageTag) kind = dir ? "tag directory" : "artifact";
    else if (runIds.some((id) => entry.name === String(id)))
      kind = dir ? "run directory" : "artifact";
    else if (
      ARTIFACT.test(entry.name) &&
      (entry.name.includes(imageTag) || runIds.some((id) => namesRun(entry.name, id)))
    ) {
      kind = "artifact";
    }
    if (kind) targets.push({ path: full, kind: link ? "link" : kind });
  }
  return targets;
}

/** The paths alone (the daemon's clean after a push, and after a bad artifact). */
export async function cleanTargets(
  downloadsDir: string,
  imageTag: string,
  knownRunIds: number[] = [],
): Promise<string[]> {
  return (await findCleanTargets(downloadsDir, imageTag, knownRunIds)).map((t) => t.path);
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

export interface CleanRequest {
  imageTag: string;
  downloadsDir: string;
  /** GitHub's newest successful run for the tag; unreachable → the stored metadata serves. */
  run: RunSource;
  /** Asks before deleting; absent means "yes" (--yes). Throws when nobody can answer. */
  confirm?: (question: string) => Promise<boolean>;
}

export interface CleanOutcome {
  removed: string[];
  aborted: boolean;
}

const LABEL: Record<CleanKind, string> = {
  "tag directory": "download + prepared data",
  "run directory": "additional directory",
  artifact: "downloaded artifact",
  link: "link: only the link is removed",
};

/**
 * Step 1 of clean: the run, from GitHub when it answers, else from metadata.json. Returns every
 * run id that names this tag's leftovers (all of GitHub's successful runs of the tag, and the
 * stored one).
 */
async function cleanRuns(
  request: CleanRequest,
  metadataPath: string,
  steps: StepReporter,
  signal: AbortSignal,
): Promise<number[]> {
  steps.step(1, 3, "Resolving run metadata from GitHub ...");
  const { runs, failure } = await githubRuns(request.run, signal);
  const read = await parseJsonFile(metadataPath, metadataFileSchema);
  const stored = read.ok ? storedRunOf(read.value) : undefined;
  const newest = runs[0];
  if (newest) {
    steps.text(runLine(newest));
  } else {
    steps.text(
      stored
        ? `    → warning: failed to re-query GitHub; using stored metadata. Details: ${describeError(failure)}`
        : `    → warning: failed to re-query GitHub and no stored run; cleaning the tag's directory only. Details: ${describeError(failure)}`,
    );
    if (stored) steps.text(runLine(stored));
  }
  return [...runs.map((r) => r.id), ...(stored ? [stored.id] : [])];
}

/** The original's clean: resolve the run, list what goes, ask, remove. */
export async function cleanImageTag(
  ctx: { signal: AbortSignal },
  steps: StepReporter,
  request: CleanRequest,
): Promise<CleanOutcome> {
  const layout = tagLayout(request.downloadsDir, request.imageTag);
  const runIds = await cleanRuns(request, layout.metadata, steps, ctx.signal);
  const targets = await findCleanTargets(request.downloadsDir, request.imageTag, runIds);
  if (targets.length === 0) {
    steps.text("No local artifacts found for this image tag.");
    return { removed: [], aborted: false };
  }
  steps.step(2, 3, "The following paths will be removed:");
  for (const target of targets) {
    const slash = target.kind === "tag directory" || target.kind === "run directory" ? "/" : "";
    steps.text(`  - ${target.path}${slash} (${LABEL[target.kind]})`);
  }
  if (request.confirm && !(await request.confirm("[3/3] Proceed with deletion? [y/N]: "))) {
    steps.text("Clean aborted.");
    return { removed: [], aborted: true };
  }
  const removed = await removeTargets(targets.map((t) => t.path));
  for (const target of targets.filter((t) => removed.includes(t.path))) {
    const what =
      target.kind === "tag directory"
        ? "directory"
        : target.kind === "run directory"
          ? "legacy directory"
          : "legacy file";
    steps.text(`Removed ${what} ${target.path}`);
  }
  steps.text("Clean complete.");
  return { removed, aborted: false };
}
