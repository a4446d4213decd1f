import { createRequire } from "node:module";
import { Command, CommanderError, Option } from "commander";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, isSyncError, describeError } from "./errors.js";
import {
  createLogger,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
  type Logger,
} from "./report/logger.js";
import { createOutput } from "./report/output.js";
import { printable } from "./util/text.js";
import { HttpClient } from "./net/http.js";
import type { Env } from "./config/tokens.js";
import type { CommandContext } from "./commands/context.js";
import { registerGhList } from "./commands/gh-list.js";
import { registerGitlabList } from "./commands/gitlab-list.js";
import { registerXref } from "./commands/xref.js";
import { registerDaemon } from "./commands/daemon.js";
import { registerStatus } from "./commands/status.js";
import { registerPush, registerRetag } from "./commands/images.js";
import { registerClean, registerDownload, registerPrepare } from "./commands/artifacts.js";
import { expandOptionPrefixes } from "./commands/option-prefixes.js";

export interface CliDeps {
  env: Env;
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  signal: AbortSignal;
}

/** The version in package.json (dist/cli.js and src/cli.ts both sit one level below it). */
function packageVersion(): string {
  const pkg = createRequire(import.meta.url)("../package.json") as { version?: string };
  return pkg.version ?? "unknown";
}

export function buildProgram(deps: CliDeps, onLogger: (logger: Logger) => void): Command {
  const program = new Command("gh-gitlab-sync")
    .version(packageVersion(), "-V, --version", "print the version")
    .description(
      "Mirror the Docker images built by a GitHub Actions workflow into a GitLab container registry.",
    )
    .addOption(
      new Option("--log-level <level>", "log level").choices([...LOG_LEVELS]).default("info"),
    )
    .addOption(
      new Option("--log-format <format>", "log format on stderr")
        .choices(["auto", "pretty", "json"])
        .default("auto"),
    )
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => deps.stdout.write(s),
      writeErr: (s) => deps.stderr.write(s),
    })
    .addHelpText(
      "after",
      `
Authentication:
  GitHub: --gh-token, GH_TOKEN, GITHUB_TOKEN, or a logged-in gh CLI (gh auth login).
  GitLab: --gitlab-token or GITLAB_TOKEN; registry: --registry-username/--registry-password.`,
    );

  const run = async (action: (ctx: CommandContext) => Promise<void>): Promise<void> => {
    const globals = program.opts<{ logLevel: LogLevel; logFormat: LogFormat }>();
    const logger = createLogger({
      level: globals.logLevel,
      format: globals.logFormat,
      isTTY: deps.stderr.isTTY,
    });
    onLogger(logger);
    const http = new HttpClient({ env: deps.env });
    try {
      await action({
        logger,
        out: createOutput(deps.stdout),
        env: deps.env,
        signal: deps.signal,
        http,
      });
    } finally {
      await http.close();
    }
  };

  registerGhList(program, run);
  registerGitlabList(program, run);
  registerXref(program, run);
  registerDownload(program, run);
  registerPrepare(program, run);
  registerClean(program, run);
  registerPush(program, run);
  registerDaemon(program, run);
  registerStatus(program, run);
  registerRetag(program, run);
  // Every subcommand inherits the parent's output and exit handling.
  for (const cmd of program.commands) {
    cmd.exitOverride().configureOutput({
      writeOut: (s) => deps.stdout.write(s),
      writeErr: (s) => deps.stderr.write(s),
    });
  }
  return program;
}

/** Runs the CLI and returns the exit status: 0 success, 1 failure, 2 bad usage. */
export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  let logger: Logger | undefined;
  const program = buildProgram(deps, (l) => (logger = l));
  try {
    // argparse's unambiguous prefixes, which commander lacks (`--include` → `--include-failed`).
    const [node = "node", script = "gh-gitlab-sync", ...args] = argv;
    await program.parseAsync([node, script, ...expandOptionPrefixes(program, args)]);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help); only the status is ours to set.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const debug = logger?.isLevelEnabled("debug") ?? false;
    if (isSyncError(err)) {
      // The message often quotes a server (a registry's error text, a GitLab name): printable.
      deps.stderr.write(`Error: ${printable(err.oneLine())}\n`);
      if (debug && err.stack) deps.stderr.write(`${err.stack}\n`);
      return err.exitCode;
    }
    deps.stderr.write(
      `Error: unexpected failure: ${printable(describeError(err))} — rerun with --log-level debug for details\n`,
    );
    if (debug && err instanceof Error && err.stack) deps.stderr.write(`${err.stack}\n`);
    return EXIT_FAILURE;
  } finally {
    logger?.flush();
  }
}

export async function main(argv: string[]): Promise<void> {
  // `gh-gitlab-sync xref | head`: a reader that goes away is not an error of ours.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    // A second signal means the operator does not want to wait for a clean stop.
    if (signals > 1) process.exit(130);
    process.stderr.write(`Received ${signal}, stopping…\n`);
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.exitCode = await runCli(argv, {
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
    signal: controller.signal,
  });
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
}
