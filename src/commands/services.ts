import { createGithubClient, type GithubClient } from "../github/client.js";
import { collectRunMetadata } from "../github/metadata.js";
import { listWorkflowRuns, type WorkflowRun } from "../github/runs.js";
import type { RunMetadata } from "../github/metadata-parser.js";
import { GitlabRegistryClient } from "../gitlab/client.js";
import {
  githubOptionsSchema,
  gitlabOptionsSchema,
  parseOptions,
  stateDirFor,
  workspaceOptionsSchema,
  type GithubOptions,
  type GitlabOptions,
} from "../config/options.js";
import { resolveGithubToken, resolveGitlabToken } from "../config/tokens.js";
import { MetadataCache } from "../workspace/state.js";
import type { SyncError } from "../errors.js";
import type { CommandContext } from "./context.js";

export interface GithubServices {
  options: GithubOptions;
  client: GithubClient;
  cache: MetadataCache;
}

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

export interface GitlabServices {
  options: GitlabOptions;
  client: GitlabRegistryClient;
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

export interface RunWithMetadata {
  run: WorkflowRun;
  metadata?: RunMetadata;
  error?: SyncError;
}

/**
 * Recent runs with their parsed metadata. Metadata is only fetched for the runs the caller
 * will show (successful ones unless told otherwise), and comes from the cache when it can.
 */
export async function runsWithMetadata(
  ctx: CommandContext,
  github: GithubServices,
  { includeFailed }: { includeFailed: boolean },
): Promise<{ runs: WorkflowRun[]; seen: RunWithMetadata[] }> {
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
  return { runs, seen };
}
