import { createRequire } from "node:module";
import { Command, CommanderError, Option } from "commander";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_SIGINT,
  EXIT_SIGTERM,
  EXIT_USAGE,
  InterruptedError,
  isSyncError,
  describeError,
} from "./errors.js";
import {
  createLogger,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
  type Logger,
} from "./report/logger.js";
import { createOutput } from "./report/output.js";
import { jsonRecord, keepJsonLines, LEVEL } from "./report/json-lines.js";
import { progressListener } from "./report/progress.js";
import { createLiveArea } from "./report/terminal.js";
import { printable } from "./util/text.js";
import { HttpClient, type HttpSettings } from "./net/http.js";
import { DEFAULT_CONNECT_TIMEOUT_SECONDS } from "./config/defaults.js";
import { httpOptionsSchema, parseOptions } from "./config/options.js";
import {
  addGithubOptions,
  addGitlabOptions,
  addWorkspaceOptions,
  httpTimeoutOption,
} from "./commands/options.js";
import { addFlagsPage, HELP } from "./commands/help.js";
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
import { registerSync } from "./commands/sync.js";

export interface CliDeps {
  env: Env;
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  signal: AbortSignal;
}

/** The version in package.json (dist/cli.js and src/cli.ts both sit one level below it). */
function packageVersion(): string {
  const pkg = createRequire(import.meta.url)("../package.json") as { version?: string };
  return pkg.version ?? "unknown";
}

/** The subcommands that talk HTTP, and so take `--http-timeout`. */
const HTTP_COMMANDS = new Set([
  "gh-list",
  "gitlab-list",
  "xref",
  "download",
  "push",
  "sync",
  "daemon",
  "retag",
]);

/** Commands that leave files or images behind; the listings and the daemon say no more. */
const WRITERS = new Set(["download", "prepare", "push", "sync", "clean", "retag"]);

/** `--http-timeout` (or its env var): the idle timeout, and the connect timeout up to 30 s. */
function httpTimeouts(raw: Record<string, unknown>): HttpSettings {
  if (raw.httpTimeout === undefined) return {};
  const { httpTimeout } = parseOptions(httpOptionsSchema, { httpTimeout: raw.httpTimeout });
  return {
    idleTimeoutMs: httpTimeout * 1000,
    connectTimeoutMs: Math.min(httpTimeout, DEFAULT_CONNECT_TIMEOUT_SECONDS) * 1000,
  };
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
    .configureHelp(HELP)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => deps.stdout.write(s),
      writeErr: (s) => deps.stderr.write(s),
    })
    .addHelpText(
      "after",
      `
Authentication:
  GitHub: --gh-token, GH_TOKEN, GITHUB_TOKEN, or a logged-in gh CLI.
  GitLab: --gitlab-token or GITLAB_TOKEN.
  Registry: --registry-username/--registry-password (else the GitLab token).

Network:
  HTTPS_PROXY for https, HTTP_PROXY for plain http, NO_PROXY for both, as curl;
  NODE_EXTRA_CA_CERTS=<ca.pem> trusts an in-house CA.

The options many subcommands share: gh-gitlab-sync help flags`,
    );

  // The subcommand being run: its `--http-timeout` sets up the one HTTP client.
  let invoked: Command | undefined;
  program.hook("preAction", (_program, action) => {
    invoked = action;
  });
  const run = async (action: (ctx: CommandContext) => Promise<void>): Promise<void> => {
    const globals = program.opts<{ logLevel: LogLevel; logFormat: LogFormat }>();
    // On a terminal, bars live at the bottom of stderr and every other line is printed above them;
    // never under `--log-format json`, whose every line is a record.
    const live =
      deps.stderr.isTTY && globals.logFormat !== "json" ? createLiveArea(deps.stderr) : undefined;
    const stderr = deps.stderr;
    const logger = createLogger({
      level: globals.logLevel,
      format: globals.logFormat,
      isTTY: deps.stderr.isTTY,
      write: live ? (text) => live.print(stderr, text) : (text) => void stderr.write(text),
    });
    onLogger(logger);
    const http = new HttpClient({ env: deps.env, ...httpTimeouts(invoked?.opts() ?? {}) });
    // Ends what the command left running when it is over, however it ended: the other half of
    // a comparison whose first half failed must not sit through its retries before the exit.
    const finished = new AbortController();
    try {
      await action({
        logger,
        out: createOutput(deps.stdout, live),
        env: deps.env,
        signal: AbortSignal.any([deps.signal, finished.signal]),
        http,
        progress: (target) => progressListener(target, live ? { live } : {}),
        terminal: live !== undefined,
      });
    } finally {
      finished.abort(new Error("the command is over"));
      // Nothing may stay drawn under the closing line (the error, the shell prompt).
      live?.clear();
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
  registerSync(program, run);
  registerDaemon(program, run);
  registerStatus(program, run);
  registerRetag(program, run);
  addFlagsPage(program, (page) => {
    addGithubOptions(page);
    addGitlabOptions(page, true);
    addWorkspaceOptions(page);
    page.addOption(httpTimeoutOption());
  });
  // Every subcommand inherits the parent's output and exit handling.
  for (const cmd of program.commands) {
    if (HTTP_COMMANDS.has(cmd.name())) cmd.addOption(httpTimeoutOption());
    cmd.exitOverride().configureOutput({
      writeOut: (s) => deps.stdout.write(s),
      writeErr: (s) => deps.stderr.write(s),
    });
  }
  return program;
}

/** Where the CLI's closing line goes: plain text, or under `--log-format json` one record. */
interface Closing {
  line(level: number, text: string, fields?: Record<string, unknown>): void;
  /** The stack of what ended the run, under `--log-level debug`. */
  stack(err: unknown): void;
}

function closingWriter(deps: CliDeps, json: () => boolean, debug: () => boolean): Closing {
  return {
    line: (level, text, fields = {}) =>
      void deps.stderr.write(json() ? jsonRecord(level, text, fields) : `${text}\n`),
    stack: (err) => {
      if (!debug() || !(err instanceof Error) || !err.stack) return;
      deps.stderr.write(
        json() ? jsonRecord(LEVEL.error, err.message, { stack: err.stack }) : `${err.stack}\n`,
      );
    },
  };
}

/**
 * The one line for a command a signal stopped, and its status: 130 after SIGINT, 143 after
 * SIGTERM, as the shell reports a command a signal ended, except that SIGTERM is how systemd
 * stops the daemon, which then ends cleanly with 0. Whatever error the abort surfaced as
 * (a cancelled request, a closed stream) is the interruption, never an "unexpected failure".
 */
function interruptedExit(
  deps: CliDeps,
  closing: Closing,
  command: string | undefined,
  err: unknown,
): number {
  const reason: unknown = deps.signal.reason;
  const signalName = reason instanceof InterruptedError ? reason.signalName : "SIGINT";
  const hint =
    err instanceof InterruptedError && err.hint
      ? err.hint
      : command && WRITERS.has(command)
        ? "nothing half-written was left; run it again to carry on"
        : undefined;
  const what = command ? `; ${command} stopped` : "";
  const exitCode =
    command === "daemon" && signalName === "SIGTERM"
      ? EXIT_OK
      : signalName === "SIGTERM"
        ? EXIT_SIGTERM
        : EXIT_SIGINT;
  closing.line(
    exitCode === EXIT_OK ? LEVEL.info : LEVEL.warn,
    `Interrupted by ${signalName}${what}${hint ? ` — ${hint}` : ""}`,
    { signal: signalName, exitCode },
  );
  return exitCode;
}

/** Runs the CLI and returns the exit status: 0 success, 1 failure, 2 bad usage, 130/143 signals. */
export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  let logger: Logger | undefined;
  let command: string | undefined;
  const program = buildProgram(deps, (l) => (logger = l));
  program.hook("preAction", (_program, action) => {
    command = action.name();
  });
  // The global options are parsed before anything is printed, commander's own errors included.
  const json = () => program.opts<{ logFormat?: LogFormat }>().logFormat === "json";
  const closing = closingWriter(deps, json, () => logger?.isLevelEnabled("debug") ?? false);
  const restoreStderr = keepJsonLines(deps.stderr, json);
  try {
    // argparse's unambiguous prefixes, which commander lacks (`--include` → `--include-failed`).
    const [node = "node", script = "gh-gitlab-sync", ...args] = argv;
    await program.parseAsync([node, script, ...expandOptionPrefixes(program, args)]);
    return deps.signal.aborted ? interruptedExit(deps, closing, command, undefined) : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help); only the status is ours to set.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (deps.signal.aborted) {
      closing.stack(err);
      return interruptedExit(deps, closing, command, err);
    }
    if (isSyncError(err)) {
      // The message often quotes a server (a registry's error text, a GitLab name): printable.
      const line = printable(err.oneLine());
      closing.line(LEVEL.error, json() ? line : `Error: ${line}`, { exitCode: err.exitCode });
      closing.stack(err);
      return err.exitCode;
    }
    const line = `unexpected failure: ${printable(describeError(err))} — rerun with --log-level debug for details`;
    closing.line(LEVEL.error, json() ? line : `Error: ${line}`, { exitCode: EXIT_FAILURE });
    closing.stack(err);
    return EXIT_FAILURE;
  } finally {
    logger?.flush();
    restoreStderr();
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
  const onSignal = (signal: NodeJS.Signals) => {
    // A second signal means the operator does not want to wait for a clean stop. `exit` still
    // runs the lock's exit handler, so the downloads directory is not left locked.
    if (controller.signal.aborted) process.exit(signal === "SIGTERM" ? EXIT_SIGTERM : EXIT_SIGINT);
    controller.abort(new InterruptedError(signal));
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
  // Stopped by a signal: everything of ours is closed, and a socket some library still holds
  // open (a server that never answers) must not keep the process past its promised stop.
  if (controller.signal.aborted) setTimeout(() => process.exit(), 500).unref();
}
