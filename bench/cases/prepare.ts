/**
 * B3: prepare (extract, checking every CRC, and verify each tarball) of the ~2 GiB artifact,
 * against the original's `unzip -t` then `unzip`, and against a plain `unzip`.
 */
import path from "node:path";
import { settle, type BenchContext } from "../context.js";
import { downloadedDir, q } from "../data.js";
import {
  alternate,
  formatBytes,
  formatSeconds,
  formatStat,
  ours,
  peakRss,
  shell,
  stat,
} from "../harness.js";
import { ratio, verdict, type Row } from "../report.js";

export async function benchPrepare(ctx: BenchContext): Promise<Row[]> {
  const artifact = await ctx.artifact("big");
  const scratch = await ctx.scratch("b3");
  const zip = q(artifact.fixture.zip);
  const oursSide = async () => {
    const downloads = await ctx.scratch("b3/ours");
    await downloadedDir(downloads, artifact);
    await settle(scratch);
    return ours(["prepare", artifact.imageTag, "--downloads-dir", downloads], { scratch });
  };
  const unzipSide = (test: boolean) => async () => {
    const out = q(path.join(await ctx.scratch("b3/unzip"), "extracted"));
    await settle(scratch);
    return shell(`${test ? `unzip -tq ${zip} >/dev/null && ` : ""}unzip -q ${zip} -d ${out}`, {
      scratch,
    });
  };
  const [oursRuns, testedRuns, plainRuns] = await alternate(ctx.runs, [
    oursSide,
    unzipSide(true),
    unzipSide(false),
  ]);
  const median = (runs: Array<{ ms: number }>) => stat(runs.map((s) => s.ms)).median;
  const [o, t, p] = [median(oursRuns), median(testedRuns), median(plainRuns)];
  const times = (runs: Array<{ ms: number }>) =>
    formatStat(
      runs.map((s) => s.ms),
      formatSeconds,
    );
  const figure = `prepare of the ${formatBytes(artifact.fixture.size)} artifact`;
  return [
    {
      id: "B3",
      figure: `${figure}, against \`unzip -t\` + \`unzip\``,
      ours: times(oursRuns),
      peer: times(testedRuns),
      ratio: ratio(o, t),
      target: "≤ 0.6×",
      verdict: verdict(o <= 0.6 * t),
      rss: peakRss(oursRuns),
    },
    {
      id: "B3",
      figure: `${figure}, against a plain \`unzip\``,
      ours: times(oursRuns),
      peer: times(plainRuns),
      ratio: ratio(o, p),
      target: "≤ 1.1×",
      verdict: verdict(o <= 1.1 * p),
      rss: peakRss(oursRuns),
    },
  ];
}
