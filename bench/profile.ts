/**
 * `npx tsx bench/profile.ts download|prepare|push [--quick]`: one command of ours on the bench's
 * data, under `node --cpu-prof`; the profile lands in `$BENCH_DIR/profiles` (open it in Chrome
 * DevTools or speedscope). For time spent off the main thread (zlib, GC), run the same command
 * under `perf record` instead.
 */
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { BIN } from "../test/e2e/run-cli.js";
import { BenchContext } from "./context.js";
import { downloadedDir } from "./data.js";

const which = process.argv[2] ?? "";
const base = process.env.BENCH_DIR ?? path.join(os.tmpdir(), "gh-gitlab-sync-bench");
const ctx = new BenchContext(
  process.argv.includes("--quick"),
  path.join(base, "profile-run"),
  path.join(base, "cache"),
);
const profiles = path.join(base, "profiles");
const artifact = await ctx.artifact("big");

function profiled(args: string[], env: Record<string, string> = {}): Promise<void> {
  const started = Date.now();
  const child = spawn(
    process.execPath,
    ["--cpu-prof", `--cpu-prof-dir=${profiles}`, BIN, ...args],
    {
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  return new Promise((resolve) =>
    child.on("close", (code) => {
      ctx.log(`${which}: exit ${code} after ${Date.now() - started} ms; profile in ${profiles}`);
      resolve();
    }),
  );
}

if (which === "download") {
  const dir = await ctx.scratch("download");
  await ctx.withTestbed("testbed", artifact, (tb) =>
    profiled(["download", artifact.imageTag, "--output-dir", dir, ...tb.githubArgs], tb.env),
  );
} else if (which === "prepare") {
  const dir = await ctx.scratch("prepare");
  await downloadedDir(dir, artifact);
  await profiled(["prepare", artifact.imageTag, "--downloads-dir", dir]);
} else if (which === "push") {
  const dir = await ctx.freshPrepared("big", "push");
  await ctx.withTestbed("testbed", artifact, (tb) =>
    profiled(
      ["push", artifact.imageTag, "--engine", "registry", "--yes", "--downloads-dir", dir].concat(
        tb.githubArgs,
        tb.gitlabArgs,
        tb.registryArgs,
      ),
      tb.env,
    ),
  );
} else {
  process.stderr.write("usage: tsx bench/profile.ts download|prepare|push [--quick]\n");
  process.exit(2);
}
process.exit(0);
