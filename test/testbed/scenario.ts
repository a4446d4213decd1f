import { createHash } from "node:crypto";
import type { RunMetadata } from "../../src/domain/metadata.js";
import {
  makeFixtureRun,
  makeMetadata,
  type BundleMode,
  type Platform,
  type WorkerVariant,
} from "./run-fixtures.js";
import { seedImage } from "./registry-seed.js";
import type { Testbed } from "./index.js";

/** A 40-hex-digit ref, distinct per label within the 12 characters the image tag keeps. */
export function ref(label: string): string {
  return createHash("sha1").update(label).digest("hex");
}

export interface ScenarioRun {
  id: number;
  presto: string;
  velox: string;
  platform: Platform;
  mode: BundleMode;
  variant?: WorkerVariant;
  branch?: string;
  conclusion?: string | null;
  status?: string;
  stepFiles?: boolean;
  noiseBytes?: number;
  /** The run's logs hold no metadata block. */
  noBlock?: boolean;
  /**
   * The block stops before `Image tag`, as when the step dies on an unset variable under
   * `set -u` after its first lines were printed.
   */
  partialBlock?: boolean;
  /** Repos (below the arch prefix) already in GitLab for this run's tag. */
  present?: string[];
}

const ARCH: Record<Platform, string> = { "linux/amd64": "x86", "linux/arm64": "arm" };

export function gitlabTagOf(run: ScenarioRun, repo: string): string {
  const meta = makeMetadata({
    prestoRef: run.presto,
    veloxRef: run.velox,
    platform: run.platform,
    mode: run.mode,
  });
  const imageTag = meta["Image tag"] ?? "";
  const suffix = `-${run.platform.replace("/", "-")}`;
  // Only the platform suffix goes: a short ref's trailing dash stays (`…-velox-v1.2-`).
  const tag = imageTag.endsWith(suffix) ? imageTag.slice(0, -suffix.length) : imageTag;
  return `${ARCH[run.platform]}/${repo}:${tag}`;
}

export function metadataOf(run: ScenarioRun, index: number): RunMetadata {
  return makeMetadata({
    prestoRef: run.presto,
    veloxRef: run.velox,
    platform: run.platform,
    mode: run.mode,
    workerVariant: run.variant,
    generatedAt: timeOf(index),
  });
}

function timeOf(index: number): string {
  return new Date(Date.UTC(2025, 9, 1, 0, 0, 0) + index * 3_600_000)
    .toISOString()
    .replace(".000Z", "Z");
}

const ALL_NATIVE = ["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"];

/**
 * The listing scenario of the foundation issue: 28 runs on two branches — eighteen already synced,
 * failed, cancelled and in-progress runs, two successful runs sharing an image tag, a run whose
 * logs have no metadata block, run-log zips with and without per-step files, two 20 MiB logs,
 * two runs built from short refs (`main`, `v1.2`, `0.295`) whose tags keep the workflow's
 * trailing dash — against a registry whose x86/presto-coordinator holds more than 100 tags.
 */
export function listingRuns(): ScenarioRun[] {
  const synced: ScenarioRun[] = Array.from({ length: 18 }, (_, i) => ({
    id: 1001 + i,
    presto: ref(`synced-p${i}`),
    velox: ref(`synced-v${i}`),
    platform: i % 3 === 2 ? "linux/arm64" : "linux/amd64",
    mode: "all_native",
    stepFiles: i % 2 === 0,
    present: ALL_NATIVE,
  }));
  return [
    ...synced,
    {
      id: 1019,
      presto: ref("failed"),
      velox: ref("failed"),
      platform: "linux/amd64",
      mode: "all",
      conclusion: "failure",
    },
    {
      id: 1020,
      presto: ref("cancel"),
      velox: ref("cancel"),
      platform: "linux/amd64",
      mode: "all",
      conclusion: "cancelled",
    },
    {
      id: 1021,
      presto: ref("shared"),
      velox: ref("shared"),
      platform: "linux/amd64",
      mode: "all",
      stepFiles: false,
    },
    {
      // Short refs: `presto-main--velox-v1.2--linux-arm64` → `arm/…:presto-main--velox-v1.2-`.
      id: 1022,
      presto: "main",
      velox: "v1.2",
      platform: "linux/arm64",
      mode: "single",
      variant: "java",
      branch: "feature/arm",
    },
    {
      id: 1023,
      presto: ref("noblock"),
      velox: ref("noblock"),
      platform: "linux/amd64",
      mode: "all_native",
      noBlock: true,
    },
    {
      id: 1024,
      presto: "0.295",
      velox: "main",
      platform: "linux/amd64",
      mode: "all_native",
      stepFiles: false,
      noiseBytes: 20 << 20,
      present: ["presto-coordinator"],
    },
    {
      id: 1025,
      presto: ref("big-arm"),
      velox: ref("big-arm"),
      platform: "linux/arm64",
      mode: "all",
      stepFiles: true,
      noiseBytes: 20 << 20,
    },
    {
      id: 1026,
      presto: ref("shared"),
      velox: ref("shared"),
      platform: "linux/amd64",
      mode: "all_native",
      stepFiles: true,
    },
    {
      id: 1027,
      presto: ref("running"),
      velox: ref("running"),
      platform: "linux/amd64",
      mode: "all",
      status: "in_progress",
      conclusion: null,
    },
    {
      id: 1028,
      presto: ref("failed2"),
      velox: ref("failed2"),
      platform: "linux/arm64",
      mode: "all",
      conclusion: "failure",
      branch: "feature/arm",
    },
  ];
}

/** Tags in x86/presto-coordinator that no run accounts for: enough to need a second page. */
export const NIGHTLY_TAGS = Array.from(
  { length: 110 },
  (_, i) => `nightly-${String(i).padStart(3, "0")}`,
);

/** The block's first keys, up to the one before `Image tag`. */
function partialOf(metadata: RunMetadata): RunMetadata {
  const keys = Object.keys(metadata) as Array<keyof RunMetadata>;
  return Object.fromEntries(
    keys.slice(0, keys.indexOf("Image tag")).map((k) => [k, metadata[k]]),
  ) as RunMetadata;
}

export async function seedScenario(
  tb: Testbed,
  runs: ScenarioRun[],
  options: { extraTags?: string[] } = {},
): Promise<void> {
  for (const [index, run] of runs.entries()) {
    const metadata = metadataOf(run, index);
    tb.github.addRun(
      await makeFixtureRun({
        id: run.id,
        metadata: run.noBlock ? null : run.partialBlock ? partialOf(metadata) : metadata,
        conclusion: run.conclusion,
        status: run.status,
        branch: run.branch ?? "main",
        createdAt: timeOf(index),
        stepFiles: run.stepFiles ?? false,
        noiseBytes: run.noiseBytes ?? 64 * 1024,
        crlf: index % 4 === 1,
      }),
    );
  }
  // One seeding call per repository: tags are cheap manifest PUTs after the first upload.
  const byRepo = new Map<string, string[]>();
  for (const run of runs) {
    for (const repo of run.present ?? []) {
      const [repoPath, tag] = gitlabTagOf(run, repo).split(":") as [string, string];
      byRepo.set(repoPath, [...(byRepo.get(repoPath) ?? []), tag]);
    }
  }
  if (options.extraTags?.length) {
    byRepo.set("x86/presto-coordinator", [
      ...(byRepo.get("x86/presto-coordinator") ?? []),
      ...options.extraTags,
    ]);
  }
  for (const [repoPath, tags] of byRepo) await seedImage(tb.gitlab, repoPath, tags);
}
