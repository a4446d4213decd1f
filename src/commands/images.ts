import { Command } from "commander";
import {
  envFlag,
  parseImageTag,
  parseOptions,
  stateDirFor,
  workspaceOptionsSchema,
} from "../config/options.js";
import { DockerEngine } from "../docker/engine.js";
import { outputSteps } from "../report/steps.js";
import { confirmAtTerminal } from "../report/prompt.js";
import { pushImageTag } from "../sync/push.js";
import { parseImageName, retagImage } from "../sync/retag.js";
import { withWorkspaceLocks } from "./locks.js";
import type { CommandContext } from "./context.js";
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
import {
  dockerAuth,
  githubRunLookup,
  gitlabServices,
  imageSink,
  registryServices,
} from "./services.js";

type Runner = (action: (ctx: CommandContext) => Promise<void>) => Promise<void>;
const TAG_EXAMPLE = "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64";

export function registerPush(program: Command, run: Runner): void {
  const cmd = program
    .command("push")
    .description("Push the prepared images of an image tag to the GitLab registry")
    .argument("<image-tag>", "image tag", parseImageTag)
    .option("--skip-login", "do not check the registry credentials first", false)
    .option("--force", "push tags that GitLab already has", false)
    .option("-y, --yes", "do not ask before pushing", false)
    .option(
      "--verbose",
      "show the equivalent docker load/tag/push commands and each engine step",
      false,
    )
    .option("--retag-as-latest", "also point <repo>:latest at each pushed image", false)
    .addOption(multiarchIndexOption())
    .addOption(registryProjectOption())
    .addOption(engineOption());
  addGithubOptions(cmd);
  addGitlabOptions(cmd, true);
  addWorkspaceOptions(cmd);
  withExamples(cmd, [
    `gh-gitlab-sync push ${TAG_EXAMPLE}`,
    `gh-gitlab-sync push ${TAG_EXAMPLE} --yes --engine registry --retag-as-latest`,
    `gh-gitlab-sync push ${TAG_EXAMPLE} --yes --multiarch-index   # presto-coordinator:<tag> for both platforms`,
  ]);
  cmd.action((imageTag: string, raw: Record<string, unknown>) =>
    run(async (ctx) => {
      const multiarchIndex = raw.multiarchIndex === true || envFlag(ctx.env, MULTIARCH_INDEX_ENV);
      const workspace = parseOptions(workspaceOptionsSchema, raw);
      // The registry's flags first: a bad one is a usage error, before any token is missed.
      const registry = registryServices(ctx, raw);
      // --registry-project names the GitLab project too, as the newest original has it.
      const gitlab = gitlabServices(ctx, raw, registry.project);
      const logger = raw.verbose === true ? ctx.logger.child({}, { level: "debug" }) : ctx.logger;
      const sink = imageSink(ctx, registry, {
        logger,
        stateDir: stateDirFor(workspace),
        progress: ctx.progress(logger),
      });
      await withWorkspaceLocks(workspace, `push ${imageTag}`, async () => {
        await pushImageTag(
          { logger, signal: ctx.signal },
          outputSteps(ctx.out, { full: logger.isLevelEnabled("debug") }),
          { gitlab, registryClient: registry.client, sink },
          {
            imageTag,
            downloadsDir: workspace.downloadsDir,
            registry: registry.options.registry,
            registryProject: registry.project,
            username: registry.credentials.username,
            force: raw.force === true,
            skipLogin: raw.skipLogin === true,
            retagAsLatest: raw.retagAsLatest === true,
            multiarchIndex,
            verbose: raw.verbose === true,
            ...(raw.yes === true ? {} : { confirm: confirmAtTerminal("push", ctx.signal) }),
            run: githubRunLookup(ctx, raw, imageTag),
          },
        );
      });
    }),
  );
}

export function registerRetag(program: Command, run: Runner): void {
  const cmd = program
    .command("retag")
    .description("Point <target> at the manifest of <source> (e.g. x86/presto-coordinator:latest)")
    .argument("<source>", "source, like x86/presto-coordinator:presto-A-velox-B")
    .argument("<target>", "target, like x86/presto-coordinator:latest (or just: latest)")
    .addOption(registryProjectOption())
    // By manifest through the registry API by default; docker is the original's pull/tag/push.
    .addOption(engineOption("registry"));
  addGitlabOptions(cmd, true);
  withExamples(cmd, [
    "gh-gitlab-sync retag x86/presto-coordinator:presto-92865fbce0d2-velox-65797d572e0a x86/presto-coordinator:latest --engine registry",
  ]);
  cmd.action((sourceText: string, targetText: string, raw: Record<string, unknown>) =>
    run(async (ctx) => {
      const source = parseImageName(sourceText, "source");
      const target = parseImageName(targetText, "target", source.repoPath);
      const registry = registryServices(ctx, raw);
      const engine = registry.options.engine;
      await retagImage(
        ctx,
        outputSteps(ctx.out),
        {
          engine,
          registryClient: registry.client,
          ...(engine === "docker"
            ? {
                docker: {
                  engine: new DockerEngine({
                    logger: ctx.logger,
                    env: ctx.env,
                  }),
                  auth: dockerAuth(registry),
                },
              }
            : {}),
        },
        {
          source,
          target,
          registry: registry.options.registry,
          registryProject: registry.project,
        },
      );
    }),
  );
}
