import type { GithubClient } from "../github/client.js";
import type { GitlabRegistryClient } from "../gitlab/client.js";
import type { GithubOptions, GitlabOptions } from "../config/options.js";
import type { Logger } from "../report/logger.js";
import type { MetadataCache } from "../workspace/state.js";

/** What every pipeline step needs: where to log and when to stop. */
export interface SyncContext {
  logger: Logger;
  signal: AbortSignal;
}

export interface GithubServices {
  options: GithubOptions;
  client: GithubClient;
  cache: MetadataCache;
}

export interface GitlabServices {
  options: GitlabOptions;
  client: GitlabRegistryClient;
}
