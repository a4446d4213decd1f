import { Command, Option } from "commander";
import { SHARED, shared } from "./help.js";
import {
  DEFAULT_CONNECT_TIMEOUT_SECONDS,
  DEFAULT_DOWNLOADS_DIR,
  DEFAULT_HTTP_TIMEOUT_SECONDS,
  DEFAULT_GITHUB_API_URL,
  DEFAULT_GITHUB_REPO,
  DEFAULT_GITLAB_HOST,
  DEFAULT_GITLAB_PROJECT,
  DEFAULT_GITLAB_REGISTRY,
  DEFAULT_LIMIT,
  DEFAULT_WORKFLOW_FILE,
} from "../config/defaults.js";

/** The GitHub flags every GitHub-facing command shares (SPEC §2), with the original's defaults. */
export function addGithubOptions(cmd: Command): Command {
  const group = (option: Option) => cmd.addOption(shared(option, SHARED.github));
  group(new Option("--repo <owner/name>", "GitHub repository").default(DEFAULT_GITHUB_REPO));
  group(
    new Option("--workflow <file>", "workflow file (path or base name)").default(
      DEFAULT_WORKFLOW_FILE,
    ),
  );
  group(new Option("--branch <name>", "only runs from this branch"));
  group(
    new Option("--limit <n>", "how many recent runs to consider").default(String(DEFAULT_LIMIT)),
  );
  group(
    new Option("--gh-token <token>", "GitHub token (else GH_TOKEN, GITHUB_TOKEN, `gh auth token`)"),
  );
  group(
    new Option("--github-api-url <url>", "GitHub API base URL (GitHub Enterprise, test servers)")
      .env("GITHUB_API_URL")
      .default(DEFAULT_GITHUB_API_URL),
  );
  return cmd;
}

/** The GitLab API flags; the registry ones only where a command talks to the registry. */
export function addGitlabOptions(cmd: Command, withRegistry: boolean): Command {
  const gitlab = (option: Option) => cmd.addOption(shared(option, SHARED.gitlab));
  gitlab(
    // GITLAB_HOST as glab reads it: a host name or the server's URL.
    new Option("--gitlab-host <host|url>", "GitLab host, or a full URL like http://127.0.0.1:8929")
      .env("GITLAB_HOST")
      .default(DEFAULT_GITLAB_HOST),
  );
  gitlab(
    new Option("--gitlab-project <path|id>", "GitLab project path or numeric id").default(
      DEFAULT_GITLAB_PROJECT,
    ),
  );
  gitlab(new Option("--gitlab-token <token>", "GitLab access token (else GITLAB_TOKEN)"));
  if (withRegistry) {
    const registry = (option: Option) => cmd.addOption(shared(option, SHARED.registry));
    registry(
      // CI_REGISTRY as GitLab CI sets it in every job: the project's registry, host[:port].
      new Option("--registry <host[:port]>", "container registry")
        .env("CI_REGISTRY")
        .default(DEFAULT_GITLAB_REGISTRY),
    );
    registry(
      new Option(
        "--registry-username <user>",
        "registry user (else GITLAB_REGISTRY_USERNAME, CI_REGISTRY_USER)",
      ),
    );
    registry(
      new Option(
        "--registry-password <password>",
        "registry password (else GITLAB_REGISTRY_PASSWORD, CI_REGISTRY_PASSWORD, the GitLab token)",
      ),
    );
    registry(
      new Option(
        "--insecure-registry",
        "talk plain http to the registry (a loopback one gets https if it speaks it, else http)",
      ).default(false),
    );
  }
  return cmd;
}

/** Where downloads live and where the state (metadata cache, failures, lock) is kept. */
export function addWorkspaceOptions(cmd: Command): Command {
  return cmd
    .addOption(
      shared(
        new Option("--downloads-dir <dir>", "directory holding the downloads").default(
          DEFAULT_DOWNLOADS_DIR,
        ),
        SHARED.workspace,
      ),
    )
    .addOption(
      shared(
        new Option(
          "--state-dir <dir>",
          "state directory: metadata cache, failures, lock (default <downloads-dir>/.state)",
        ),
        SHARED.workspace,
      ),
    );
}

/**
 * The listing commands download nothing, so they keep their metadata cache in the user's cache
 * directory rather than making `./downloads/.state` wherever they are run — unless told a
 * downloads or state directory, which then holds it as for the other commands.
 */
export function addListingCacheOptions(cmd: Command): Command {
  return cmd
    .option(
      "--downloads-dir <dir>",
      "keep the metadata cache in <dir>/.state, as download and the daemon do",
    )
    .option(
      "--state-dir <dir>",
      "metadata cache directory (default $XDG_CACHE_HOME/gh-gitlab-sync, i.e. ~/.cache/gh-gitlab-sync)",
    );
}

/**
 * How long a request may go without a byte (and, up to 30 s, how long a connection may take)
 * before it is given up and retried; every command that talks HTTP takes it.
 */
export function httpTimeoutOption(): Option {
  return shared(
    new Option(
      "--http-timeout <seconds>",
      `give up on a request that sends nothing for this long and retry it (connecting: at most ${DEFAULT_CONNECT_TIMEOUT_SECONDS} s)`,
    )
      .env("GH_GITLAB_SYNC_HTTP_TIMEOUT")
      .default(String(DEFAULT_HTTP_TIMEOUT_SECONDS)),
    SHARED.network,
  );
}

/** The engine a push or retag goes through. */
export function engineOption(fallback: "docker" | "registry" = "docker"): Option {
  return new Option(
    "--engine <engine>",
    "docker (the engine at DOCKER_HOST) or registry (straight there, no daemon)",
  )
    .choices(["docker", "registry"])
    .default(fallback);
}

/** The env fallback of --multiarch-index, for the daemon's unit (`…=1`). */
export const MULTIARCH_INDEX_ENV = "GH_GITLAB_SYNC_MULTIARCH_INDEX";

export function multiarchIndexOption(): Option {
  return new Option(
    "--multiarch-index",
    `then an OCI index per repository over both platforms (else ${MULTIARCH_INDEX_ENV}=1)`,
  );
}

/** The platforms the workflow builds: what --platform keeps. */
export const PLATFORMS = ["linux/amd64", "linux/arm64"] as const;

export function platformOption(): Option {
  return new Option(
    "--platform <platform>",
    "only this platform's builds (a daemon per platform)",
  ).choices([...PLATFORMS]);
}

export function registryProjectOption(): Option {
  return new Option(
    "--registry-project <path>",
    "project path inside the registry (default: --gitlab-project)",
  );
}

export function addJsonOption(cmd: Command): Command {
  return cmd.option("--json", "machine-readable output on stdout", false);
}

export { withExamples } from "./help.js";
