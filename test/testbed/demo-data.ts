import path from "node:path";
import { addArtifactRun, type ArtifactFixture, type ArtifactRunSpec } from "./artifacts.js";
import type { Testbed } from "./index.js";
import type { Platform } from "./run-fixtures.js";
import { ref, seedScenario, metadataOf, type ScenarioRun } from "./scenario.js";

/** One build GitLab already has, and two it lacks (x86 and arm) whose artifacts GitHub serves. */
export const DEMO_RUNS: ScenarioRun[] = [
  {
    id: 501,
    presto: ref("demo-synced"),
    velox: ref("demo-synced"),
    platform: "linux/amd64",
    mode: "all_native",
    present: ["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"],
  },
  {
    id: 502,
    presto: ref("demo-x86"),
    velox: ref("demo-x86"),
    platform: "linux/amd64",
    mode: "all_native",
  },
  {
    id: 503,
    presto: ref("demo-arm"),
    velox: ref("demo-arm"),
    platform: "linux/arm64",
    mode: "single",
    variant: "native_cpu",
  },
];

/** A single-bundle build (the coordinator and one worker) with refs of its own, made from `label`. */
export function singleBuild(
  id: number,
  label: string,
  platform: Platform = "linux/amd64",
): ScenarioRun {
  return { id, presto: ref(label), velox: ref(label), platform, mode: "single" };
}

/**
 * A build GitLab lacks: a successful run of `run` (its metadata as the `index`-th run of a
 * scenario) whose images artifact GitHub serves, made under the testbed's directory.
 */
export async function addMissingBuild(
  tb: Testbed,
  run: ScenarioRun,
  index: number,
  fixture: ArtifactRunSpec["fixture"] = {},
): Promise<ArtifactFixture> {
  const metadata = metadataOf(run, index);
  return addArtifactRun(tb.github, {
    id: run.id,
    metadata,
    dir: path.join(tb.dir, "artifacts", String(run.id)),
    createdAt: metadata["Generated at"] ?? "2025-10-01T00:00:00Z",
    fixture,
  });
}

/** Seeds the demo: the synced build's tags in the registry, the missing builds with real images. */
export async function seedDemo(tb: Testbed): Promise<void> {
  const [synced, ...missing] = DEMO_RUNS;
  if (synced) await seedScenario(tb, [synced]);
  for (const [offset, run] of missing.entries()) {
    await addMissingBuild(tb, run, offset + 1, { layerBytes: 2 << 20 });
  }
}
