import { spawnSync } from "node:child_process";
import { SyncError } from "../errors.js";

export type Env = Readonly<Record<string, string | undefined>>;

export interface ResolvedSecret {
  value: string;
  /** Where it came from, for messages: never the value itself. */
  source: string;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/** Asks the gh CLI for its token, as the original did implicitly; absent or logged out → undefined. */
export function ghCliToken(): string | undefined {
  const result = spawnSync("gh", ["auth", "token"], { encoding: "utf8", timeout: 5000 });
  if (result.error || result.status !== 0) return undefined;
  return nonEmpty(result.stdout);
}

/** GitHub token order of SPEC §2: --gh-token, GH_TOKEN, GITHUB_TOKEN, then `gh auth token`. */
export function resolveGithubToken(
  flag: string | undefined,
  env: Env,
  askGh: () => string | undefined = ghCliToken,
): ResolvedSecret {
  const candidates: Array<[string | undefined, string]> = [
    [flag, "--gh-token"],
    [env.GH_TOKEN, "GH_TOKEN"],
    [env.GITHUB_TOKEN, "GITHUB_TOKEN"],
  ];
  for (const [value, source] of candidates) {
    const token = nonEmpty(value);
    if (token) return { value: token, source };
  }
  const fromGh = askGh();
  if (fromGh) return { value: fromGh, source: "gh auth token" };
  throw new SyncError("No GitHub token found", {
    hint: "pass --gh-token, set GH_TOKEN or GITHUB_TOKEN, or log in once with `gh auth login`",
  });
}

export function resolveGitlabToken(flag: string | undefined, env: Env): ResolvedSecret {
  const token = nonEmpty(flag) ?? nonEmpty(env.GITLAB_TOKEN);
  if (!token) {
    throw new SyncError("GitLab token not provided", {
      hint: "use --gitlab-token or set GITLAB_TOKEN (a token with read_api scope)",
    });
  }
  return { value: token, source: nonEmpty(flag) ? "--gitlab-token" : "GITLAB_TOKEN" };
}

/** The registry user when none is given: GitLab accepts any name with a personal access token. */
export const DEFAULT_REGISTRY_USERNAME = "oauth2";

export interface RegistryCredentials {
  username: string;
  password: string | undefined;
  passwordSource: string | undefined;
}

/** Registry login, as the original: flag, GITLAB_REGISTRY_*, CI_REGISTRY_*, then the GitLab token. */
export function resolveRegistryCredentials(
  flags: { username?: string; password?: string },
  env: Env,
  gitlabToken: string | undefined,
): RegistryCredentials {
  const username =
    nonEmpty(flags.username) ??
    nonEmpty(env.GITLAB_REGISTRY_USERNAME) ??
    nonEmpty(env.CI_REGISTRY_USER) ??
    DEFAULT_REGISTRY_USERNAME;
  const passwords: Array<[string | undefined, string]> = [
    [flags.password, "--registry-password"],
    [env.GITLAB_REGISTRY_PASSWORD, "GITLAB_REGISTRY_PASSWORD"],
    [env.CI_REGISTRY_PASSWORD, "CI_REGISTRY_PASSWORD"],
    [gitlabToken, "the GitLab token"],
  ];
  for (const [value, source] of passwords) {
    const password = nonEmpty(value);
    if (password) return { username, password, passwordSource: source };
  }
  return { username, password: undefined, passwordSource: undefined };
}
