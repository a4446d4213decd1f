import { Command, Option } from "commander";
import { DEFAULT_INTERVAL_SECONDS } from "../config/defaults.js";
import { SyncError } from "../errors.js";
import type { CommandContext } from "./context.js";
import {
  addGithubOptions,
  addGitlabOptions,
  addWorkspaceOptions,
  withExamples,
} from "./options.js";

type Runner = (action: (ctx: CommandContext) => Promise<void>) => Promise<void>;

const engineOption = () =>
  new Option(
    "--engine <engine>",
    "docker: through the Docker engine; registry: straight to the registry, no daemon",
  )
    .choices(["docker", "registry"])
    .default("docker");

/**
 * Subcommands whose behaviour lands in later releases. Their flags are all registered now, with the
 * original's names and defaults, so scripts and `--help` already see the final interface, and the
 * image tag is validated; running one says plainly that this build cannot do it yet.
 */
function notYet(name: string): never {
  throw new SyncError(`'${name}' is not available in this version of gh-gitlab-sync yet`, {
    hint: "use the listing commands (gh-list, gitlab-list, xref), or the Python gh_gitlab_sync.py for this step",
  });
}

export function registerPending(program: Command, run: Runner): void {
  const daemon = program
    .command("daemon")
    .description(
      "Every --interval seconds: xref, then download, prepare, push and clean each missing image tag",
    )
    .option("--interval <seconds>", "seconds between cycles", String(DEFAULT_INTERVAL_SECONDS))
    .option("--once", "run one cycle and exit (non-zero when an image failed)", false)
    .option("--skip-login", "do not log in to the registry first", false)
    .option("--force-push", "push tags that GitLab already has", false)
    .option("--retag-as-latest", "also point <repo>:latest at each pushed image", false)
    .option("--verbose", "show each engine step", false)
    .option(
      "--registry-project <path>",
      "project path inside the registry (default: --gitlab-project)",
    )
    .option("--health-port <port>", "serve /healthz and /metrics on this port")
    .addOption(engineOption());
  addGithubOptions(daemon);
  addGitlabOptions(daemon, true);
  addWorkspaceOptions(daemon);
  withExamples(daemon, [
    "gh-gitlab-sync daemon --once",
    "gh-gitlab-sync daemon --interval 600 --engine registry",
  ]);
  daemon.action(() => run(async () => notYet("daemon")));
}
