import { Command } from "commander";
import { METADATA_KEYS, type RunMetadata } from "../domain/metadata.js";
import { NoMetadataError } from "../github/errors.js";
import { RULE } from "../report/output.js";
import { IMAGE_TAG_GRAMMAR, expectedImages, invalidImageTag } from "../domain/images.js";
import { runRef } from "../sync/xref.js";
import type { CommandContext } from "./context.js";
import {
  addGithubOptions,
  addJsonOption,
  addListingCacheOptions,
  platformOption,
  withExamples,
} from "./options.js";
import { runsWithMetadata, type RunWithMetadata } from "../sync/runs.js";
import { githubServices } from "./services.js";

export function registerGhList(
  program: Command,
  run: (action: (ctx: CommandContext) => Promise<void>) => Promise<void>,
): void {
  const cmd = program
    .command("gh-list")
    .description(
      "List recent workflow runs with their parsed build metadata (successful runs unless --include-failed)",
    )
    .option("--include-failed", "also show runs that did not succeed", false)
    .addOption(platformOption());
  addGithubOptions(cmd);
  addListingCacheOptions(cmd);
  addJsonOption(cmd);
  withExamples(cmd, [
    "gh-gitlab-sync gh-list --limit 10",
    "gh-gitlab-sync gh-list --branch main --include-failed --json | jq '.runs[].metadata'",
    "gh-gitlab-sync gh-list --platform linux/arm64",
  ]);
  cmd.action((raw: Record<string, unknown>) => run((ctx) => ghList(ctx, raw)));
}

export async function ghList(ctx: CommandContext, raw: Record<string, unknown>): Promise<void> {
  const github = githubServices(ctx, raw);
  const includeFailed = raw.includeFailed === true;
  const platform = typeof raw.platform === "string" ? raw.platform : undefined;
  const { runs, seen } = await runsWithMetadata(ctx, github, { includeFailed, platform });
  if (raw.json === true) {
    ctx.out.json({ repository: github.options.repo, runs: seen.map(jsonRun) });
    return;
  }
  if (runs.length === 0) {
    ctx.out.line("No workflow runs found.");
    return;
  }
  ctx.out.line(`Found ${runs.length} workflow runs`);
  ctx.out.line(RULE);
  for (const entry of seen) printRun(ctx, entry);
}

/**
 * One run as the original prints it: its keys (a partial block's too), else why there are none —
 * logs read but holding no block (`(no metadata lines found in logs)`), or logs not read.
 */
function printRun(ctx: CommandContext, { run, metadata, error }: RunWithMetadata): void {
  const ref = runRef(run);
  ctx.out.line(
    `${run.id}: ${ref.title} · branch=${run.head_branch} · conclusion=${run.conclusion} · started=${ref.startedAt}`,
  );
  if (metadata && Object.keys(metadata).length > 0) {
    for (const key of METADATA_KEYS) {
      const value = metadata[key];
      if (value !== undefined) ctx.out.line(`  ${key.padEnd(18)}: ${value}`);
    }
    if (invalidImageTag(metadata) !== undefined) {
      ctx.out.line("  (not a valid image tag, so it is not mirrored)");
    }
  } else if (!error || error instanceof NoMetadataError) {
    ctx.out.line("  (no metadata lines found in logs)");
  } else {
    ctx.out.line(`  (metadata unavailable: ${error.message})`);
  }
  ctx.out.line(RULE);
}

function jsonRun({ run, metadata, error }: RunWithMetadata) {
  const ref = runRef(run);
  return {
    id: run.id,
    title: ref.title,
    run_number: run.run_number,
    branch: run.head_branch,
    head_sha: run.head_sha,
    event: run.event,
    status: run.status,
    conclusion: run.conclusion,
    started_at: ref.startedAt,
    html_url: run.html_url,
    metadata: metadata ?? null,
    expected_tags: metadata ? expectedImages(metadata).map((i) => i.gitlabTag) : [],
    error: error?.message ?? invalidTagError(metadata),
  };
}

function invalidTagError(metadata: RunMetadata | undefined): string | null {
  const tag = invalidImageTag(metadata);
  return tag === undefined
    ? null
    : `invalid image tag '${tag}': it does not match ${IMAGE_TAG_GRAMMAR}`;
}
