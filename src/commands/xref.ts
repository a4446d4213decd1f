import { Command } from "commander";
import type { XrefResult } from "../sync/xref.js";
import type { CommandContext } from "./context.js";
import {
  addGithubOptions,
  addGitlabOptions,
  addJsonOption,
  addListingCacheOptions,
  platformOption,
  withExamples,
} from "./options.js";
import { computeXref } from "../sync/compare.js";
import { githubServices, gitlabServices } from "./services.js";

export function registerXref(
  program: Command,
  run: (action: (ctx: CommandContext) => Promise<void>) => Promise<void>,
): void {
  const cmd = program
    .command("xref")
    .description(
      "Compare the images successful runs built with the tags GitLab holds: what is missing (and extra)",
    )
    .option("--list-extra", "also list GitLab tags that no run accounts for", false)
    .addOption(platformOption());
  addGithubOptions(cmd);
  addGitlabOptions(cmd, false);
  addListingCacheOptions(cmd);
  addJsonOption(cmd);
  withExamples(cmd, [
    "gh-gitlab-sync xref",
    "gh-gitlab-sync xref --limit 50 --list-extra",
    "gh-gitlab-sync xref --json | jq -r '.missing[].image_tag'",
    "gh-gitlab-sync xref --platform linux/amd64   # x86 builds and x86/ tags only",
  ]);
  cmd.action((raw: Record<string, unknown>) => run((ctx) => xref(ctx, raw)));
}

export async function xref(ctx: CommandContext, raw: Record<string, unknown>): Promise<void> {
  const github = githubServices(ctx, raw);
  const gitlab = gitlabServices(ctx, raw);
  const platform = typeof raw.platform === "string" ? raw.platform : undefined;
  const { result, failures } = await computeXref(ctx, github, gitlab, { platform });
  const listExtra = raw.listExtra === true;
  if (raw.json === true) {
    ctx.out.json(jsonXref(result, failures, listExtra));
    return;
  }
  ctx.out.line(`Collected ${result.expectedCount} expected image tags from GitHub runs.`);
  ctx.out.line(`Found ${result.presentCount} tags in GitLab registry.`);
  if (result.missing.length > 0) {
    ctx.out.line("\nImages present in GitHub runs but missing on GitLab:");
    for (const image of result.missing) {
      ctx.out.line(`  Image tag: ${image.imageTag}`);
      ctx.out.line(`    Presto ref : ${image.metadata["Presto ref"] ?? "?"}`);
      ctx.out.line(`    Velox ref  : ${image.metadata["Velox ref"] ?? "?"}`);
      ctx.out.line(`    Platform   : ${image.metadata["Target platform"] ?? "?"}`);
      if (image.runs.length > 0)
        ctx.out.line(`    Runs       : ${image.runs.map((r) => r.title).join(", ")}`);
      for (const entry of image.missing) ctx.out.line(`    missing tag: ${entry.gitlabTag}`);
    }
  } else {
    ctx.out.line("\nNo missing GitLab images.");
  }
  if (result.invalid.length > 0) {
    ctx.out.line("\nRuns whose image tag is not a valid tag (not mirrored):");
    for (const { run, imageTag } of result.invalid) {
      ctx.out.line(`  run ${run.id} (${run.title}): invalid image tag '${imageTag}'`);
    }
  }
  if (listExtra && result.extra.length > 0) {
    ctx.out.line("\nImages on GitLab with no matching GitHub run:");
    for (const tag of result.extra) ctx.out.line(`  ${tag}`);
  }
}

function jsonXref(
  result: XrefResult,
  failures: Array<{ runId: number; error: string }>,
  listExtra: boolean,
) {
  return {
    expected_count: result.expectedCount,
    present_count: result.presentCount,
    missing: result.missing.map((image) => ({
      image_tag: image.imageTag,
      presto_ref: image.metadata["Presto ref"] ?? null,
      velox_ref: image.metadata["Velox ref"] ?? null,
      platform: image.metadata["Target platform"] ?? null,
      runs: image.runs.map((r) => ({
        id: r.id,
        title: r.title,
        started_at: r.startedAt,
        html_url: r.htmlUrl,
      })),
      missing_tags: image.missing.map((e) => e.gitlabTag),
    })),
    extra: listExtra ? result.extra : undefined,
    invalid_tags: result.invalid.map(({ run, imageTag }) => ({
      run_id: run.id,
      image_tag: imageTag,
    })),
    metadata_failures: failures.map((f) => ({ run_id: f.runId, error: f.error })),
  };
}
