import { describeError, isAbortError } from "../errors.js";
import type { StepReporter } from "../domain/events.js";
import { readJsonFile } from "../util/files.js";
import { metadataFileSchema, type MetadataFile } from "../workspace/layout.js";

/**
 * Which run a tag's downloads came from, for push and clean. The images on disk came from the
 * run metadata.json records, so that is the one a push shows; GitHub's newest successful run for
 * the tag only serves to warn when it is a different one (the original named GitHub's run, even
 * for a directory downloaded earlier).
 */

export interface RunInfo {
  id: number;
  title?: string | null;
  branch?: string | null;
  conclusion?: string | null;
}

/**
 * How the caller knows the run: looked up on GitHub now (every successful run that built the
 * tag, newest first), or handed over (the daemon's xref).
 */
export type RunSource =
  { kind: "github"; lookup: () => Promise<RunInfo[]> } | { kind: "cached"; run: RunInfo };

/** GitHub's runs for the tag, newest first: from the lookup, or the one handed over. */
export async function githubRuns(
  source: RunSource,
  signal: AbortSignal,
): Promise<{ runs: RunInfo[]; failure?: unknown }> {
  if (source.kind === "cached") return { runs: [source.run] };
  try {
    return { runs: await source.lookup() };
  } catch (err) {
    // A stop is a stop, not a reason to carry on without GitHub.
    if (signal.aborted || isAbortError(err)) throw err;
    return { runs: [], failure: err };
  }
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** The run as metadata.json records it, in the original's keys (`_run_branch` or `_run_info`). */
export function storedRunOf(metadata: MetadataFile): RunInfo | undefined {
  const id = metadata.run_id ?? metadata._run_id;
  if (typeof id !== "number") return undefined;
  const info = metadata._run_info ?? {};
  return {
    id,
    title: text(metadata.run_name) ?? text(metadata._run_display) ?? text(info.displayTitle),
    branch: text(metadata._run_branch) ?? text(info.headBranch),
    conclusion: text(metadata._run_conclusion) ?? text(info.conclusion),
  };
}

async function readStoredRun(
  metadataPath: string,
  steps: StepReporter,
): Promise<RunInfo | undefined> {
  try {
    return storedRunOf(await readJsonFile(metadataPath, metadataFileSchema, "run download again"));
  } catch (err) {
    steps.warn(`cannot read ${metadataPath} (${describeError(err)}); run provenance unknown.`);
    return undefined;
  }
}

/** `→ run <id> (<title>), branch=…, conclusion=…`, the original's provenance line. */
export function runLine(run: RunInfo): string {
  return `    → run ${run.id} (${run.title ?? "?"}), branch=${run.branch ?? "?"}, conclusion=${run.conclusion ?? "?"}`;
}

/** Step 1 of a push: the run behind the images, with the original's lines and warnings. */
export async function resolvePushRun(
  source: RunSource | undefined,
  metadataPath: string,
  steps: StepReporter,
  total: number,
  signal: AbortSignal,
): Promise<RunInfo | undefined> {
  let known: RunInfo[] = [];
  if (!source) {
    steps.step(1, total, "Reading run metadata from metadata.json ...");
  } else {
    steps.step(
      1,
      total,
      source.kind === "cached"
        ? "Using cached workflow run metadata."
        : "Resolving run metadata from GitHub ...",
    );
    const found = await githubRuns(source, signal);
    known = found.runs;
    if (found.failure !== undefined) {
      steps.warn(
        `Failed to re-query GitHub for run metadata. Falling back to stored metadata. Details: ${describeError(found.failure)}`,
      );
    }
  }
  const current = known[0];
  const stored = await readStoredRun(metadataPath, steps);
  if (!stored) {
    if (current) steps.text(runLine(current));
    else steps.warn("metadata does not include run_id; run provenance unknown.");
    return current;
  }
  const same = known.find((r) => r.id === stored.id);
  const shown: RunInfo = {
    id: stored.id,
    title: stored.title ?? same?.title,
    branch: stored.branch ?? same?.branch,
    conclusion: stored.conclusion ?? same?.conclusion,
  };
  steps.text(runLine(shown));
  if (current && current.id !== stored.id) {
    steps.warn(
      `Prepared metadata run_id differs from GitHub lookup (${stored.id} vs ${current.id}). ` +
        `Using the prepared metadata: the images on disk came from run ${stored.id}.`,
    );
  }
  return shown;
}
