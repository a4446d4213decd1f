import { Command } from "commander";
import { describeError } from "../errors.js";
import { DEFAULT_INTERVAL_SECONDS, DEFAULT_POLL_INTERVAL_SECONDS } from "../config/defaults.js";
import {
  daemonOptionsSchema,
  envFlag,
  parseOptions,
  stateDirFor,
  workspaceOptionsSchema,
} from "../config/options.js";
import { DaemonHealth, parseHealthAddress, startHealthServer } from "../report/health.js";
import { logSteps } from "../report/steps.js";
import { runDaemon } from "../sync/daemon.js";
import { FailureState } from "../workspace/failures.js";
import { writeLastCycle } from "../workspace/status.js";
import { withWorkspaceLocks } from "./locks.js";
import type { CommandContext } from "./context.js";
import {
  addGithubOptions,
  addGitlabOptions,
  addWorkspaceOptions,
  engineOption,
  MULTIARCH_INDEX_ENV,
  multiarchIndexOption,
  platformOption,
  registryProjectOption,
  withExamples,
} from "./options.js";
import { githubServices, gitlabServices, imageSink, registryServices } from "./services.js";

type Runner = (action: (ctx: CommandContext) => Promise<void>) => Promise<void>;

export function registerDaemon(program: Command, run: Runner): void {
  const cmd = program
    .command("daemon")
    .description(
      "Every --interval seconds, and soon after a run finishes: xref, then sync each missing image tag",
    )
    .option(
      "--interval <seconds>",
      "seconds between full cycles (GitLab listed too)",
      String(DEFAULT_INTERVAL_SECONDS),
    )
    .option(
      "--poll-interval <seconds>",
      "seconds between free looks for finished runs (0: none)",
      String(DEFAULT_POLL_INTERVAL_SECONDS),
    )
    .option("--once", "one cycle, then exit (1 when an image failed)", false)
    .option("--skip-login", "do not check the registry credentials first", false)
    .option("--force-push", "push tags that GitLab already has", false)
    .option("--retag-as-latest", "also point <repo>:latest at each pushed image", false)
    .option("--verbose", "show each engine step", false)
    .option("--no-stream", "step by step: download, prepare, push, clean")
    .option(
      "--retry-backoff <seconds>",
      "wait after an image's first failure; doubles with each further failure",
      String(DEFAULT_INTERVAL_SECONDS),
    )
    .option(
      "--retry-backoff-max <seconds>",
      "longest wait between retries of a failing image",
      "21600",
    )
    .option("--health-port <[host:]port>", "serve /healthz and /metrics (host: 127.0.0.1)")
    .option("--retry-now", "retry failing images now, not after their back-off", false)
    .addOption(platformOption())
    .addOption(multiarchIndexOption())
    .addOption(registryProjectOption())
    .addOption(engineOption());
  addGithubOptions(cmd);
  addGitlabOptions(cmd, true);
  addWorkspaceOptions(cmd);
  withExamples(cmd, [
    "gh-gitlab-sync daemon --once --engine registry",
    "gh-gitlab-sync daemon --interval 600 --health-port 9464 --downloads-dir /var/lib/gh-gitlab-sync",
    "gh-gitlab-sync daemon --platform linux/arm64 --multiarch-index --downloads-dir /srv/arm",
    "gh-gitlab-sync daemon --once --retry-now   # the cause of a failure is fixed: do not wait",
  ]);
  cmd.action((raw: Record<string, unknown>) =>
    run(async (ctx) => {
      const multiarchIndex = raw.multiarchIndex === true || envFlag(ctx.env, MULTIARCH_INDEX_ENV);
      const timing = parseOptions(daemonOptionsSchema, raw);
      const workspace = parseOptions(workspaceOptionsSchema, raw);
      const healthAddress =
        typeof raw.healthPort === "string" ? parseHealthAddress(raw.healthPort) : undefined;
      const logger = raw.verbose === true ? ctx.logger.child({}, { level: "debug" }) : ctx.logger;
      // The registry's flags first: a bad one is a usage error, before any token is missed.
      const registry = registryServices(ctx, raw);
      const github = githubServices(ctx, raw);
      // One project for the cross-reference and the push: --registry-project, else --gitlab-project.
      const gitlab = gitlabServices(ctx, raw, registry.project);
      const stateDir = stateDirFor(workspace);
      // The daemon removes what it pushed from the Docker engine, or its disk would fill up.
      const sink = imageSink(ctx, registry, {
        logger,
        stateDir,
        removeAfterPush: true,
        progress: ctx.progress(logger),
      });
      const health = healthAddress ? new DaemonHealth() : undefined;
      health?.watchGithub(github.client.tally);
      await withWorkspaceLocks(workspace, "daemon", async () => {
        const server =
          health && healthAddress
            ? await startHealthServer(health, healthAddress, logger)
            : undefined;
        try {
          await runDaemon(
            { logger, signal: ctx.signal },
            {
              github,
              gitlab,
              push: { registryClient: registry.client, sink },
              failures: new FailureState(
                stateDir,
                {
                  baseSeconds: timing.retryBackoff,
                  maxSeconds: Math.max(timing.retryBackoff, timing.retryBackoffMax),
                },
                logger,
              ),
              indexesWhole: new Set(),
              // At a terminal, at the default level, the short lines; the journal gets them whole.
              steps: (target) =>
                logSteps(target, {
                  brief: ctx.terminal === true && !target.isLevelEnabled("debug"),
                }),
              progress: ctx.progress,
              ...(health
                ? {
                    onCycle: (summary) => health.record(summary),
                    onPublished: (published) => health.published(published),
                    onDownloaded: (bytes) => health.downloading(bytes),
                  }
                : {}),
              // A summary that cannot be kept costs a warning, never the daemon.
              recordCycle: (summary) =>
                writeLastCycle(stateDir, summary).catch((err: unknown) =>
                  logger.warn({ err: describeError(err) }, "could not record the cycle for status"),
                ),
            },
            {
              downloadsDir: workspace.downloadsDir,
              intervalSeconds: timing.interval,
              pollIntervalSeconds: timing.pollInterval,
              once: raw.once === true,
              skipLogin: raw.skipLogin === true,
              forcePush: raw.forcePush === true,
              retagAsLatest: raw.retagAsLatest === true,
              registry: registry.options.registry,
              registryProject: registry.project,
              username: registry.credentials.username,
              stream: raw.stream !== false,
              ...(typeof raw.platform === "string" ? { platform: raw.platform } : {}),
              multiarchIndex,
              retryNow: raw.retryNow === true,
            },
          );
        } finally {
          await server?.close();
        }
      });
    }),
  );
}
