/**
 * B4: pushing the three images of a bundle with the registry engine, against `skopeo copy
 * --dest-compress`; B5: pushing through the Docker engine, against `docker load` + `tag` + `push`.
 * Every run gets a registry with empty storage, and both sides start with no cache of uploads.
 */
import { mkdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { AccessLogEntry } from "../../test/testbed/registry.js";
import {
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  type Testbed,
} from "../../test/testbed/index.js";
import { settle, type BenchContext } from "../context.js";
import { q, type ImageArtifact } from "../data.js";
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
import { ratio, skippedRows, verdict, type Row } from "../report.js";

/** Completed blob uploads in a registry access log, by digest, and cross-repository mounts. */
export function blobUploads(log: AccessLogEntry[]): {
  perDigest: Map<string, number>;
  mounts: number;
} {
  const perDigest = new Map<string, number>();
  let mounts = 0;
  for (const entry of log) {
    if (entry.status !== 201 || !entry.path.includes("/blobs/uploads/")) continue;
    const query = new URLSearchParams(entry.path.split("?")[1] ?? "");
    const digest = query.get("digest");
    if (entry.method === "PUT" && digest) perDigest.set(digest, (perDigest.get(digest) ?? 0) + 1);
    if (entry.method === "POST" && query.get("mount")) mounts += 1;
  }
  return { perDigest, mounts };
}

function tarballOf(prepared: string, artifact: ImageArtifact, tarball: string): string {
  return path.join(prepared, artifact.imageTag, "extracted", tarball);
}

const remote = (tb: Testbed, gitlabTag: string) =>
  `${tb.gitlab.registryHost}/${PROJECT_PATH}/${gitlabTag}`;

export const pushArgs = (
  artifact: ImageArtifact,
  downloads: string,
  tb: Testbed,
  engine: string,
) => [
  "push",
  artifact.imageTag,
  "--engine",
  engine,
  "--yes",
  "--downloads-dir",
  downloads,
  ...tb.githubArgs,
  ...tb.gitlabArgs,
  ...tb.registryArgs,
];

interface PushRun {
  sample: Sample;
  uploads: ReturnType<typeof blobUploads>;
}

function uploadSummary(runs: PushRun[]): { text: string; once: boolean } {
  const last = runs.at(-1)?.uploads;
  if (!last) return { text: "—", once: false };
  const counts = [...last.perDigest.values()];
  const twice = counts.filter((n) => n > 1).length;
  const once = runs.every((r) => [...r.uploads.perDigest.values()].every((n) => n === 1));
  return {
    text: `${counts.length} blobs uploaded, ${twice} more than once, ${last.mounts} mounted`,
    once,
  };
}

function timeRow(id: string, figure: string, o: PushRun[], p: PushRun[], limit: number): Row {
  const times = (runs: PushRun[]) => runs.map((r) => r.sample.ms);
  const [om, pm] = [stat(times(o)).median, stat(times(p)).median];
  return {
    id,
    figure,
    ours: formatStat(times(o), formatSeconds),
    peer: formatStat(times(p), formatSeconds),
    ratio: ratio(om, pm),
    target: `≤ ${limit.toFixed(1)}×`,
    verdict: verdict(om <= limit * pm),
    rss: peakRss(o.map((r) => r.sample)),
  };
}

/** skopeo's blob-info cache (root's and a user's): it would let a run reuse an earlier upload. */
export async function clearSkopeoCache(): Promise<void> {
  for (const dir of [
    "/var/lib/containers/cache",
    path.join(os.homedir(), ".local/share/containers/cache"),
  ])
    await rm(dir, { recursive: true, force: true });
}

export async function benchRegistryPush(ctx: BenchContext): Promise<Row[]> {
  const artifact = await ctx.artifact("big");
  const prepared = await ctx.preparedDir("big");
  const scratch = await ctx.scratch("b4");
  const oursSide = async (): Promise<PushRun> => {
    const downloads = await ctx.freshPrepared("big", "b4/ours");
    return ctx.withTestbed("b4/testbed", artifact, async (tb) => {
      await settle(scratch);
      const sample = await ours(pushArgs(artifact, downloads, tb, "registry"), {
        env: tb.env,
        scratch,
      });
      return { sample, uploads: blobUploads(tb.gitlab.registry.accessLog()) };
    });
  };
  const peerSide = async (): Promise<PushRun> =>
    ctx.withTestbed("b4/testbed", undefined, async (tb) => {
      await clearSkopeoCache();
      const tmp = await ctx.scratch("b4/skopeo-tmp");
      const creds = q(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`);
      // skopeo 1.9 reads docker-archive only uncompressed: gunzip first, inside the timing.
      const tar = q(path.join(tmp, "image.tar"));
      const script = artifact.images
        .map(
          (image) =>
            `gzip -dc ${q(tarballOf(prepared, artifact, image.tarball))} > ${tar} && ` +
            `skopeo copy --quiet --dest-compress --dest-tls-verify=false --dest-creds ${creds} ` +
            `docker-archive:${tar} docker://${remote(tb, image.gitlabTag)} && rm ${tar}`,
        )
        .join(" && ");
      await settle(scratch);
      const sample = await shell(script, { scratch, env: { TMPDIR: tmp } });
      return { sample, uploads: blobUploads(tb.gitlab.registry.accessLog()) };
    });
  const [o, p] = await alternate(ctx.runs, [oursSide, peerSide]);
  const ourUploads = uploadSummary(o);
  const { baseBytes, ownBytes } = artifact.params;
  return [
    timeRow(
      "B4",
      `push of 3 images (${formatBytes(baseBytes)} shared base + ${formatBytes(ownBytes)} each), registry engine`,
      o,
      p,
      1.0,
    ),
    {
      id: "B4",
      figure: "blob uploads seen in the registry's access log (each run)",
      ours: ourUploads.text,
      peer: uploadSummary(p).text,
      ratio: "—",
      target: "shared layer once",
      verdict: verdict(ourUploads.once),
    },
  ];
}

export async function benchDockerPush(ctx: BenchContext): Promise<Row[]> {
  const dockerd = ctx.dockerd;
  if (!dockerd)
    return skippedRows(["B5"], "push, docker engine", ctx.dockerdMissing ?? "no dockerd");
  const artifact = await ctx.artifact("small");
  const prepared = await ctx.preparedDir("small");
  const scratch = await ctx.scratch("b5");
  const dockerEnv = async () => {
    const config = await ctx.scratch("b5/docker-config");
    return { DOCKER_HOST: dockerd.dockerHost, DOCKER_CONFIG: config };
  };
  const oursSide = async (): Promise<PushRun> => {
    const downloads = await ctx.freshPrepared("small", "b5/ours");
    const env = await dockerEnv();
    await emptyEngine(env, scratch);
    return ctx.withTestbed("b5/testbed", artifact, async (tb) => {
      await settle(scratch);
      const sample = await ours(pushArgs(artifact, downloads, tb, "docker"), {
        env: { ...tb.env, ...env },
        scratch,
      });
      return { sample, uploads: blobUploads(tb.gitlab.registry.accessLog()) };
    });
  };
  const peerSide = async (): Promise<PushRun> => {
    const env = await dockerEnv();
    await emptyEngine(env, scratch);
    return ctx.withTestbed("b5/testbed", undefined, async (tb) => {
      const lines = [
        dockerLogin(tb.gitlab.registryHost),
        ...artifact.images.flatMap((image) => [
          `docker load -q -i ${q(tarballOf(prepared, artifact, image.tarball))} >/dev/null`,
          `docker tag ${image.repo}:${image.imageTag} ${remote(tb, image.gitlabTag)}`,
          `docker push -q ${remote(tb, image.gitlabTag)} >/dev/null`,
        ]),
      ];
      await settle(scratch);
      const sample = await shell(lines.join(" && "), { scratch, env });
      return { sample, uploads: blobUploads(tb.gitlab.registry.accessLog()) };
    });
  };
  const [o, p] = await alternate(ctx.runs, [oursSide, peerSide]);
  const { baseBytes, ownBytes } = artifact.params;
  return [
    timeRow(
      "B5",
      `push of 3 images (${formatBytes(baseBytes)} shared base + ${formatBytes(ownBytes)} each), docker engine`,
      o,
      p,
      1.1,
    ),
  ];
}

/** The docker CLI's login, as the original ran it, into the run's own DOCKER_CONFIG. */
export const dockerLogin = (host: string): string =>
  `echo ${q(REGISTRY_PASSWORD)} | docker login -u ${q(REGISTRY_USER)} --password-stdin ${host} >/dev/null`;

/** Removes every image from the engine, so each run loads and pushes from nothing. */
export async function emptyEngine(env: Record<string, string>, scratch: string): Promise<void> {
  await mkdir(scratch, { recursive: true });
  await shell("docker image ls -qa | sort -u | xargs -r docker image rm -f >/dev/null", {
    env,
    scratch,
  }).catch((err: unknown) => {
    throw new BrokenBenchmark(`cannot empty the Docker engine: ${String(err)}`);
  });
}
