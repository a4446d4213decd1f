/**
 * B6: retagging a ~1 GiB image. Ours copies the manifest through the registry API; the original
 * pulled the image into Docker, tagged it and pushed it back. Both go through a counting proxy
 * in front of the registry, so "moved" is every byte either way on the wire.
 */
import { FlakyProxy } from "../../test/testbed/flaky-proxy.js";
import { PROJECT_PATH, type Testbed } from "../../test/testbed/index.js";
import { settle, type BenchContext } from "../context.js";
import {
  alternate,
  formatBytes,
  formatSeconds,
  formatStat,
  ours,
  peakRss,
  shell,
  stat,
  type Sample,
} from "../harness.js";
import { ratio, skippedRows, verdict, type Row } from "../report.js";
import { dockerLogin, emptyEngine } from "./push.js";

const MOVED_LIMIT = 64 * 1024;

function registryVia(tb: Testbed, proxy: FlakyProxy): string[] {
  const args = [...tb.registryArgs];
  args[args.indexOf("--registry") + 1] = proxy.host;
  return args;
}

export async function benchRetag(ctx: BenchContext): Promise<Row[]> {
  const dockerd = ctx.dockerd;
  const artifact = await ctx.artifact("big");
  const scratch = await ctx.scratch("b6");
  const downloads = await ctx.freshPrepared("big", "b6/downloads");
  return ctx.withTestbed("b6/testbed", artifact, async (tb) => {
    ctx.log("B6: pushing the source image");
    await ours(
      [
        "push",
        artifact.imageTag,
        "--engine",
        "registry",
        "--yes",
        "--downloads-dir",
        downloads,
        ...tb.githubArgs,
        ...tb.gitlabArgs,
        ...tb.registryArgs,
      ],
      { env: tb.env, scratch },
    );
    const coordinator = artifact.images[0];
    if (!coordinator) throw new Error("no image in the artifact");
    const source = coordinator.gitlabTag;
    const [port] = tb.gitlab.registryHost.split(":").slice(1).map(Number);
    const proxy = new FlakyProxy({ host: "127.0.0.1", port: port ?? 0 });
    await proxy.start();
    const measured = async (run: () => Promise<Sample>) => {
      await settle(scratch);
      proxy.resetCounts();
      const sample = await run();
      return { sample, moved: proxy.bytesUp + proxy.bytesDown };
    };
    try {
      const oursSide = (i: number) =>
        measured(() =>
          ours(["retag", source, `bench-ours-${i}`, ...tb.gitlabArgs, ...registryVia(tb, proxy)], {
            env: tb.env,
            scratch,
          }),
        );
      const peerSide = async (i: number) => {
        if (!dockerd) return undefined;
        const env = {
          DOCKER_HOST: dockerd.dockerHost,
          DOCKER_CONFIG: await ctx.scratch("b6/docker-config"),
        };
        await emptyEngine(env, scratch);
        const from = `${proxy.host}/${PROJECT_PATH}/${source}`;
        const to = `${from.slice(0, from.lastIndexOf(":"))}:bench-peer-${i}`;
        const script = [
          dockerLogin(proxy.host),
          `docker pull -q ${from} >/dev/null`,
          `docker tag ${from} ${to}`,
          `docker push -q ${to} >/dev/null`,
        ].join(" && ");
        return measured(() => shell(script, { scratch, env }));
      };
      const [o, maybePeer] = await alternate(ctx.runs, [oursSide, peerSide]);
      const p = maybePeer.filter((r) => r !== undefined);
      const moved = Math.max(...o.map((r) => r.moved));
      const rows: Row[] = [
        {
          id: "B6",
          figure: `bytes moved to retag a ${formatBytes(artifact.params.baseBytes + artifact.params.ownBytes)} image (both ways, worst run)`,
          ours: formatBytes(moved),
          peer: p.length
            ? formatStat(
                p.map((r) => r.moved),
                formatBytes,
              )
            : "—",
          ratio: p.length ? ratio(moved, stat(p.map((r) => r.moved)).median) : "—",
          target: "≤ 64 KiB",
          verdict: verdict(moved <= MOVED_LIMIT),
          rss: peakRss(o.map((r) => r.sample)),
        },
      ];
      if (!dockerd) {
        return [
          ...rows,
          ...skippedRows(
            ["B6"],
            "retag time against docker pull + tag + push",
            ctx.dockerdMissing ?? "no dockerd",
          ),
        ];
      }
      const times = (runs: Array<{ sample: Sample }>) => runs.map((r) => r.sample.ms);
      const [om, pm] = [stat(times(o)).median, stat(times(p)).median];
      rows.push({
        id: "B6",
        figure: "retag time",
        ours: formatStat(times(o), formatSeconds),
        peer: formatStat(times(p), formatSeconds),
        ratio: ratio(om, pm),
        target: "≤ 0.02× (≥ 50× faster)",
        verdict: verdict(pm >= 50 * om),
        rss: peakRss(o.map((r) => r.sample)),
      });
      return rows;
    } finally {
      await proxy.stop();
    }
  });
}
