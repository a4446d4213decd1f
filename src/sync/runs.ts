import { collectRunMetadata } from "../github/metadata.js";
import type { RunMetadata } from "../domain/metadata.js";
import { listWorkflowRuns, type WorkflowRun } from "../github/runs.js";
import { SyncError } from "../errors.js";
import type { GithubServices, SyncContext } from "./context.js";
import { newestFirst } from "./xref.js";

export interface RunWithMetadata {
  run: WorkflowRun;
  metadata?: RunMetadata;
  error?: SyncError;
}

export interface RunsSeen {
  runs: WorkflowRun[];
  seen: RunWithMetadata[];
  /** Log bytes fetched to learn the metadata (0 when all came from the cache). */
  logBytes: number;
}

/**
 * Recent runs with their parsed metadata. Metadata is only fetched for the runs the caller
 * will use (successful ones unless told otherwise), and comes from the cache when it can.
 */
export async function runsWithMetadata(
  ctx: SyncContext,
  github: GithubServices,
  { includeFailed }: { includeFailed: boolean },
): Promise<RunsSeen> {
  const { options, client, cache } = github;
  const runs = await listWorkflowRuns(client, {
    repo: options.repo,
    workflow: options.workflow,
    branch: options.branch,
    limit: options.limit,
  });
  const wanted = includeFailed ? runs : runs.filter((r) => r.conclusion === "success");
  const results = await collectRunMetadata(client, {
    repo: options.repo,
    runs: wanted,
    cache,
    logger: ctx.logger,
    signal: ctx.signal,
  });
  let logBytes = 0;
  let fromCache = 0;
  const seen = results.map(({ run, result, error }) => {
    if (result) {
      logBytes += result.bytesFetched;
      if (result.source === "cache") fromCache += 1;
    }
    if (error) ctx.logger.warn({ runId: run.id }, error.message);
    return { run, metadata: result?.metadata, error };
  });
  ctx.logger.info(
    { runs: runs.length, inspected: wanted.length, fromCache, logBytes },
    "collected run metadata",
  );
  return { runs, seen, logBytes };
}

export interface RunForTag {
  run: WorkflowRun;
  metadata: RunMetadata;
  /** Other successful runs with the same tag, newest first. */
  others: WorkflowRun[];
}

/** The newest successful run that built `imageTag`, as the original's find_run_metadata_for_tag. */
export async function findRunForTag(
  ctx: SyncContext,
  github: GithubServices,
  imageTag: string,
): Promise<RunForTag> {
  const { seen } = await runsWithMetadata(ctx, github, { includeFailed: false });
  const matches = seen
    .filter(
      (s): s is RunWithMetadata & { metadata: RunMetadata } =>
        s.metadata?.["Image tag"] === imageTag,
    )
    .sort((a, b) => newestFirst(a.run, b.run));
  const [newest, ...others] = matches;
  if (!newest) {
    const errors = seen.filter((s) => s.error).map((s) => s.run.id);
    throw new SyncError(
      `No successful workflow run found with image tag '${imageTag}' among the last ${github.options.limit} runs`,
      {
        hint:
          errors.length > 0
            ? `the metadata of runs ${errors.join(", ")} could not be read; see the warnings above`
            : "check the tag (gh-list shows recent ones), or raise --limit / change --branch",
      },
    );
  }
  return { run: newest.run, metadata: newest.metadata, others: others.map((o) => o.run) };
}
