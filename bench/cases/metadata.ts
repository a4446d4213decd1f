/**
 * B1: bytes fetched to learn the metadata of 20 runs with ~20 MiB run-log zips, against the
 * original's way (every run-log zip in full); B7: an idle daemon cycle over 20 known runs.
 */
import path from "node:path";
import type { RequestRecord } from "../../test/testbed/github-standin.js";
import { GITHUB_TOKEN, type Testbed } from "../../test/testbed/index.js";
import { DEFAULT_REPO, makeFixtureRun, makeMetadata } from "../../test/testbed/run-fixtures.js";
import { ref, seedScenario, type ScenarioRun } from "../../test/testbed/scenario.js";
import type { BenchContext } from "../context.js";
import {
  BrokenBenchmark,
  alternate,
  formatBytes,
  formatSeconds,
  formatStat,
  ours,
  peakRss,
  stat,
  timed,
  type Sample,
} from "../harness.js";
import { ratio, verdict, type Row } from "../report.js";

const RUNS = 20;
const ALL_NATIVE = ["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"];

const timeOf = (i: number): string =>
  new Date(Date.UTC(2025, 9, 1) + i * 3_600_000).toISOString().replace(".000Z", "Z");

const sent = (requests: RequestRecord[], keep: (r: RequestRecord) => boolean = () => true) =>
  requests.filter(keep).reduce((sum, r) => sum + r.bytesSent, 0);
const isLog = (r: RequestRecord) => r.host === "blob" && r.path.startsWith("/logs/");

/** Twenty successful builds whose job logs carry ~`noiseBytes` of build output each. */
async function seedLogRuns(tb: Testbed, noiseBytes: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    const id = 7001 + i;
    const metadata = makeMetadata({
      prestoRef: ref(`b1-presto-${i}`),
      veloxRef: ref(`b1-velox-${i}`),
      platform: "linux/amd64",
      mode: "all_native",
      generatedAt: timeOf(i),
    });
    // GitHub's run-log zip holds each job's log and, again, each step's: stepFiles.
    tb.github.addRun(
      await makeFixtureRun({
        id,
        metadata,
        createdAt: timeOf(i),
        noiseBytes,
        uniqueNoise: true,
        stepFiles: true,
      }),
    );
    ids.push(id);
  }
  return ids;
}

export async function benchMetadata(ctx: BenchContext): Promise<Row[]> {
  return ctx.withTestbed("b1-testbed", undefined, async (tb) => {
    ctx.log(`B1: seeding ${RUNS} runs with ${formatBytes(ctx.sizes.logNoiseBytes)} job logs`);
    const ids = await seedLogRuns(tb, ctx.sizes.logNoiseBytes);
    const scratch = await ctx.scratch("b1");
    const common = [...tb.githubArgs, ...tb.gitlabArgs, "--limit", String(RUNS)];

    const oursSide = async (run: number) => {
      const downloads = await ctx.scratch(`b1/ours-${run}`);
      const args = ["xref", ...common, "--downloads-dir", downloads];
      tb.github.resetRequests();
      const first = await ours(args, { env: tb.env, scratch });
      const firstBytes = sent(tb.github.requests);
      tb.github.resetRequests();
      const second = await ours(args, { env: tb.env, scratch });
      const secondLogBytes = sent(tb.github.requests, isLog);
      return { first, firstBytes, second, secondLogBytes };
    };
    const peerSide = async (run: number) => {
      const out = await ctx.scratch(`b1/peer-${run}`);
      const args = ["-sS", "-f", "-L", "-H", `Authorization: Bearer ${GITHUB_TOKEN}`];
      for (const id of ids) {
        args.push("-o", path.join(out, `${id}.zip`));
        args.push(`${tb.github.url}/repos/${DEFAULT_REPO}/actions/runs/${id}/logs`);
      }
      tb.github.resetRequests();
      const sample = await timed("curl", args, { scratch });
      const zipBytes = sent(tb.github.requests, isLog);
      return { sample, zipBytes };
    };
    const [oursRuns, peerRuns] = await alternate(ctx.runs, [oursSide, peerSide]);
    const oursBytes = stat(oursRuns.map((r) => r.firstBytes)).median;
    const peerBytes = stat(peerRuns.map((r) => r.zipBytes)).median;
    if (peerBytes === 0) throw new BrokenBenchmark("B1: the peer fetched no run-log zip");
    const zipEach = peerBytes / ids.length;
    const secondLog = Math.max(...oursRuns.map((r) => r.secondLogBytes));
    const all = oursRuns.flatMap((r) => [r.first, r.second]);
    return [
      {
        id: "B1",
        figure: `bytes fetched, first cycle, ${RUNS} runs (run-log zips ${formatBytes(zipEach)} each)`,
        ours: formatStat(
          oursRuns.map((r) => r.firstBytes),
          formatBytes,
        ),
        peer: formatStat(
          peerRuns.map((r) => r.zipBytes),
          formatBytes,
        ),
        ratio: ratio(oursBytes, peerBytes),
        target: "≤ 0.05×",
        verdict: verdict(oursBytes <= 0.05 * peerBytes),
        rss: peakRss(all),
      },
      {
        id: "B1",
        figure: "log bytes fetched, second cycle (metadata cache)",
        ours: formatBytes(secondLog),
        peer: formatStat(
          peerRuns.map((r) => r.zipBytes),
          formatBytes,
        ),
        ratio: ratio(secondLog, peerBytes),
        target: "0 B",
        verdict: verdict(secondLog === 0),
      },
      {
        id: "B1",
        figure: "time of the first cycle (xref; peer: the zips alone)",
        ours: formatStat(
          oursRuns.map((r) => r.first.ms),
          formatSeconds,
        ),
        peer: formatStat(
          peerRuns.map((r) => r.sample.ms),
          formatSeconds,
        ),
        ratio: ratio(
          stat(oursRuns.map((r) => r.first.ms)).median,
          stat(peerRuns.map((r) => r.sample.ms)).median,
        ),
        target: "—",
        verdict: "info",
      },
    ];
  });
}

/** Twenty synced builds: every image of every run is in GitLab already. */
function idleRuns(): ScenarioRun[] {
  return Array.from({ length: RUNS }, (_, i) => ({
    id: 8001 + i,
    presto: ref(`b7-presto-${i}`),
    velox: ref(`b7-velox-${i}`),
    platform: "linux/amd64",
    mode: "all_native",
    stepFiles: true,
    present: ALL_NATIVE,
  }));
}

/** How long the cycle itself took, from its summary record (start to the line's time). */
function cycleMs(sample: Sample): number {
  for (const line of sample.stderr.split("\n")) {
    if (!line.includes('"summary"')) continue;
    const record = JSON.parse(line) as {
      time: number;
      summary: { startedAt: string; missing: number };
    };
    if (record.summary.missing !== 0)
      throw new BrokenBenchmark("B7: the idle cycle found images missing");
    return record.time - Date.parse(record.summary.startedAt);
  }
  throw new BrokenBenchmark("B7: no cycle summary in the daemon's log");
}

export async function benchIdleDaemon(ctx: BenchContext): Promise<Row[]> {
  return ctx.withTestbed("b7-testbed", undefined, async (tb) => {
    await seedScenario(tb, idleRuns());
    const downloads = await ctx.scratch("b7/downloads");
    const args = [
      "daemon",
      "--once",
      "--engine",
      "registry",
      "--limit",
      String(RUNS),
      "--downloads-dir",
      downloads,
      ...tb.githubArgs,
      ...tb.gitlabArgs,
      ...tb.registryArgs,
    ];
    // The first cycle learns the 20 runs' metadata; the ones measured know them all.
    await ours(args, { env: tb.env, scratch: ctx.root });
    const [samples] = await alternate(ctx.runs, [
      async () => {
        tb.github.resetRequests();
        const sample = await ours(args, { env: tb.env, scratch: ctx.root });
        return {
          sample,
          requests: tb.github.requests.length,
          logBytes: sent(tb.github.requests, isLog),
          cycle: cycleMs(sample),
        };
      },
    ]);
    const runs = samples;
    const requests = Math.max(...runs.map((r) => r.requests));
    const logBytes = Math.max(...runs.map((r) => r.logBytes));
    const cycle = stat(runs.map((r) => r.cycle));
    const rss = peakRss(runs.map((r) => r.sample));
    return [
      {
        id: "B7",
        figure: `GitHub requests and log bytes, idle daemon cycle, ${RUNS} known runs`,
        ours: `${requests} requests, ${formatBytes(logBytes)} of logs (worst run)`,
        peer: "—",
        ratio: "—",
        target: "≤ 2 requests, no log",
        verdict: verdict(requests <= 2 && logBytes === 0),
        rss,
      },
      {
        id: "B7",
        figure: "idle cycle time (from its summary record; whole process in brackets)",
        ours: `${formatStat(
          runs.map((r) => r.cycle),
          formatSeconds,
        )} [process ${formatSeconds(stat(runs.map((r) => r.sample.ms)).median)}]`,
        peer: "—",
        ratio: "—",
        target: "< 1 s",
        verdict: verdict(cycle.median < 1000),
        rss,
      },
    ];
  });
}
