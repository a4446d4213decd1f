/** The results table, the machine it ran on, and BENCHMARKS.md rewritten between its markers. */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import { GiB } from "./harness.js";

export type Verdict = "met" | "not met" | "info" | "skipped";

export interface Row {
  id: string;
  figure: string;
  ours: string;
  peer: string;
  ratio: string;
  target: string;
  verdict: Verdict;
  /** Peak RSS of ours over the runs of this row. */
  rss?: string;
  /** Why a row was skipped, or what the figure needs to be read right. */
  note?: string;
}

/** Ratio of two figures as `0.42×`. */
export const ratio = (ours: number, peer: number): string =>
  peer === 0 ? "—" : `${(ours / peer).toFixed(ours / peer < 0.1 ? 3 : 2)}×`;

export const verdict = (ok: boolean): Verdict => (ok ? "met" : "not met");

export function skippedRows(ids: string[], figure: string, reason: string): Row[] {
  return ids.map((id) => ({
    id,
    figure,
    ours: "—",
    peer: "—",
    ratio: "—",
    target: "—",
    verdict: "skipped" as const,
    note: reason,
  }));
}

export function table(rows: Row[]): string {
  const lines = [
    "| # | figure | ours: median (min–max) | peer: median (min–max) | ratio | target | met? | ours peak RSS |",
    "|---|---|---|---|---|---|---|---|",
  ];
  const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
  for (const row of rows) {
    const figure = row.note ? `${row.figure} — ${row.note}` : row.figure;
    const met =
      row.verdict === "met" ? "**met**" : row.verdict === "not met" ? "**NOT met**" : row.verdict;
    lines.push(
      `| ${[row.id, figure, row.ours, row.peer, row.ratio, row.target, met, row.rss ?? ""].map(cell).join(" | ")} |`,
    );
  }
  return lines.join("\n");
}

function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
      .trim()
      .split("\n")[0] as string;
  } catch {
    return "not installed";
  }
}

export function machine(): string {
  const cpus = os.cpus();
  const commit = firstLine("git", ["rev-parse", "--short", "HEAD"]);
  const dirty = firstLine("git", ["status", "--porcelain", "--untracked-files=no"]);
  return [
    `- Cores: ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown"}`,
    `- Memory: ${(os.totalmem() / GiB).toFixed(1)} GiB`,
    `- Node ${process.version}, ${os.type()} ${os.release()}`,
    `- Peers: ${firstLine("curl", ["--version"]).split(" ").slice(0, 2).join(" ")}; ${firstLine("unzip", ["-v"]).split(",")[0]}; ${firstLine("skopeo", ["--version"])}; ${firstLine("docker", ["--version"]).replace(/^Docker version/, "docker CLI")} against dockerd ${firstLine("dockerd", ["--version"]).replace(/^Docker version /, "")} (vfs)`,
    `- Registry: ${firstLine("docker-registry", ["--version"])}`,
    `- Commit ${commit}${dirty && dirty !== "not installed" ? " (with uncommitted changes)" : ""}, measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
  ].join("\n");
}

const START = (name: string) => `<!-- bench:${name}:start -->`;
const END = (name: string) => `<!-- bench:${name}:end -->`;

/** Replaces what sits between a pair of markers, leaving the prose around them alone. */
export function replaceBetween(text: string, name: string, body: string): string {
  const start = text.indexOf(START(name));
  const end = text.indexOf(END(name));
  const block = `${START(name)}\n${body.trim()}\n${END(name)}`;
  if (start < 0 || end < start) return `${text.trimEnd()}\n\n${block}\n`;
  return text.slice(0, start) + block + text.slice(end + END(name).length);
}

export async function rewriteBenchmarks(
  file: string,
  sections: Record<string, string>,
): Promise<void> {
  let text = existsSync(file) ? await readFile(file, "utf8") : "# Benchmarks\n";
  for (const [name, body] of Object.entries(sections)) text = replaceBetween(text, name, body);
  await writeFile(file, text);
}

/**
 * The results block with the rows of `ids` replaced by `rows` (a run of some rows only, `--only`),
 * the other rows left as the last full run measured them, and `note` added under the table.
 */
export function mergeResults(block: string, ids: string[], rows: Row[], note: string): string {
  const lines = block.trim().split("\n");
  const isRow = (line: string) => /^\| B\d+ \|/.test(line);
  const idOf = (line: string) => /^\| (B\d+) \|/.exec(line)?.[1] ?? "";
  const header = lines.filter((line, i) => !isRow(line) && i < 2);
  const kept = lines.filter((line) => isRow(line) && !ids.includes(idOf(line)));
  const fresh = table(rows).split("\n").slice(2);
  const number = (line: string) => Number(idOf(line).slice(1));
  const merged = [...kept, ...fresh].sort((a, b) => number(a) - number(b));
  // A note of an earlier re-run of these rows (or of some of them only) is replaced by this one.
  const stale = (line: string) => {
    const named = /^(B\d+(?:, B\d+)*) re-measured on/.exec(line)?.[1];
    return named !== undefined && named.split(", ").every((id) => ids.includes(id));
  };
  const notes = lines.filter(
    (line, i) => !isRow(line) && i >= 2 && line.trim() !== "" && !stale(line),
  );
  return [...header, ...merged, "", ...[...notes, note].join("\n\n").split("\n")].join("\n");
}

/** The text between a pair of markers, or "" when they are missing. */
export function between(text: string, name: string): string {
  const start = text.indexOf(START(name));
  const end = text.indexOf(END(name));
  return start < 0 || end < start ? "" : text.slice(start + START(name).length, end);
}
