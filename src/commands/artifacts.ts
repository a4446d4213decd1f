import { Command } from "commander";
import { parseImageTag, parseOptions, workspaceOptionsSchema } from "../config/options.js";
import { UsageError } from "../errors.js";
import { outputSteps } from "../report/steps.js";
import { confirmAtTerminal } from "../report/prompt.js";
import { cleanImageTag } from "../sync/clean.js";
import { downloadImageTag } from "../sync/download.js";
import { prepareImageTag } from "../sync/prepare.js";
import { withWorkspaceLocks } from "./locks.js";
import type { CommandContext } from "./context.js";
import { addGithubOptions, addWorkspaceOptions, withExamples } from "./options.js";
import { githubRunLookup, githubServices } from "./services.js";

type Runner = (action: (ctx: CommandContext) => Promise<void>) => Promise<void>;
const TAG_EXAMPLE = "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64";

export function registerDownload(program: Command, run: Runner): void {
  const cmd = program
    .command("download")
    .description("Download the images artifact of the newest successful run with this image tag")
    .argument("<image-tag>", "image tag, e.g. presto-<sha>-velox-<sha>-linux-amd64", parseImageTag)
    .option("--force", "replace an existing download (and discard a partial one)", false)
    .option("--artifact-name <name>", "artifact to take when a run has several")
    .option("--output-dir <dir>", "same as --downloads-dir (the original's name for it)");
  addGithubOptions(cmd);
  addWorkspaceOptions(cmd);
  withExamples(cmd, [
    `gh-gitlab-sync download ${TAG_EXAMPLE}`,
    `gh-gitlab-sync download ${TAG_EXAMPLE} --output-dir /srv/mirror --force`,
  ]);
  cmd.action((imageTag: string, raw: Record<string, unknown>) =>
    run(async (ctx) => {
      const downloadsDir = outputDir(cmd, raw);
      const github = githubServices(ctx, { ...raw, downloadsDir });
      const workspace = parseOptions(workspaceOptionsSchema, { ...raw, downloadsDir });
      await withWorkspaceLocks(
        workspace,
        `download ${imageTag}`,
        () =>
          downloadImageTag(ctx, github, outputSteps(ctx.out), {
            imageTag,
            downloadsDir: workspace.downloadsDir,
            force: raw.force === true,
            artifactName: typeof raw.artifactName === "string" ? raw.artifactName : undefined,
            progress: ctx.progress(ctx.logger),
          }),
        typeof raw.outputDir === "string" ? "--output-dir" : "--downloads-dir",
      );
    }),
  );
}

/**
 * download's directory: `--output-dir` (the original's flag) or `--downloads-dir` (every other
 * command's); both at once must agree.
 */
export function outputDir(cmd: Command, raw: Record<string, unknown>): unknown {
  const given = cmd.getOptionValueSource("downloadsDir") !== "default";
  const { outputDir, downloadsDir } = raw;
  if (typeof outputDir !== "string") return downloadsDir;
  if (given && typeof downloadsDir === "string" && downloadsDir !== outputDir) {
    throw new UsageError(
      `--output-dir '${outputDir}' and --downloads-dir '${downloadsDir}' disagree`,
      "give one of them: they name the same directory",
    );
  }
  return outputDir;
}

export function registerPrepare(program: Command, run: Runner): void {
  const cmd = program
    .command("prepare")
    .description("Extract and verify a downloaded artifact, then write upload-plan.json")
    .argument("<image-tag>", "image tag", parseImageTag)
    .option(
      "--clean",
      "remove an existing extraction first (otherwise it is reused only if it verifies)",
      false,
    );
  addWorkspaceOptions(cmd);
  withExamples(cmd, [
    `gh-gitlab-sync prepare ${TAG_EXAMPLE}`,
    `gh-gitlab-sync prepare ${TAG_EXAMPLE} --clean`,
  ]);
  cmd.action((imageTag: string, raw: Record<string, unknown>) =>
    run(async (ctx) => {
      const workspace = parseOptions(workspaceOptionsSchema, raw);
      await withWorkspaceLocks(workspace, `prepare ${imageTag}`, () =>
        prepareImageTag(ctx, outputSteps(ctx.out), {
          imageTag,
          downloadsDir: workspace.downloadsDir,
          clean: raw.clean === true,
        }),
      );
    }),
  );
}

export function registerClean(program: Command, run: Runner): void {
  const cmd = program
    .command("clean")
    .description(
      "Remove an image tag's download, extraction and metadata (only inside the downloads directory)",
    )
    .argument("<image-tag>", "image tag", parseImageTag)
    .option("-y, --yes", "do not ask before deleting", false);
  // The run (when GitHub answers) names the original's per-run leftovers: <run id>/, …-<run id>.zip.
  addGithubOptions(cmd);
  addWorkspaceOptions(cmd);
  withExamples(cmd, [
    `gh-gitlab-sync clean ${TAG_EXAMPLE}`,
    `gh-gitlab-sync clean ${TAG_EXAMPLE} --downloads-dir downloads --gh-token "$GH_TOKEN" --yes`,
  ]);
  cmd.action((imageTag: string, raw: Record<string, unknown>) =>
    run(async (ctx) => {
      const workspace = parseOptions(workspaceOptionsSchema, raw);
      await withWorkspaceLocks(workspace, `clean ${imageTag}`, () =>
        cleanImageTag(ctx, outputSteps(ctx.out), {
          imageTag,
          downloadsDir: workspace.downloadsDir,
          run: githubRunLookup(ctx, raw, imageTag),
          ...(raw.yes === true ? {} : { confirm: confirmAtTerminal("clean", ctx.signal) }),
        }),
      );
    }),
  );
}
