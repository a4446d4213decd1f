import { Command } from "commander";
import { RULE } from "../report/output.js";
import { formatBytes } from "../util/bytes.js";
import type { RegistryTag, RegistryTagDetails } from "../gitlab/client.js";
import type { CommandContext } from "./context.js";
import { addGitlabOptions, addJsonOption, withExamples } from "./options.js";
import { gitlabServices } from "./services.js";

export function registerGitlabList(
  program: Command,
  run: (action: (ctx: CommandContext) => Promise<void>) => Promise<void>,
): void {
  const cmd = program
    .command("gitlab-list")
    .description(
      "List the project's container registry repositories and their tags (size, created)",
    );
  addGitlabOptions(cmd, false);
  addJsonOption(cmd);
  withExamples(cmd, [
    "gh-gitlab-sync gitlab-list --gitlab-project hercules/veloxtesting",
    "gh-gitlab-sync gitlab-list --json | jq '.repositories[] | {name, tags: (.tags | length)}'",
  ]);
  cmd.action((raw: Record<string, unknown>) => run((ctx) => gitlabList(ctx, raw)));
}

function details(tag: RegistryTag | RegistryTagDetails): RegistryTagDetails {
  return tag;
}

export async function gitlabList(ctx: CommandContext, raw: Record<string, unknown>): Promise<void> {
  const { options, client } = gitlabServices(ctx, raw);
  const listing = await client.listAllTags(options.gitlabProject, { details: true });
  if (raw.json === true) {
    ctx.out.json({
      project: options.gitlabProject,
      repositories: listing.map(({ repository, tags }) => ({
        id: repository.id,
        name: repository.name,
        path: repository.path,
        location: repository.location,
        tags: tags.map(details).map((t) => ({
          name: t.name,
          location: t.location,
          digest: t.digest ?? null,
          created_at: t.created_at ?? null,
          total_size: t.total_size ?? null,
        })),
      })),
    });
    return;
  }
  if (listing.length === 0) {
    ctx.out.line("No GitLab registry repositories found.");
    return;
  }
  for (const { repository, tags } of listing) {
    ctx.out.line(`Repository: ${repository.name || repository.path} (id=${repository.id})`);
    if (tags.length === 0) ctx.out.line("  (no tags)");
    for (const tag of tags.map(details)) {
      ctx.out.line(
        `  ${tag.name.padEnd(40)}  size=${sizeOf(tag.total_size)}  created=${tag.created_at ?? "?"}`,
      );
    }
    ctx.out.line(RULE);
  }
}

/**
 * In the unit that keeps it readable, right-aligned (`  1.52 GiB`, `  2.0 MiB`): a fixed GiB, as
 * the original printed, turns a 2 MiB image into `0.00 GiB`. `?` when GitLab did not say.
 */
function sizeOf(bytes: number | undefined): string {
  return (bytes === undefined ? "?" : formatBytes(bytes)).padStart(9);
}
