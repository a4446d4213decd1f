import { ContainerRegistry, GitbeakerRequestError, GitbeakerTimeoutError } from "@gitbeaker/rest";
import { z } from "zod";
import { describeError, errorCode, SyncError, UsageError } from "../errors.js";
import { CERTIFICATE_HINT, isCertificateCode, networkReason, type FetchLike } from "../net/http.js";
import { mapLimit } from "../net/limit.js";
import type { RetryPolicy } from "../net/retry.js";
import type { Logger } from "../report/logger.js";
import { oneLine } from "../util/text.js";
import { retryingRequesterFn } from "./requester.js";

export interface RegistryRepository {
  id: number;
  name: string;
  path: string;
  project_id: number;
  location: string;
  created_at?: string;
}

export interface RegistryTag {
  name: string;
  path: string;
  location: string;
}

export interface RegistryTagDetails extends RegistryTag {
  revision?: string;
  short_revision?: string;
  digest?: string;
  created_at?: string;
  total_size?: number;
}

export interface RepositoryTags {
  repository: RegistryRepository;
  tags: Array<RegistryTag | RegistryTagDetails>;
}

export interface GitlabRegistryClientOptions {
  /** `gitlab-master.nvidia.com` or a full URL such as `http://127.0.0.1:8929`. */
  host: string;
  token: string;
  logger: Logger;
  /** The requester's retries; what is not given comes from DEFAULT_GITLAB_RETRY. */
  retry?: Partial<RetryPolicy>;
  /** The command's HttpClient fetch (proxies, timeouts, safe redirects). */
  fetch: FetchLike;
  /** Limit for one call including all its pages and retries; default 5 minutes. */
  timeoutMs?: number;
  /** Ends every request (and retry wait) of this client: the command's SIGINT/SIGTERM. */
  signal?: AbortSignal;
}

const PER_PAGE = 100;
const DEFAULT_DETAIL_CONCURRENCY = 8;

const HOST_NAME =
  /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::\d{1,5})?$/;

/**
 * The base URL for `--gitlab-host`: a bare host name means https (as the original tool assumed);
 * a full URL keeps its scheme, port and any path prefix of a relative-root install, with a
 * trailing `/api/v4` (people paste API URLs) dropped because gitbeaker adds it.
 */
export function gitlabBaseUrl(host: string): string {
  const given = host.trim();
  const hint =
    "give a host name such as gitlab-master.nvidia.com or a URL such as http://127.0.0.1:8929";
  if (!given) throw new UsageError("--gitlab-host is empty", hint);
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(given)) {
    if (!HOST_NAME.test(given))
      throw new UsageError(`--gitlab-host "${given}" is not a host name`, hint);
    return `https://${given.toLowerCase()}`;
  }
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw new UsageError(`--gitlab-host "${given}" is not a valid URL`, hint);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--gitlab-host "${given}" must use http or https`, hint);
  }
  if (url.username || url.password) {
    throw new UsageError(
      "--gitlab-host must not carry credentials",
      "pass the token with --gitlab-token or GITLAB_TOKEN",
    );
  }
  if (url.search || url.hash) {
    throw new UsageError(`--gitlab-host "${given}" must not have a query or fragment`, hint);
  }
  const prefix = url.pathname.replace(/\/+$/, "").replace(/\/api\/v4$/, "");
  return `${url.origin}${prefix}`;
}

const repositorySchema = z.object({
  id: z.number(),
  name: z.string(),
  path: z.string(),
  project_id: z.number(),
  location: z.string(),
  created_at: z.string().nullish(),
});

const tagSchema = z.object({ name: z.string(), path: z.string(), location: z.string() });

// GitLab sends null for these on a manifest list or a tag whose manifest it could not read.
const tagDetailsSchema = tagSchema.extend({
  revision: z.string().nullish(),
  short_revision: z.string().nullish(),
  digest: z.string().nullish(),
  created_at: z.string().nullish(),
  total_size: z.number().nullish(),
});

/** Drops null and undefined fields so the result matches the optional properties of the interfaces. */
function withoutNulls<T extends Record<string, unknown>>(
  value: T,
): { [K in keyof T]: Exclude<T[K], null> } {
  return Object.fromEntries(
    Object.entries(value).filter(([, v]) => v !== null && v !== undefined),
  ) as {
    [K in keyof T]: Exclude<T[K], null>;
  };
}

type Target = { kind: "project" } | { kind: "repository"; repositoryId: number } | { kind: "tag" };

/**
 * Lists what a GitLab project's container registry holds, through gitbeaker. Every page is
 * followed (the original read one page of 100 only), and every failure becomes a SyncError
 * that names the host or project and the flag to change.
 */
export class GitlabRegistryClient {
  readonly baseUrl: string;
  private readonly api: ContainerRegistry<false>;
  private readonly logger: Logger;

  constructor(options: GitlabRegistryClientOptions) {
    this.baseUrl = gitlabBaseUrl(options.host);
    this.logger = options.logger;
    this.api = new ContainerRegistry({
      host: this.baseUrl,
      token: options.token,
      requesterFn: retryingRequesterFn({
        logger: options.logger,
        ...(options.retry ? { retry: options.retry } : {}),
        fetch: options.fetch,
        signal: options.signal,
      }),
      queryTimeout: options.timeoutMs ?? 300_000,
    });
  }

  async listRepositories(project: string): Promise<RegistryRepository[]> {
    const raw: unknown = await this.call(project, { kind: "project" }, () =>
      this.api.allRepositories({ projectId: project, perPage: PER_PAGE }),
    );
    const repositories = this.parse(
      z.array(repositorySchema),
      raw,
      `registry repositories of ${project}`,
    );
    this.logger.debug(
      { project, count: repositories.length },
      "listed GitLab registry repositories",
    );
    return repositories.map(withoutNulls);
  }

  async listTags(project: string, repositoryId: number): Promise<RegistryTag[]> {
    const raw: unknown = await this.call(project, { kind: "repository", repositoryId }, () =>
      this.api.allTags(project, repositoryId, { perPage: PER_PAGE }),
    );
    return this.parse(
      z.array(tagSchema),
      raw,
      `tags of registry repository ${repositoryId} in ${project}`,
    );
  }

  /** One tag with digest, size and creation time; undefined when GitLab does not have it. */
  async getTag(
    project: string,
    repositoryId: number,
    tagName: string,
  ): Promise<RegistryTagDetails | undefined> {
    let raw: unknown;
    try {
      raw = await this.api.showTag(project, repositoryId, tagName);
    } catch (error) {
      if (error instanceof GitbeakerRequestError && statusOf(error) === 404) return undefined;
      throw this.toSyncError(error, project, { kind: "tag" });
    }
    return withoutNulls(
      this.parse(tagDetailsSchema, raw, `tag ${tagName} of registry repository ${repositoryId}`),
    );
  }

  /** Every repository of the project with its tags; with `details`, each tag's digest, size and date. */
  async listAllTags(
    project: string,
    options: { details: boolean; concurrency?: number },
  ): Promise<RepositoryTags[]> {
    const concurrency = options.concurrency ?? DEFAULT_DETAIL_CONCURRENCY;
    const repositories = await this.listRepositories(project);
    const listed = await mapLimit(repositories, concurrency, async (repository) => ({
      repository,
      tags: await this.listTags(project, repository.id),
    }));
    if (!options.details) return listed;

    const jobs = listed.flatMap(({ repository, tags }) => tags.map((tag) => ({ repository, tag })));
    const details = await mapLimit(jobs, concurrency, ({ repository, tag }) =>
      this.getTag(project, repository.id, tag.name),
    );
    const byRepository = new Map<number, RegistryTagDetails[]>(repositories.map((r) => [r.id, []]));
    jobs.forEach(({ repository, tag }, index) => {
      const found = details[index];
      // A tag deleted between the listing and this read is gone; reporting it would mislead xref.
      if (found) byRepository.get(repository.id)?.push(found);
      else
        this.logger.debug(
          { repository: repository.path, tag: tag.name },
          "tag vanished while reading details",
        );
    });
    return repositories.map((repository) => ({
      repository,
      tags: byRepository.get(repository.id) ?? [],
    }));
  }

  private parse<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
    const result = schema.safeParse(raw);
    if (result.success) return result.data;
    const issue = result.error.issues[0];
    throw new SyncError(
      `GitLab at ${this.baseUrl} answered the request for ${what} in an unexpected shape (${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"})`,
      { hint: "check that --gitlab-host points at a GitLab instance (API v4)" },
    );
  }

  private async call<T>(project: string, target: Target, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.toSyncError(error, project, target);
    }
  }

  /** GitLab's failures: none is an image's own, so each is a setup fault (no back-off). */
  private toSyncError(error: unknown, project: string, target: Target): SyncError {
    if (error instanceof SyncError) return error;
    const host = this.baseUrl;
    if (error instanceof GitbeakerRequestError) {
      const status = statusOf(error);
      const detail = oneLine(error.cause?.description ?? error.message, 200);
      return this.httpError(status, detail, project, target, withoutRequest(error, status, detail));
    }
    if (error instanceof GitbeakerTimeoutError) {
      return new SyncError(`GitLab at ${host} did not answer in time`, {
        hint: "check --gitlab-host and the network (VPN) to it",
        cause: error,
        setupFault: true,
      });
    }
    const code = errorCode(error);
    if (isCertificateCode(code)) {
      return new SyncError(`Cannot verify the TLS certificate of GitLab at ${host} (${code})`, {
        hint: CERTIFICATE_HINT,
        cause: error,
        setupFault: true,
      });
    }
    if (code) {
      return new SyncError(`Cannot reach GitLab at ${host} (${networkReason(error)})`, {
        hint: "check --gitlab-host (host name, scheme and port) and the network or VPN to it",
        cause: error,
        setupFault: true,
      });
    }
    return new SyncError(
      `GitLab request to ${host} failed: ${oneLine(describeError(error), 200)}`,
      {
        hint: "check --gitlab-host and try again",
        cause: error,
        setupFault: true,
      },
    );
  }

  private httpError(
    status: number | undefined,
    detail: string,
    project: string,
    target: Target,
    cause: Error,
  ): SyncError {
    const host = this.baseUrl;
    switch (status) {
      case 401:
        return new SyncError(`GitLab rejected the token for ${host} (401)`, {
          hint: "check --gitlab-token / GITLAB_TOKEN: it must be valid and have the read_api (or read_registry) scope",
          cause,
          setupFault: true,
        });
      case 403:
        return new SyncError(
          `GitLab denied access to the container registry of ${project} on ${host} (403)`,
          {
            hint: `the token's user needs at least the Reporter role in ${project}, and the token the read_api scope`,
            cause,
            setupFault: true,
          },
        );
      case 404:
        if (target.kind === "repository") {
          return new SyncError(
            `GitLab registry repository ${target.repositoryId} not found in ${project} on ${host}`,
            {
              hint: "it was probably deleted while listing; run the command again",
              cause,
              setupFault: true,
            },
          );
        }
        return new SyncError(`GitLab project ${project} not found on ${host}`, {
          hint: "check --gitlab-project (a path such as hercules/veloxtesting, or a numeric id) and that the token's user can see it",
          cause,
          setupFault: true,
        });
      case 429:
        return new SyncError(`GitLab at ${host} kept rate-limiting requests (429)`, {
          hint: "wait a few minutes and try again, or lengthen the daemon's --interval",
          cause,
          setupFault: true,
        });
      default:
        return new SyncError(
          `GitLab at ${host} answered ${status ?? "an error"}${detail ? `: ${detail}` : ""}`,
          {
            hint:
              status !== undefined && status >= 500
                ? "GitLab may be down or overloaded; try again later"
                : "check --gitlab-host and --gitlab-project",
            cause,
            setupFault: true,
          },
        );
    }
  }
}

function statusOf(error: GitbeakerRequestError): number | undefined {
  return error.cause?.response?.status;
}

/**
 * gitbeaker's error holds the Request, whose headers carry the token. Keep a plain cause instead,
 * so that logging a SyncError with its cause chain can never print the token.
 */
function withoutRequest(
  error: GitbeakerRequestError,
  status: number | undefined,
  detail: string,
): Error {
  const request = error.cause?.request;
  const where = request ? `${request.method} ${new URL(request.url).pathname}` : "request";
  return new Error(`${where} answered ${status ?? "?"}${detail ? `: ${detail}` : ""}`);
}
