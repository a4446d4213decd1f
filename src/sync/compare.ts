import type { WorkflowRun } from "../github/runs.js";
import type { GithubServices, GitlabServices, SyncContext } from "./context.js";
import { runsWithMetadata } from "./runs.js";
import { archForPlatform } from "../domain/images.js";
import { crossReference, expectedFromRuns, type ExpectedTags, type XrefResult } from "./xref.js";

export interface GitlabState {
  /** Repository names below the project: `x86/presto-coordinator`. */
  repositories: Set<string>;
  /** Tags as `x86/presto-coordinator:<tag>`, the same form the expected tags take. */
  present: Set<string>;
}

/** GitLab's view of the project: which repositories exist and which tags they hold. */
export async function gitlabState(gitlab: GitlabServices): Promise<GitlabState> {
  const listing = await gitlab.client.listAllTags(gitlab.options.gitlabProject, { details: false });
  const repositories = new Set<string>();
  const present = new Set<string>();
  for (const { repository, tags } of listing) {
    const name = repository.name || repository.path;
    repositories.add(name);
    for (const tag of tags) present.add(`${name}:${tag.name}`);
  }
  return { repositories, present };
}

/** The whole comparison, shared by the xref command and the daemon. */
export async function computeXref(
  ctx: SyncContext,
  github: GithubServices,
  gitlab: GitlabServices,
  options: { platform?: string | undefined } = {},
): Promise<{
  result: XrefResult;
  failures: Array<{ runId: number; error: string }>;
  logBytes: number;
  runs: number;
  expected: ExpectedTags;
  present: Set<string>;
  /** Every run listed, as GitHub gave them. */
  listed: WorkflowRun[];
}> {
  const { platform } = options;
  // Both sides are independent: ask GitLab while the run logs are being read.
  const [{ seen, logBytes, listed }, { present }] = await Promise.all([
    runsWithMetadata(ctx, github, { includeFailed: false, platform }),
    gitlabState(gitlab),
  ]);
  const expected = expectedFromRuns(seen);
  const failures = seen
    .filter((s) => s.error)
    .map((s) => ({ runId: s.run.id, error: s.error?.message ?? "" }));
  const arch = platform ? archForPlatform(platform) : undefined;
  return {
    result: crossReference(expected, present, arch ? { arch } : {}),
    failures,
    logBytes,
    runs: seen.length,
    expected,
    present,
    listed,
  };
}
