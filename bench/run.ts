/**
 * `npm run bench`: B1–B11 of BENCH.md, ours against the peers on the testbed, and the tables of
 * BENCHMARKS.md rewritten. `--quick` runs small sizes as a smoke test (fails on a broken
 * benchmark, never on a slow one) and leaves BENCHMARKS.md alone; `--only B2,B4` picks rows and
 * replaces just those in BENCHMARKS.md (`--no-write` leaves it alone).
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { dockerdAvailability, startDockerd } from "../test/testbed/dockerd.js";
import { testbedGate } from "../test/testbed/index.js";
import { benchDownload } from "./cases/download.js";
import { benchIdleDaemon, benchMetadata } from "./cases/metadata.js";
import { benchPublishLag } from "./cases/poll.js";
import { benchPrepare } from "./cases/prepare.js";
import { benchDockerPush, benchRegistryPush } from "./cases/push.js";
import { benchResume } from "./cases/resume.js";
import { benchRetag } from "./cases/retag.js";
import { benchSync } from "./cases/sync.js";
import { benchColdHost } from "./cases/cold-host.js";
import { BenchContext } from "./context.js";
import { formatSeconds } from "./harness.js";
import { between, machine, mergeResults, rewriteBenchmarks, table, type Row } from "./report.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CASES: Array<[string, (ctx: BenchContext) => Promise<Row[]>]> = [
  ["B1", benchMetadata],
  ["B2", benchDownload],
  ["B3", benchPrepare],
  ["B4", benchRegistryPush],
  ["B5", benchDockerPush],
  ["B6", benchRetag],
  ["B7", benchIdleDaemon],
  ["B8", benchSync],
  ["B9", benchResume],
  ["B10", benchColdHost],
  ["B11", benchPublishLag],
];

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    "no-write": { type: "boolean", default: false },
  },
});
const quick = values.quick === true;
const only = values.only?.toUpperCase().split(",");
const chosen = CASES.filter(([id]) => !only || only.includes(id));

const started = Date.now();
const base = process.env.BENCH_DIR ?? path.join(os.tmpdir(), "gh-gitlab-sync-bench");
const ctx = new BenchContext(quick, path.join(base, "run"), path.join(base, "cache"));

// The peers, and GNU time for peak RSS, from Debian through the tests' own setup script.
execFileSync(
  "bash",
  [path.join(root, "scripts/setup-system.sh"), "curl", "unzip", "skopeo", "time"],
  {
    stdio: "inherit",
  },
);
const gate = testbedGate();
if (gate.skip) throw new Error(`bench: ${gate.reason}`);

await rm(ctx.root, { recursive: true, force: true });
await mkdir(ctx.root, { recursive: true });
await mkdir(ctx.cacheDir, { recursive: true });
if (chosen.some(([id]) => id === "B5" || id === "B6" || id === "B8")) {
  const docker = dockerdAvailability();
  if (docker.ok) ctx.dockerd = await startDockerd({ dir: ctx.root });
  else ctx.dockerdMissing = docker.reason ?? "dockerd cannot run here";
}

const rows: Row[] = [];
const broken: string[] = [];
try {
  for (const [id, run] of chosen) {
    const caseStart = Date.now();
    ctx.log(`${id}: ${ctx.runs} alternating runs${quick ? " (quick sizes)" : ""}`);
    try {
      rows.push(...(await run(ctx)));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      broken.push(`${id}: ${message}`);
      rows.push({
        id,
        figure: "BROKEN",
        ours: "—",
        peer: "—",
        ratio: "—",
        target: "—",
        verdict: "skipped",
        note: message.split("\n")[0],
      });
    }
    ctx.log(`${id}: done in ${formatSeconds(Date.now() - caseStart)}`);
  }
} finally {
  await ctx.dockerd?.stop();
  await rm(ctx.root, { recursive: true, force: true });
}

const elapsed = formatSeconds(Date.now() - started);
const results = `${table(rows)}\n\n${quick ? "Quick sizes (smoke run). " : ""}${ctx.runs} alternating runs per figure; \`npm run bench${quick ? " -- --quick" : ""}\` took ${elapsed} in all (data generation included when not cached).`;
process.stdout.write(`\n${machine()}\n\n${results}\n`);
const benchmarks = path.join(root, "BENCHMARKS.md");
if (!quick && !values["no-write"] && broken.length === 0) {
  if (!only) {
    await rewriteBenchmarks(benchmarks, { machine: machine(), results });
    ctx.log("BENCHMARKS.md rewritten");
  } else {
    // Some rows only: those are replaced, the rest stay as the last full run measured them.
    const ids = chosen.map(([id]) => id);
    const commit = /Commit ([0-9a-f]+)/.exec(machine())?.[1] ?? "?";
    const note = `${ids.join(", ")} re-measured on ${ids.length > 1 ? "their" : "its"} own (\`npm run bench -- --only ${ids.join(",")}\`, ${ctx.runs} alternating runs, ${elapsed}) at commit ${commit}, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC; the machine above is the full run's.`;
    const current = between(await readFile(benchmarks, "utf8"), "results");
    await rewriteBenchmarks(benchmarks, { results: mergeResults(current, ids, rows, note) });
    ctx.log(`BENCHMARKS.md: rows ${ids.join(", ")} replaced`);
  }
}
if (broken.length > 0) {
  process.stderr.write(`\nbroken benchmarks:\n${broken.join("\n\n")}\n`);
  process.exit(1);
}
process.exit(0);
