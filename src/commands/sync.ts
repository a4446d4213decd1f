import { Command } from "commander";
import {
  envFlag,
  parseImageTag,
  parseOptions,
  stateDirFor,
  workspaceOptionsSchema,
} from "../config/options.js";
import { confirmAtTerminal } from "../report/prompt.js";
import { outputSteps } from "../report/steps.js";
import { syncImageTag } from "../sync/stream.js";
import { outputDir } from "./artifacts.js";
import type { CommandContext } from "./context.js";
import { withWorkspaceLocks } from "./locks.js";
import {
  addGithubOptions,
  addGitlabOptions,
  addWorkspaceOptions,
  engineOption,
  MULTIARCH_INDEX_ENV,
  multiarchIndexOption,
  registryProjectOption,
  withExamples,
} from "./options.js";
import { githubServices, gitlabServices, imageSink, registryServices } from "./services.js";

type Runner = (action: (ctx: CommandContext) => Promise<void>) => Promise<void>;
const TAG_EXAMPLE = "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64";

export function registerSync(program: Command, run: Runner): void {
  const cmd = program
    .command("sync")
    .description(
      "Download, verify, push and clean an image tag in one streaming pass (no extracted copy on disk)",
    )
    .argument("<image-tag>", "image tag, e.g. presto-<sha>-velox-<sha>-linux-amd64", parseImageTag)
    .option(
      "--force",
      "download the artifact afresh (discarding an earlier download) and push tags GitLab already has",
      false,
    )
    .option("--artifact-name <name>", "artifact to take when a run has several")
    .option("--output-dir <dir>", "same as --downloads-dir (download's name for it)")
    .option("--skip-login", "do not check the registry credentials first", false)
    .option("-y, --yes", "do not ask before pushing", false)
    .option("--verbose", "show each engine step", false)
    .option("--retag-as-latest", "also point <repo>:latest at each pushed image", false)
    .addOption(registryProjectOption())
    .addOption(engineOption())
    .addOption(multiarchIndexOption());
  addGithubOptions(cmd);
  addGitlabOptions(cmd, true);
  addWorkspaceOptions(cmd);
  withExamples(cmd, [
    `gh-gitlab-sync sync ${TAG_EXAMPLE} --engine registry --yes`,
    `gh-gitlab-sync sync ${TAG_EXAMPLE} --downloads-dir /srv/mirror --retag-as-latest`,
    `gh-gitlab-sync sync ${TAG_EXAMPLE} --yes --multiarch-index   # presto-coordinator:<tag> for both platforms`,
  ]);
  cmd.action((imageTag: string, raw: Record<string, unknown>) =>
    run(async (ctx) => {
      const multiarchIndex = raw.multiarchIndex === true || envFlag(ctx.env, MULTIARCH_INDEX_ENV);
      const downloadsDir = outputDir(cmd, raw);
      const workspace = parseOptions(workspaceOptionsSchema, { ...raw, downloadsDir });
      // The registry's flags first: a bad one is a usage error, before any token is missed.
      const registry = registryServices(ctx, raw);
      const github = githubServices(ctx, { ...raw, downloadsDir });
      // --registry-project names the GitLab project too, as push has it.
      const gitlab = gitlabServices(ctx, raw, registry.project);
      const logger = raw.verbose === true ? ctx.logger.child({}, { level: "debug" }) : ctx.logger;
      const progress = ctx.progress(logger);
      const sink = imageSink(ctx, registry, {
        logger,
        stateDir: stateDirFor(workspace),
        progress,
      });
      await withWorkspaceLocks(
        workspace,
        `sync ${imageTag}`,
        () =>
          syncImageTag(
            { logger, signal: ctx.signal },
            outputSteps(ctx.out, { full: logger.isLevelEnabled("debug") }),
            { github, gitlab, registryClient: registry.client, sink },
            {
              imageTag,
              downloadsDir: workspace.downloadsDir,
              registry: registry.options.registry,
              registryProject: registry.project,
              username: registry.credentials.username,
              forceDownload: raw.force === true,
              force: raw.force === true,
              skipLogin: raw.skipLogin === true,
              retagAsLatest: raw.retagAsLatest === true,
              multiarchIndex,
              artifactName: typeof raw.artifactName === "string" ? raw.artifactName : undefined,
              ...(raw.yes === true ? {} : { confirm: confirmAtTerminal("push", ctx.signal) }),
              progress,
            },
          ),
        typeof raw.outputDir === "string" ? "--output-dir" : "--downloads-dir",
      );
    }),
  );
}
