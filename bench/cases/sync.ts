/**
 * B8: the whole sync of the bundle — `daemon --once`, streaming, registry engine — with the
 * artifact host held to 64 MiB/s (a fast link: on bare loopback the download is so quick that
 * overlapping it with the push hides nothing), from an empty state into a fresh registry, against
 * `curl` fetching the same artifact at the same rate. Peak disk use of the downloads directory is
 * sampled while it runs; peak RSS comes from GNU time. For the record, once each: the
 * step-by-step path (`daemon --once --no-stream`) and the original's method (download,
 * `unzip -t`, `unzip`, then `docker load` + `tag` + `push` per image).
 */
import { readdir, stat as statFile } from "node:fs/promises";
import path from "node:path";
import { GITHUB_TOKEN, PROJECT_PATH, type Testbed } from "../../test/testbed/index.js";
import { DEFAULT_REPO } from "../../test/testbed/run-fixtures.js";
import { settle, type BenchContext } from "../context.js";
import { q, type ImageArtifact } from "../data.js";
import {
  alternate,
  BrokenBenchmark,
  formatBytes,
  formatSeconds,
  formatStat,
  MiB,
  ours,
  peakRss,
  shell,
  stat,
  timed,
  type Sample,
} from "../harness.js";
import { ratio, verdict, type Row } from "../report.js";
import { dockerLogin, emptyEngine } from "./push.js";

const RATE = 64 * MiB;
const RSS_LIMIT_KIB = 300 * 1024;
const SAMPLE_MS = 100;

/** Bytes the files under `dir` take on disk (allocated blocks, as `du` counts them). */
async function diskUse(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const s = await statFile(path.join(entry.parentPath, entry.name)).catch(() => undefined);
    if (s) total += s.blocks * 512;
  }
  return total;
}

/** Samples the disk use of `dir` every 100 ms while `run` goes on; returns its peak too. */
async function withDiskPeak<T>(dir: string, run: () => Promise<T>): Promise<[T, number]> {
  let peak = 0;
  let going = true;
  const sampler = (async () => {
    while (going) {
      peak = Math.max(peak, await diskUse(dir));
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    }
  })();
  try {
    return [await run(), peak];
  } finally {
    going = false;
    await sampler;
    peak = Math.max(peak, await diskUse(dir));
  }
}

interface SyncRun {
  sample: Sample;
  peakDisk: number;
}

const daemonArgs = (downloads: string, tb: Testbed, extra: string[] = []) => [
  "daemon",
  "--once",
  "--engine",
  "registry",
  "--downloads-dir",
  downloads,
  "--limit",
  "50",
  ...tb.githubArgs,
  ...tb.gitlabArgs,
  ...tb.registryArgs,
  ...extra,
];

/** The artifact's URL as curl takes it: the API answers 302 to the blob host. */
const artifactUrl = (tb: Testbed, artifact: ImageArtifact) =>
  `${tb.github.url}/repos/${DEFAULT_REPO}/actions/artifacts/${artifact.runId * 10}/zip`;
const curlLine = (tb: Testbed, artifact: ImageArtifact, file: string) =>
  `curl -sS -f -L -H ${q(`Authorization: Bearer ${GITHUB_TOKEN}`)} -o ${q(file)} ${q(artifactUrl(tb, artifact))}`;

export async function benchSync(ctx: BenchContext): Promise<Row[]> {
  const artifact = await ctx.artifact("big");
  const size = artifact.fixture.size;
  const scratch = await ctx.scratch("b8");
  const daemonRun = (name: string, extra: string[] = []) =>
    ctx.withTestbed("b8/testbed", artifact, async (tb): Promise<SyncRun> => {
      tb.github.limitBlobRate(RATE);
      const downloads = await ctx.scratch(`b8/${name}`);
      await settle(scratch);
      const [sample, peakDisk] = await withDiskPeak(downloads, () =>
        ours(daemonArgs(downloads, tb, extra), { env: tb.env, scratch }),
      );
      const pushed = tb.gitlab.registry
        .accessLog()
        .filter((e) => e.method === "PUT" && e.path.includes("/manifests/")).length;
      if (pushed < artifact.images.length) {
        throw new BrokenBenchmark(
          `B8: ${name} put ${pushed} manifest(s), not ${artifact.images.length}`,
        );
      }
      return { sample, peakDisk };
    });
  const curlSide = () =>
    ctx.withTestbed("b8/testbed", artifact, async (tb): Promise<SyncRun> => {
      tb.github.limitBlobRate(RATE);
      const dir = await ctx.scratch("b8/curl");
      const file = path.join(dir, "artifact.zip");
      await settle(scratch);
      const [sample, peakDisk] = await withDiskPeak(dir, () =>
        timed("bash", ["-euo", "pipefail", "-c", curlLine(tb, artifact, file)], { scratch }),
      );
      if ((await statFile(file)).size !== size)
        throw new BrokenBenchmark("B8: curl got a short file");
      return { sample, peakDisk };
    });

  const [streamed, curl] = await alternate(ctx.runs, [() => daemonRun("stream"), curlSide]);
  ctx.log(`B8: the step-by-step path and the original's method, once each`);
  const stepByStep = await daemonRun("no-stream", ["--no-stream"]);
  const original = await originalMethod(ctx, artifact, scratch);

  const ms = (runs: SyncRun[]) => runs.map((r) => r.sample.ms);
  const oursMs = stat(ms(streamed)).median;
  const curlMs = stat(ms(curl)).median;
  const peakDisk = Math.max(...streamed.map((r) => r.peakDisk));
  const peakKiB = Math.max(...streamed.map((r) => r.sample.rssKiB ?? Infinity));
  const samples = streamed.map((r) => r.sample);
  const figure = `${formatBytes(size)} bundle at ${RATE / MiB} MiB/s`;
  const rows: Row[] = [
    {
      id: "B8",
      figure: `whole sync (daemon --once, streaming, registry engine) vs curl's download, ${figure}`,
      ours: formatStat(ms(streamed), formatSeconds),
      peer: formatStat(ms(curl), formatSeconds),
      ratio: ratio(oursMs, curlMs),
      target: "≤ 1.25×",
      verdict: verdict(oursMs <= 1.25 * curlMs),
      rss: peakRss(samples),
    },
    {
      id: "B8",
      figure: `peak disk use of the downloads directory (sampled every ${SAMPLE_MS} ms), against the artifact's ${formatBytes(size)}`,
      ours: `${formatBytes(peakDisk)} (${(peakDisk / size).toFixed(3)}×)`,
      peer: `curl: ${formatBytes(Math.max(...curl.map((r) => r.peakDisk)))}`,
      ratio: ratio(peakDisk, size),
      target: "≤ 1.05×",
      verdict: verdict(peakDisk <= 1.05 * size),
    },
    {
      id: "B8",
      figure: "peak RSS of the streaming sync",
      ours: peakRss(samples),
      peer: peakRss(curl.map((r) => r.sample)),
      ratio: "—",
      target: "≤ 300 MiB",
      verdict: verdict(peakKiB <= RSS_LIMIT_KIB),
    },
    {
      id: "B8",
      figure: "for the record: the step-by-step path (daemon --once --no-stream), one run",
      ours: `${formatSeconds(stepByStep.sample.ms)}, peak disk ${formatBytes(stepByStep.peakDisk)} (${(stepByStep.peakDisk / size).toFixed(2)}×)`,
      peer: `curl ${formatSeconds(curlMs)}`,
      ratio: ratio(stepByStep.sample.ms, curlMs),
      target: "—",
      verdict: "info",
      rss: peakRss([stepByStep.sample]),
    },
  ];
  rows.push(
    original
      ? {
          id: "B8",
          figure:
            "for the record: the original's method (curl, unzip -t, unzip, docker load + tag + push each), one run",
          ours: `${formatSeconds(original.sample.ms)}, peak disk ${formatBytes(original.peakDisk)} (${(original.peakDisk / size).toFixed(2)}×) plus the Docker engine's copy`,
          peer: `curl ${formatSeconds(curlMs)}`,
          ratio: ratio(original.sample.ms, curlMs),
          target: "—",
          verdict: "info",
        }
      : {
          id: "B8",
          figure: "for the record: the original's method",
          ours: "—",
          peer: "—",
          ratio: "—",
          target: "—",
          verdict: "skipped",
          note: ctx.dockerdMissing ?? "no dockerd",
        },
  );
  return rows;
}

/** The original's method on the same data, through the Docker CLI, into a fresh registry. */
async function originalMethod(
  ctx: BenchContext,
  artifact: ImageArtifact,
  scratch: string,
): Promise<SyncRun | undefined> {
  const dockerd = ctx.dockerd;
  if (!dockerd) return undefined;
  const env = {
    DOCKER_HOST: dockerd.dockerHost,
    DOCKER_CONFIG: await ctx.scratch("b8/docker-config"),
  };
  await emptyEngine(env, scratch);
  try {
    return await ctx.withTestbed("b8/testbed", artifact, async (tb): Promise<SyncRun> => {
      tb.github.limitBlobRate(RATE);
      const dir = await ctx.scratch("b8/original");
      const zip = path.join(dir, "artifact.zip");
      const extracted = path.join(dir, "extracted");
      const remote = (gitlabTag: string) =>
        `${tb.gitlab.registryHost}/${PROJECT_PATH}/${gitlabTag}`;
      const lines = [
        curlLine(tb, artifact, zip),
        `unzip -t -qq ${q(zip)} >/dev/null`,
        `unzip -qq ${q(zip)} -d ${q(extracted)}`,
        dockerLogin(tb.gitlab.registryHost),
        ...artifact.images.flatMap((image) => [
          `docker load -q -i ${q(path.join(extracted, image.tarball))} >/dev/null`,
          `docker tag ${image.repo}:${image.imageTag} ${remote(image.gitlabTag)}`,
          `docker push -q ${remote(image.gitlabTag)} >/dev/null`,
        ]),
      ];
      await settle(scratch);
      const [sample, peakDisk] = await withDiskPeak(dir, () =>
        shell(lines.join(" && "), { scratch, env }),
      );
      return { sample, peakDisk };
    });
  } finally {
    await emptyEngine(env, scratch);
  }
}
