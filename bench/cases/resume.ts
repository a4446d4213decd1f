/**
 * B9: a registry-engine push of a large incompressible layer whose upload is cut at 30 %, 60 %
 * and 90 %, through a buffering front proxy (nginx in front of GitLab's registry: a request cut
 * in transit never reaches the registry), against the same push uncut. What counts is the
 * bytes the client sent, cut requests included: a resumed upload re-sends at most the chunk in
 * flight at each cut, where starting the layer over would re-send 30 + 60 + 90 % of it.
 */
import { CuttingProxy } from "../../test/testbed/cutting-proxy.js";
import type { Testbed } from "../../test/testbed/index.js";
import { settle, type BenchContext } from "../context.js";
import {
  alternate,
  BrokenBenchmark,
  formatBytes,
  formatSeconds,
  formatStat,
  ours,
  peakRss,
  stat,
  type Sample,
} from "../harness.js";
import { ratio, verdict, type Row } from "../report.js";
import { pushArgs } from "./push.js";

const CUTS = [0.3, 0.6, 0.9];
const LIMIT = 1.1;

interface ResumeRun {
  sample: Sample;
  /** Request bytes the client sent (headers, bodies, cut requests): what crossed the link. */
  wireBytes: number;
  cuts: number;
}

export async function benchResume(ctx: BenchContext): Promise<Row[]> {
  const artifact = await ctx.artifact("resume");
  await ctx.preparedDir("resume");
  const scratch = await ctx.scratch("b9");
  // The uncut push runs first in each round and tells where 30/60/90 % of its bytes fall.
  let uncutBodyBytes: number | undefined;

  const push = (cut: boolean) => async (): Promise<ResumeRun> => {
    const downloads = await ctx.freshPrepared("resume", `b9/${cut ? "cut" : "uncut"}`);
    return ctx.withTestbed("b9/testbed", artifact, async (tb: Testbed) => {
      const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
      const proxy = new CuttingProxy({ host, port: Number(port) });
      await proxy.start();
      try {
        const total = uncutBodyBytes;
        if (cut) {
          if (total === undefined) throw new BrokenBenchmark("B9: no uncut push to size the cuts");
          proxy.cutAt(CUTS.map((share) => Math.round(share * total)));
        } else proxy.resetCounts();
        const args = pushArgs(artifact, downloads, tb, "registry").map((arg) =>
          arg === tb.gitlab.registryHost ? proxy.host : arg,
        );
        await settle(scratch);
        const sample = await ours(args, { env: tb.env, scratch });
        if (!cut) uncutBodyBytes = proxy.bodyBytes;
        if (cut && proxy.cutCount !== CUTS.length) {
          throw new BrokenBenchmark(`B9: ${proxy.cutCount} cuts happened, not ${CUTS.length}`);
        }
        return { sample, wireBytes: proxy.wireBytes, cuts: proxy.cutCount };
      } finally {
        await proxy.stop();
      }
    });
  };

  const [uncut, cut] = await alternate(ctx.runs, [push(false), push(true)]);
  const bytes = (runs: ResumeRun[]) => runs.map((r) => r.wireBytes);
  const times = (runs: ResumeRun[]) => runs.map((r) => r.sample.ms);
  const [ob, pb] = [stat(bytes(cut)).median, stat(bytes(uncut)).median];
  const layer = formatBytes(artifact.params.baseBytes);
  return [
    {
      id: "B9",
      figure: `bytes sent, registry-engine push of a ${layer} incompressible layer cut at 30/60/90 % behind a buffering proxy`,
      ours: formatStat(bytes(cut), formatBytes),
      peer: formatStat(bytes(uncut), formatBytes),
      ratio: ratio(ob, pb),
      target: `≤ ${LIMIT.toFixed(2)}×`,
      verdict: verdict(ob <= LIMIT * pb),
      rss: peakRss(cut.map((r) => r.sample)),
    },
    {
      id: "B9",
      figure: "push time, cut three times against uncut (each cut waits out one retry back-off)",
      ours: formatStat(times(cut), formatSeconds),
      peer: formatStat(times(uncut), formatSeconds),
      ratio: ratio(stat(times(cut)).median, stat(times(uncut)).median),
      target: "—",
      verdict: "info",
      rss: peakRss(uncut.map((r) => r.sample)),
    },
  ];
}
