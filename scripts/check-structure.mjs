#!/usr/bin/env node
/**
 * Keeps the shape of src/ as STYLE.md draws it: arrows only point down.
 *
 *   cli → commands → {sync, report} → {github, gitlab, registry, docker, workspace} → archive
 *       → net → {config, report/logger} → {domain, util} → {errors, lazy}
 *
 * archive/ (the file formats, and the image interface between sources and sinks) sits below the
 * systems that read and write images: the registry and Docker sinks and the workspace use it,
 * never the other way round.
 *
 * Fails (exit 1, one line per finding) on an import that points up or sideways across that
 * order, on a cycle between folders, on a cycle between files of one folder, and on a file in
 * src/ longer than MAX_LINES lines. Modules of the same rank may use each other as long as no
 * cycle forms. `node scripts/check-structure.mjs <dir>` checks another tree (its tests do).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const MAX_LINES = 450;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const src = path.resolve(root, process.argv[2] ?? "src");

/** Rank of each module: an import must go to a lower rank, or stay within its rank. */
const RANKS = new Map([
  ["errors", 0],
  ["lazy", 0],
  ["domain", 1],
  ["util", 1],
  ["config", 2],
  ["report/logger", 2],
  ["net", 3],
  ["archive", 4],
  ["github", 5],
  ["gitlab", 5],
  ["registry", 5],
  ["docker", 5],
  ["workspace", 5],
  ["sync", 6],
  ["report", 6],
  ["commands", 7],
  ["cli", 8],
]);
/** Same-rank pairs that must not meet at all: the pipeline never draws, the drawing never runs it. */
const APART = [["sync", "report"]];

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return files(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** `report/logger` stands apart from the rest of report/: everything may log. */
function moduleOf(file) {
  const rel = path.relative(src, file).split(path.sep);
  if (rel.length === 1) return rel[0].replace(/\.ts$/, "");
  if (rel[0] === "report" && rel[1] === "logger.ts") return "report/logger";
  return rel[0];
}

const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file, text) {
  const found = [];
  for (const match of text.matchAll(IMPORT)) {
    const spec = match[1] ?? match[2];
    if (!spec?.startsWith(".")) continue;
    const target = path.resolve(path.dirname(file), spec.replace(/\.js$/, ".ts"));
    if (!target.startsWith(src + path.sep)) continue;
    const line = text.slice(0, match.index).split("\n").length;
    found.push({ target, line });
  }
  return found;
}

const problems = [];
const edges = new Map();
/** Imports between files of one folder: file → file → where. */
const fileEdges = new Map();
for (const file of files(src)) {
  const text = readFileSync(file, "utf8");
  const rel = path.relative(root, file);
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  if (lines > MAX_LINES) problems.push(`${rel}: ${lines} lines (at most ${MAX_LINES})`);
  const from = moduleOf(file);
  const fromRank = RANKS.get(from);
  if (fromRank === undefined) {
    problems.push(`${rel}: module '${from}' has no place in the layering (add it to RANKS)`);
    continue;
  }
  for (const { target, line } of importsOf(file, text)) {
    const to = moduleOf(target);
    if (path.dirname(target) === path.dirname(file)) {
      if (!fileEdges.has(file)) fileEdges.set(file, new Map());
      if (!fileEdges.get(file).has(target)) fileEdges.get(file).set(target, `${rel}:${line}`);
    }
    if (to === from) continue;
    const toRank = RANKS.get(to);
    if (toRank === undefined) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from).has(to)) edges.get(from).set(to, `${rel}:${line}`);
    const apart = APART.some(([a, b]) => (a === from && b === to) || (a === to && b === from));
    if (toRank > fromRank || apart) {
      problems.push(`${rel}:${line}: ${from} imports ${to}, which sits above it or beside it`);
    }
  }
}

/** Reports each cycle of a graph once, by its first edge, as `kind: a → b → a`. */
function findCycles(graph, kind, name) {
  const state = new Map();
  const stack = [];
  function visit(node) {
    state.set(node, "open");
    stack.push(node);
    for (const [next, where] of graph.get(node) ?? []) {
      if (state.get(next) === "open") {
        const cycle = [...stack.slice(stack.indexOf(next)), next];
        problems.push(`${where}: ${kind}: ${cycle.map(name).join(" → ")}`);
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  }
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
}
findCycles(edges, "import cycle between folders", (m) => m);
// A cycle between two files of one folder is a knot the folder rank cannot see: one of them
// should hold what both need, or the two be one.
findCycles(fileEdges, "import cycle between files", (f) => path.relative(src, f));

if (problems.length > 0) {
  for (const problem of problems) console.error(problem);
  console.error(`check-structure: ${problems.length} problem(s) in ${path.relative(root, src)}/`);
  process.exit(1);
}
console.log(`check-structure: ${path.relative(root, src)}/ keeps its layers`);
