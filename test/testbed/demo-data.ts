import { ref, seedScenario, type ScenarioRun } from "./scenario.js";
import type { Testbed } from "./index.js";

/** Two builds GitHub has made and GitLab lacks, plus one that is already synced. */
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
    stepFiles: true,
    noiseBytes: 8 << 20,
  },
  {
    id: 503,
    presto: ref("demo-arm"),
    velox: ref("demo-arm"),
    platform: "linux/arm64",
    mode: "single",
    variant: "native-cpu",
  },
];

export async function seedDemo(tb: Testbed): Promise<void> {
  await seedScenario(tb, DEMO_RUNS);
}
