/**
 * B11: a daemon already running with the default flags (--poll-interval 30, --interval 900).
 * Idle, its looks are counted at the stand-ins (charged, free 304s, GitLab); then, a few times, a
 * small build's run completes on the GitHub stand-in and the publish lag is read from the
 * daemon's own record (`lastPublish.lagSeconds`, what `…_publish_lag_seconds` observes). The
 * runs complete at spread points of the 30 s look cycle, so the figures span best to worst case.
 * A full idle cycle (what --interval adds four times an hour) is counted by a second daemon run
 * with --interval 10, the same code on a shorter clock.
 */
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_POLL_INTERVAL_SECONDS } from "../../src/config/defaults.js";
import { records, startBinary, summaries, until, type RunningCli } from "../../test/e2e/run-cli.js";
import { addArtifactRun, runCreatedAt } from "../../test/testbed/artifacts.js";
import { daemonArgs, type Testbed } from "../../test/testbed/index.js";
import { makeMetadata } from "../../test/testbed/run-fixtures.js";
import { ref } from "../../test/testbed/scenario.js";
import type { BenchContext } from "../context.js";
import { BrokenBenchmark, formatStat } from "../harness.js";
import { verdict, type Row } from "../report.js";

const githubNow = () => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");

/** One small build (a single java image of a few KiB of layers), as a completed run. */
async function addBuild(tb: Testbed, dir: string, id: number): Promise<void> {
  await addArtifactRun(tb.github, {
    id,
    metadata: makeMetadata({
      prestoRef: ref(`b11-${id}`),
      veloxRef: ref(`b11-v-${id}`),
      platform: "linux/amd64",
      mode: "single",
      workerVariant: "java",
    }),
    dir: path.join(dir, String(id)),
    createdAt: runCreatedAt(id),
  });
}

function lagOf(daemon: RunningCli, runId: number): number | undefined {
  for (const s of summaries(daemon.output().stderr)) {
    const publish = s.lastPublish as { runId: number; lagSeconds: number } | undefined;
    if (publish?.runId === runId) return publish.lagSeconds;
  }
  return undefined;
}

async function stop(daemon: RunningCli): Promise<void> {
  daemon.child.kill("SIGTERM");
  const result = await daemon.result;
  if (result.code !== 0) throw new BrokenBenchmark(`B11: the daemon exited ${result.code}`);
}

const perHour = (count: number, ms: number) => (count * 3_600_000) / ms;

export async function benchPublishLag(ctx: BenchContext): Promise<Row[]> {
  return ctx.withTestbed("b11-testbed", undefined, async (tb) => {
    const fixtures = await ctx.scratch("b11/fixtures");
    const downloads = await ctx.scratch("b11/downloads");
    const start = (extra: string[]) =>
      startBinary(daemonArgs(tb, downloads, extra), {
        env: tb.env,
        cwd: ctx.root,
        timeoutMs: 3_600_000,
      });
    await addBuild(tb, fixtures, 11000);
    const gitlabApi = () => tb.gitlab.requests.filter((r) => r.path.startsWith("/api/")).length;

    const daemon = start([]);
    let idle: { ms: number; charged: number; free: number; gitlab: number };
    const lags: number[] = [];
    try {
      await until("B11: the first cycle", () => summaries(daemon.output().stderr).length >= 1);
      tb.github.resetRequests();
      tb.gitlab.resetRequests();
      const window = (ctx.quick ? 2 : 4) * DEFAULT_POLL_INTERVAL_SECONDS * 1000 + 1000;
      await sleep(window);
      idle = { ms: window, ...tb.github.counts(), gitlab: gitlabApi() };

      for (let i = 0; i < ctx.runs; i += 1) {
        const id = 11001 + i;
        const cycles = summaries(daemon.output().stderr).length;
        // Spread over the look cycle: the i-th run completes (i + 0.5)/runs of the way into it.
        await sleep(((i + 0.5) / ctx.runs) * DEFAULT_POLL_INTERVAL_SECONDS * 1000);
        await addBuild(tb, fixtures, id);
        tb.github.updateRun(id, { updated_at: githubNow() });
        await until(
          `B11: run ${id} published`,
          () =>
            summaries(daemon.output().stderr).length > cycles && lagOf(daemon, id) !== undefined,
          180_000,
        );
        lags.push(lagOf(daemon, id) ?? 0);
      }
      await stop(daemon);
    } finally {
      daemon.child.kill("SIGKILL");
    }

    // A full idle cycle, counted on its own: the listing is conditional there too.
    const full = start(["--interval", "10"]);
    let cycle: { charged: number; free: number; gitlab: number };
    try {
      await until("B11: a first cycle", () => summaries(full.output().stderr).length >= 1);
      tb.github.resetRequests();
      tb.gitlab.resetRequests();
      await until(
        "B11: a full idle cycle",
        () => summaries(full.output().stderr).length >= 2,
        60_000,
      );
      cycle = { ...tb.github.counts(), gitlab: gitlabApi() };
      if (records(full.output().stderr).some((r) => /finished: a cycle now/.test(String(r.msg))))
        throw new BrokenBenchmark("B11: a look woke a cycle while nothing changed");
      await stop(full);
    } finally {
      full.child.kill("SIGKILL");
    }

    const cyclesPerHour = 4;
    const charged = perHour(idle.charged, idle.ms) + cyclesPerHour * cycle.charged;
    const free = perHour(idle.free, idle.ms) + cyclesPerHour * cycle.free;
    const gitlab = perHour(idle.gitlab, idle.ms) + cyclesPerHour * cycle.gitlab;
    const worst = Math.max(...lags);
    return [
      {
        id: "B11",
        figure: `publish lag, default flags: a small build's run completes while the daemon idles (${lags.length} runs spread over the 30 s look cycle)`,
        ours: formatStat(
          lags.map((s) => s * 1000),
          (ms) => `${(ms / 1000).toFixed(1)} s`,
        ),
        peer: "—",
        ratio: "—",
        target: "≤ 60 s",
        verdict: verdict(worst <= 60),
      },
      {
        id: "B11",
        figure: `idle cost per hour, default flags (looks counted over ${Math.round(idle.ms / 1000)} s, plus 4 full cycles)`,
        ours: `${Math.round(charged)} GitHub charged, ${Math.round(free)} free (304), ${Math.round(gitlab)} GitLab requests`,
        peer: "—",
        ratio: "—",
        target: "≤ 120 charged (2 a minute)",
        verdict: verdict(charged <= 120),
      },
    ];
  });
}
