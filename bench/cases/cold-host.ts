/**
 * B10: the next build of the bundle (same base layer, its own layers new), pushed from a host with
 * no local state — empty downloads and state directory, as a fresh CI job, a new volume or the
 * second daemon of a platform split has — into a registry that holds the build before, against
 * the same push from a host that kept the earlier build's state; both the streaming sync and the
 * step-by-step push. `skopeo copy` of the same images is the peer that knows only its own past
 * (it sends the base again). Bytes are what reached the registry, counted at a front before it.
 */
import { cp, mkdir } from "node:fs/promises";
import path from "node:path";
import { CuttingProxy } from "../../test/testbed/cutting-proxy.js";
import {
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  type Testbed,
} from "../../test/testbed/index.js";
import { addRunServing } from "../../test/testbed/artifacts.js";
import { settle, type BenchContext } from "../context.js";
import { q } from "../data.js";
import {
  alternate,
  BrokenBenchmark,
  formatBytes,
  formatSeconds,
  formatStat,
  ours,
  peakRss,
  shell,
  stat,
  type Sample,
} from "../harness.js";
import { ratio, verdict, type Row } from "../report.js";
import { clearSkopeoCache } from "./push.js";

interface Measured {
  sample: Sample;
  /** Request body bytes that reached the registry. */
  bytes: number;
}

type Side = "warm" | "cold";

export async function benchColdHost(ctx: BenchContext): Promise<Row[]> {
  const first = await ctx.artifact("big");
  const next = await ctx.artifact("big2");
  const scratch = await ctx.scratch("b10");
  // Each run starts from a registry holding the first build: pushing it is part of the setup.
  const runs = Math.min(ctx.runs, 3);

  /** A fresh registry (behind a counting front) holding the first build, pushed from `from`. */
  const withFirstBuild = <T>(
    from: string,
    fn: (tb: Testbed, front: CuttingProxy, registry: string[]) => Promise<T>,
  ) =>
    ctx.withTestbed("b10/testbed", first, async (tb) => {
      const { runId: id, metadata, createdAt } = next;
      await addRunServing(tb.github, { id, metadata, createdAt }, next.fixture);
      const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
      const front = new CuttingProxy({ host, port: Number(port) });
      await front.start();
      try {
        const registry = [
          "--registry",
          front.host,
          "--registry-username",
          REGISTRY_USER,
          "--registry-password",
          REGISTRY_PASSWORD,
        ];
        const common = [...tb.githubArgs, ...tb.gitlabArgs, ...registry, "--limit", "50"];
        const setup = await ours(
          [
            "push",
            first.imageTag,
            "--engine",
            "registry",
            "--yes",
            "--downloads-dir",
            from,
            ...common,
          ],
          { env: tb.env, scratch },
        );
        if (!setup.stdout.includes("3 pushed")) {
          throw new BrokenBenchmark(`B10: the first build did not go up: ${setup.stderr}`);
        }
        front.resetCounts();
        await settle(scratch);
        return await fn(tb, front, common);
      } finally {
        await front.stop();
      }
    });

  const sync = (side: Side) => async (): Promise<Measured> => {
    const earlier = await ctx.freshPrepared("big", "b10/first");
    const downloads = side === "warm" ? earlier : await ctx.scratch("b10/cold");
    return withFirstBuild(earlier, async (tb, front, common) => {
      const args = ["sync", next.imageTag, "--engine", "registry", "--yes"];
      const sample = await ours([...args, "--downloads-dir", downloads, ...common], {
        env: tb.env,
        scratch,
      });
      return { sample, bytes: front.bodyBytes };
    });
  };

  const push = (side: Side) => async (): Promise<Measured> => {
    const earlier = await ctx.freshPrepared("big", "b10/first");
    const downloads = await ctx.freshPrepared("big2", "b10/next");
    return withFirstBuild(earlier, async (tb, front, common) => {
      if (side === "warm") {
        await mkdir(path.join(downloads, ".state"), { recursive: true });
        await cp(path.join(earlier, ".state"), path.join(downloads, ".state"), {
          recursive: true,
        });
      }
      const args = ["push", next.imageTag, "--engine", "registry", "--yes"];
      const sample = await ours([...args, "--downloads-dir", downloads, ...common], {
        env: tb.env,
        scratch,
      });
      return { sample, bytes: front.bodyBytes };
    });
  };

  const skopeo = async (): Promise<Measured> => {
    const earlier = await ctx.freshPrepared("big", "b10/first");
    const prepared = await ctx.preparedDir("big2");
    return withFirstBuild(earlier, async (tb, front) => {
      await clearSkopeoCache();
      const tmp = await ctx.scratch("b10/skopeo-tmp");
      const creds = q(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`);
      const tar = q(path.join(tmp, "image.tar"));
      const script = next.images
        .map(
          (image) =>
            `gzip -dc ${q(path.join(prepared, next.imageTag, "extracted", image.tarball))} > ${tar} && ` +
            `skopeo copy --quiet --dest-compress --dest-tls-verify=false --dest-creds ${creds} ` +
            `docker-archive:${tar} docker://${front.host}/${PROJECT_PATH}/${image.gitlabTag} && rm ${tar}`,
        )
        .join(" && ");
      const sample = await shell(script, { scratch, env: { TMPDIR: tmp } });
      return { sample, bytes: front.bodyBytes };
    });
  };

  const [warmSync, coldSync] = await alternate(runs, [sync("warm"), sync("cold")]);
  const [warmPush, coldPush] = await alternate(runs, [push("warm"), push("cold")]);
  ctx.log("B10: skopeo copy of the same images, once");
  const peer = await skopeo();

  const { baseBytes, ownBytes } = next.params;
  const what = `${formatBytes(baseBytes)} base the registry holds + 3 × ${formatBytes(ownBytes)} new`;
  return [
    ...pair(`streaming sync (${what})`, coldSync, warmSync, peer),
    ...pair("step-by-step push (prepared)", coldPush, warmPush, peer),
  ];
}

function pair(what: string, cold: Measured[], warm: Measured[], peer: Measured): Row[] {
  const ms = (runs: Measured[]) => runs.map((r) => r.sample.ms);
  const bytes = (runs: Measured[]) => stat(runs.map((r) => r.bytes)).median;
  const [coldMs, warmMs] = [stat(ms(cold)).median, stat(ms(warm)).median];
  return [
    {
      id: "B10",
      figure: `bytes uploaded, cold host vs warm host: ${what}`,
      ours: formatBytes(bytes(cold)),
      peer: `warm ${formatBytes(bytes(warm))}; skopeo ${formatBytes(peer.bytes)}`,
      ratio: ratio(bytes(cold), bytes(warm)),
      target: "≤ 1.05×",
      verdict: verdict(bytes(cold) <= 1.05 * bytes(warm)),
    },
    {
      id: "B10",
      figure: `time, cold host vs warm host: ${what}`,
      ours: formatStat(ms(cold), formatSeconds),
      peer: `warm ${formatStat(ms(warm), formatSeconds)}; skopeo ${formatSeconds(peer.sample.ms)}`,
      ratio: ratio(coldMs, warmMs),
      target: "≤ 1.15×",
      verdict: verdict(coldMs <= 1.15 * warmMs),
      rss: peakRss(cold.map((r) => r.sample)),
    },
  ];
}
