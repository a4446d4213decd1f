import type { GithubServices, GitlabServices, SyncContext } from "./context.js";
import { runsWithMetadata } from "./runs.js";
import { crossReference, expectedFromRuns, type XrefResult } from "./xref.js";

/** GitLab's tags as `x86/presto-coordinator:<tag>`, the same form the expected tags take. */
export async function presentTags(gitlab: GitlabServices): Promise<Set<string>> {
  const listing = await gitlab.client.listAllTags(gitlab.options.gitlabProject, { details: false });
  const present = new Set<string>();
  for (const { repository, tags } of listing) {
    const name = repository.name || repository.path;
    for (const tag of tags) present.add(`${name}:${tag.name}`);
  }
  return present;
}

/** The whole comparison, shared by the xref command and the daemon. */
export async function computeXref(
  ctx: SyncContext,
  github: GithubServices,
  gitlab: GitlabServices,
): Promise<{
  result: XrefResult;
  failures: Array<{ runId: number; error: string }>;
  logBytes: number;
  runs: number;
}> {
  // Both sides are independent: ask GitLab while the run logs are being read.
  const [{ seen, logBytes }, present] = await Promise.all([
    runsWithMetadata(ctx, github, { includeFailed: false }),
    presentTags(gitlab),
  ]);
  const expected = expectedFromRuns(seen);
  const failures = seen
    .filter((s) => s.error)
    .map((s) => ({ runId: s.run.id, error: s.error?.message ?? "" }));
  return { result: crossReference(expected, present), failures, logBytes, runs: seen.length };
}
