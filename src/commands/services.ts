export type { GithubServices, GitlabServices } from "../sync/context.js";
import { createGithubClient } from "../github/client.js";
import { GitlabRegistryClient } from "../gitlab/client.js";
import {
  githubOptionsSchema,
  gitlabOptionsSchema,
  parseOptions,
  stateDirFor,
  workspaceOptionsSchema,
} from "../config/options.js";
import { resolveGithubToken, resolveGitlabToken } from "../config/tokens.js";
import { MetadataCache } from "../workspace/state.js";
import type { GithubServices, GitlabServices } from "../sync/context.js";
import type { CommandContext } from "./context.js";

export function githubServices(ctx: CommandContext, raw: Record<string, unknown>): GithubServices {
  const options = parseOptions(githubOptionsSchema, raw);
  const workspace = parseOptions(workspaceOptionsSchema, raw);
  const token = resolveGithubToken(options.ghToken, ctx.env);
  ctx.logger.debug(
    { tokenSource: token.source, baseUrl: options.githubApiUrl },
    "GitHub client ready",
  );
  const client = createGithubClient({
    baseUrl: options.githubApiUrl,
    token: token.value,
    logger: ctx.logger,
  });
  return { options, client, cache: new MetadataCache(stateDirFor(workspace)) };
}

export function gitlabServices(ctx: CommandContext, raw: Record<string, unknown>): GitlabServices {
  const options = parseOptions(gitlabOptionsSchema, raw);
  const token = resolveGitlabToken(options.gitlabToken, ctx.env);
  const client = new GitlabRegistryClient({
    host: options.gitlabHost,
    token: token.value,
    logger: ctx.logger,
  });
  return { options, client };
}
