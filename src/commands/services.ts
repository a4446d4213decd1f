export type { GithubServices, GitlabServices } from "../sync/context.js";
import { createGithubClient } from "../github/client.js";
import { GitlabRegistryClient } from "../gitlab/client.js";
import { UsageError } from "../errors.js";
import { isRepositoryPath } from "../domain/reference.js";
import { RegistryClient } from "../registry/client.js";
import {
  registryOptionsSchema,
  type RegistryOptions,
  githubOptionsSchema,
  gitlabOptionsSchema,
  parseOptions,
  cacheDirFor,
} from "../config/options.js";
import {
  resolveGithubToken,
  resolveGitlabToken,
  resolveRegistryCredentials,
  type RegistryCredentials,
} from "../config/tokens.js";
import { MetadataCache } from "../workspace/state.js";
import type { RegistryAuth } from "../docker/engine.js";
import type { ImageSink } from "../archive/image-source.js";
import { dockerSink } from "../docker/sink.js";
import { registrySink, type SinkOptions } from "../registry/sink.js";
import type { RunSource } from "../sync/run-provenance.js";
import { findRunForTag } from "../sync/runs.js";
import { runRef } from "../sync/xref.js";
import type { GithubServices, GitlabServices } from "../sync/context.js";
import type { CommandContext } from "./context.js";

export function githubServices(ctx: CommandContext, raw: Record<string, unknown>): GithubServices {
  const options = parseOptions(githubOptionsSchema, raw);
  const cacheDir = cacheDirFor(raw, ctx.env);
  const token = resolveGithubToken(options.ghToken, ctx.env);
  ctx.logger.debug(
    { tokenSource: token.source, baseUrl: options.githubApiUrl },
    "GitHub client ready",
  );
  const client = createGithubClient({
    baseUrl: options.githubApiUrl,
    token: token.value,
    logger: ctx.logger,
    signal: ctx.signal,
    fetch: ctx.http.fetch,
    get: ctx.http.get,
  });
  return { options, client, cache: new MetadataCache(cacheDir, ctx.logger) };
}

/**
 * The GitLab API side. `project`, when given, replaces --gitlab-project: push, daemon and retag
 * pass the registry project (--registry-project, else --gitlab-project), so the API is asked
 * about the project the images go to, as the newest original does.
 */
export function gitlabServices(
  ctx: CommandContext,
  raw: Record<string, unknown>,
  project?: string,
): GitlabServices {
  const parsed = parseOptions(gitlabOptionsSchema, raw);
  const options = project ? { ...parsed, gitlabProject: project } : parsed;
  const token = resolveGitlabToken(options.gitlabToken, ctx.env);
  const client = new GitlabRegistryClient({
    host: options.gitlabHost,
    token: token.value,
    logger: ctx.logger,
    fetch: ctx.http.fetch,
    signal: ctx.signal,
  });
  return { options, client };
}

export interface RegistryServices {
  options: RegistryOptions;
  credentials: RegistryCredentials;
  /** Project path inside the registry: --registry-project, else --gitlab-project. */
  project: string;
  client: RegistryClient;
}

/**
 * The registry side: its address, the credentials (same order as the original, user `oauth2` by
 * default) and a distribution-API client. The GitLab token is only a password fallback here.
 */
export function registryServices(
  ctx: CommandContext,
  raw: Record<string, unknown>,
): RegistryServices {
  const options = parseOptions(registryOptionsSchema, raw);
  const gitlab = parseOptions(gitlabOptionsSchema, raw);
  const project = options.registryProject ?? gitlab.gitlabProject;
  if (!isRepositoryPath(project)) {
    throw new UsageError(
      `--gitlab-project '${project}' cannot be used as a registry path`,
      "pass --registry-project with the project's lowercase path, like hercules/veloxtesting",
    );
  }
  const credentials = resolveRegistryCredentials(
    { username: options.registryUsername, password: options.registryPassword },
    ctx.env,
    gitlab.gitlabToken ?? ctx.env.GITLAB_TOKEN,
  );
  ctx.logger.debug(
    {
      registry: options.registry,
      username: credentials.username,
      passwordSource: credentials.passwordSource,
    },
    "registry credentials resolved",
  );
  const client = new RegistryClient({
    registry: options.registry,
    // Without a password there is nothing to log in with: the client then says credentials are needed.
    ...(credentials.password !== undefined
      ? { username: credentials.username, password: credentials.password }
      : {}),
    insecure: options.insecureRegistry,
    logger: ctx.logger,
    fetch: ctx.http.fetch,
  });
  return { options, credentials, project, client };
}

/**
 * The sink every image goes into (push, sync and the daemon alike), with the registry's
 * credentials and the state directory's layer cache.
 */
export function imageSink(
  ctx: CommandContext,
  registry: RegistryServices,
  options: Pick<SinkOptions, "logger" | "stateDir" | "progress" | "removeAfterPush">,
): ImageSink {
  const settings: SinkOptions = {
    ...options,
    registry: registry.client,
    username: registry.credentials.username,
    password: registry.credentials.password,
    env: ctx.env,
  };
  return registry.options.engine === "registry" ? registrySink(settings) : dockerSink(settings);
}

/** The credentials as the Docker engine takes them with each call. */
export function dockerAuth(registry: RegistryServices): RegistryAuth {
  return {
    username: registry.credentials.username,
    password: registry.credentials.password ?? "",
    serveraddress: registry.options.registry,
  };
}

/**
 * GitHub's successful runs that built the tag, newest first, looked up only when asked (push and
 * clean ask in their first step). No token or no answer is the caller's to report: it goes on
 * without.
 */
export function githubRunLookup(
  ctx: CommandContext,
  raw: Record<string, unknown>,
  imageTag: string,
): RunSource {
  return {
    kind: "github",
    lookup: async () => {
      const github = githubServices(ctx, raw);
      const { run, others } = await findRunForTag(ctx, github, imageTag);
      return [run, ...others].map((r) => ({
        id: r.id,
        title: runRef(r).title,
        branch: r.head_branch,
        conclusion: r.conclusion,
      }));
    },
  };
}
