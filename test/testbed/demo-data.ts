import path from "node:path";
import { addArtifactRun } from "./artifacts.js";
import type { Testbed } from "./index.js";
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

/** Seeds the demo: the synced build's tags in the registry, the missing builds with real images. */
export async function seedDemo(tb: Testbed): Promise<void> {
  const [synced, ...missing] = DEMO_RUNS;
  if (synced) await seedScenario(tb, [synced]);
  for (const [offset, run] of missing.entries()) {
    const index = offset + 1;
    const metadata = metadataOf(run, index);
    await addArtifactRun(tb.github, {
      id: run.id,
      metadata,
      dir: path.join(tb.dir, "demo-artifacts", String(run.id)),
      createdAt: metadata["Generated at"] ?? "2025-10-01T00:00:00Z",
      fixture: { layerBytes: 2 << 20 },
    });
  }
}
