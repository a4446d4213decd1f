/**
 * Running and timing the programs compared: ours (the built binary) and the peers, each as a
 * child process whose wall time we take and whose peak RSS GNU time reports.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { BIN } from "../test/e2e/run-cli.js";

export const GNU_TIME = "/usr/bin/time";

export interface Sample {
  ms: number;
  /** Peak resident set size of the process (largest of its tree), when GNU time is there. */
  rssKiB?: number;
  stdout: string;
  stderr: string;
}

export interface RunSpec {
  env?: Record<string, string>;
  cwd?: string;
  /** Where GNU time writes its report; required to learn the RSS. */
  scratch: string;
  timeoutMs?: number;
}

/** A benchmark that cannot measure what it claims (a command failed) is broken, not slow. */
export class BrokenBenchmark extends Error {}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ["PATH", "HOME", "TMPDIR", "LANG"]) {
    const value = process.env[key];
    if (value) env[key] = value;
  }
  return env;
}

/**
 * Runs a command to its end, asynchronously: the stand-ins it talks to live in this process.
 * Throws BrokenBenchmark on a non-zero exit.
 */
export async function timed(command: string, args: string[], spec: RunSpec): Promise<Sample> {
  await mkdir(spec.scratch, { recursive: true });
  const report = path.join(spec.scratch, `time-${process.hrtime.bigint()}.txt`);
  const withTime = existsSync(GNU_TIME);
  const [file, argv] = withTime
    ? [GNU_TIME, ["-v", "-o", report, command, ...args]]
    : [command, args];
  const started = process.hrtime.bigint();
  const child = spawn(file, argv, {
    cwd: spec.cwd,
    env: { ...baseEnv(), ...spec.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), spec.timeoutMs ?? 900_000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  }).finally(() => clearTimeout(timer));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  let rssKiB: number | undefined;
  if (withTime) {
    const text = await readFile(report, "utf8").catch(() => "");
    const match = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
    if (match) rssKiB = Number(match[1]);
    await rm(report, { force: true });
  }
  if (code !== 0) {
    const tail = (stderr || stdout).trim().split("\n").slice(-8).join("\n");
    throw new BrokenBenchmark(
      `${path.basename(command)} ${args.join(" ")} exited ${code}:\n${tail}`,
    );
  }
  return { ms, ...(rssKiB !== undefined ? { rssKiB } : {}), stdout, stderr };
}

/** The built CLI, as an operator runs it (`npm run build` first). */
export function ours(args: string[], spec: RunSpec): Promise<Sample> {
  return timed(process.execPath, [BIN, ...args, "--log-format", "json"], spec);
}

/** A shell line, for peers that are several commands in a row. */
export function shell(script: string, spec: RunSpec): Promise<Sample> {
  return timed("bash", ["-euo", "pipefail", "-c", script], spec);
}

/**
 * Runs the sides in turn, `runs` times over (ours, peer, ours, peer, …), so drift in a noisy
 * machine hits both alike. Each side does its own untimed set-up and returns what it measured.
 */
export async function alternate<T extends unknown[]>(
  runs: number,
  sides: { [K in keyof T]: (run: number) => Promise<T[K]> },
): Promise<{ [K in keyof T]: Array<T[K]> }> {
  const results = sides.map(() => [] as unknown[]);
  for (let run = 0; run < runs; run += 1) {
    for (const [index, side] of sides.entries()) results[index]?.push(await side(run));
  }
  return results as { [K in keyof T]: Array<T[K]> };
}

export interface Stat {
  median: number;
  min: number;
  max: number;
}

export function stat(values: number[]): Stat {
  if (values.length === 0) throw new BrokenBenchmark("no samples");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1
      ? (sorted[mid] as number)
      : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted.at(-1) as number };
}

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

export function formatBytes(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export const formatSeconds = (ms: number): string =>
  ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 1000).toFixed(2)} s`;

export const formatRate = (bytesPerSecond: number): string =>
  `${(bytesPerSecond / MiB).toFixed(0)} MiB/s`;

/** `median (min–max)` in the given unit. */
export function formatStat(values: number[], unit: (n: number) => string): string {
  const s = stat(values);
  return s.min === s.max ? unit(s.median) : `${unit(s.median)} (${unit(s.min)}–${unit(s.max)})`;
}

/** Peak RSS over the runs: the worst one counts. */
export function peakRss(samples: Sample[]): string {
  const values = samples.map((s) => s.rssKiB).filter((v): v is number => v !== undefined);
  return values.length ? formatBytes(Math.max(...values) * 1024) : "n/a";
}
