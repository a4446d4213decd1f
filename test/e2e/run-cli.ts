import { spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = path.join(root, "bin", "gh-gitlab-sync");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  timeoutMs?: number;
  /** Another copy of the launcher (an installed one); the checkout's by default. */
  bin?: string;
}

export interface RunningCli {
  child: ChildProcess;
  /** Output so far (grows while the process runs). */
  output(): { stdout: string; stderr: string };
  result: Promise<CliResult>;
}

/**
 * Starts the built binary as an operator would, for tests that signal it or watch it run.
 * The environment holds only what the test hands over (plus PATH/HOME), so the developer's own
 * tokens never leak in.
 */
export function startBinary(args: string[], options: RunOptions = {}): RunningCli {
  const env: Record<string, string> = {};
  for (const key of ["PATH", "HOME", "TMPDIR", "DOCKER_HOST"]) {
    const value = process.env[key];
    if (value) env[key] = value;
  }
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  const child = spawn(process.execPath, [options.bin ?? BIN, ...args], {
    cwd: options.cwd ?? root,
    env,
    stdio: "pipe",
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const result = new Promise<CliResult>((resolve, reject) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  child.stdin?.end(options.input ?? "");
  return { child, output: () => ({ stdout, stderr }), result };
}

/**
 * Runs the built binary to the end. Asynchronous on purpose: the stand-in servers live in this
 * same process, so a synchronous spawn would block the very servers the CLI talks to.
 */
export function runBinary(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return startBinary(args, options).result;
}

/**
 * The lines an operator sees on stderr that are not log records: under `--log-format json` the
 * closing line (the record with an `exitCode`) and anything printed (`printed`) come back as the
 * text they stand for without it, the closing error as `Error: …`.
 */
export function plainStderrLines(stderr: string): string[] {
  return stderr.split("\n").flatMap((line) => {
    if (line.trim() === "") return [];
    if (!line.startsWith("{")) return [line];
    const record = JSON.parse(line) as { level?: number; msg?: string; exitCode?: unknown };
    if (record.exitCode !== undefined && record.exitCode !== 0 && (record.level ?? 0) >= 50) {
      return [`Error: ${record.msg ?? ""}`];
    }
    if (record.exitCode !== undefined || "printed" in record) return [record.msg ?? ""];
    return [];
  });
}

/** pino JSON records on stderr. */
export function records(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
/** The `summary` of each cycle record. */
export const summaries = (stderr: string) =>
  records(stderr)
    .map((r) => r.summary as Record<string, unknown> | undefined)
    .filter((s): s is Record<string, unknown> => s !== undefined);

/** Waits until `check` holds, polling every 50 ms; throws after `ms`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 60_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}
