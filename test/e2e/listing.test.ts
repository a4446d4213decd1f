import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatBytes } from "../../src/util/bytes.js";
import { startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import {
  gitlabTagOf,
  listingRuns,
  NIGHTLY_TAGS,
  seedScenario,
  type ScenarioRun,
} from "../testbed/scenario.js";
import { runBinary } from "./run-cli.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const gate = testbedGate();
const runs = listingRuns();
const byId = (id: number): ScenarioRun => {
  const run = runs.find((r) => r.id === id);
  if (!run) throw new Error(`no run ${id}`);
  return run;
};

describe.skipIf(gate.skip)(`listing commands on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let stateDir: string;
  const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
    runBinary([...args, "--log-format", "json"], { env: { ...tb.env, ...env } });
  const gh = () => [...tb.githubArgs, "--limit", "30", "--state-dir", stateDir];

  beforeAll(async () => {
    tb = await startTestbed();
    stateDir = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-state-"));
    await seedScenario(tb, runs, { extraTags: NIGHTLY_TAGS });
  });
  afterAll(async () => {
    await tb?.stop();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it("xref lists exactly the missing tags, then a second xref downloads no log", async () => {
    tb.github.resetRequests();
    const first = await cli(["xref", ...gh(), ...tb.gitlabArgs]);
    expect(first.stderr).not.toMatch(/^Error/m);
    expect(first.code).toBe(0);
    const missing = first.stdout
      .split("\n")
      .filter((l) => l.includes("missing tag:"))
      .map((l) => l.replace(/^\s*missing tag: /, ""))
      .sort();
    const expected = [
      ...["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"].map((r) =>
        gitlabTagOf(byId(1026), r),
      ),
      ...["presto-coordinator", "presto-java-worker"].map((r) => gitlabTagOf(byId(1022), r)),
      ...["presto-native-worker-cpu", "presto-native-worker-gpu"].map((r) =>
        gitlabTagOf(byId(1024), r),
      ),
      ...[
        "presto-coordinator",
        "presto-java-worker",
        "presto-native-worker-cpu",
        "presto-native-worker-gpu",
      ].map((r) => gitlabTagOf(byId(1025), r)),
    ].sort();
    expect(missing).toEqual(expected);
    expect(first.stdout).toContain("Collected 66 expected image tags from GitHub runs.");
    expect(first.stdout).toContain(
      `Found ${54 + 1 + NIGHTLY_TAGS.length} tags in GitLab registry.`,
    );
    // The run without a metadata block is reported, not fatal.
    expect(first.stderr).toMatch(/1023/);

    // The metadata came from the streamed job logs: far fewer bytes than the two 20 MiB logs.
    const logBytes = tb.github.requests
      .filter((r) => r.host === "blob")
      .reduce((n, r) => n + r.bytesSent, 0);
    expect(logBytes).toBeLessThan(12 << 20);

    tb.github.resetRequests();
    const second = await cli(["xref", ...gh(), ...tb.gitlabArgs]);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe(first.stdout);
    const logRequests = tb.github.requests.filter(
      (r) => r.path.includes("/logs") || r.host === "blob",
    );
    expect(logRequests).toEqual([]);
  });

  it("xref --json and --list-extra", async () => {
    const result = await cli(["xref", ...gh(), ...tb.gitlabArgs, "--json", "--list-extra"]);
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as {
      expected_count: number;
      missing: Array<{ image_tag: string; missing_tags: string[]; runs: Array<{ id: number }> }>;
      extra: string[];
      metadata_failures: Array<{ run_id: number }>;
    };
    expect(json.expected_count).toBe(66);
    const shared = json.missing.find((m) =>
      m.missing_tags.includes(gitlabTagOf(byId(1026), "presto-coordinator")),
    );
    // Two runs share the tag: the newest (1026, all_native) decides, so no java worker is expected.
    expect(shared?.runs.map((r) => r.id)).toEqual([1026, 1021]);
    expect(shared?.missing_tags.some((t) => t.includes("java"))).toBe(false);
    expect(json.extra).toEqual(NIGHTLY_TAGS.map((t) => `x86/presto-coordinator:${t}`));
    expect(json.metadata_failures.map((f) => f.run_id)).toEqual([1023]);
  });

  it("xref --branch keeps to one branch", async () => {
    const result = await cli([
      "xref",
      ...gh(),
      ...tb.gitlabArgs,
      "--branch",
      "feature/arm",
      "--json",
    ]);
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as { missing: Array<{ missing_tags: string[] }> };
    expect(json.missing.flatMap((m) => m.missing_tags).sort()).toEqual(
      [
        gitlabTagOf(byId(1022), "presto-coordinator"),
        gitlabTagOf(byId(1022), "presto-java-worker"),
      ].sort(),
    );
  });

  it("gh-list shows the parsed metadata of successful runs", async () => {
    const result = await cli(["gh-list", ...gh()]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Found 28 workflow runs$/m);
    expect(result.stdout).toContain("1026: ");
    expect(result.stdout).toContain(`  Presto ref        : ${byId(1026).presto}`);
    expect(result.stdout).toContain("  Worker bundle mode: all_native");
    expect(result.stdout).toContain("  Target platform   : linux/arm64");
    expect(result.stdout).not.toContain("1019: "); // failed
    expect(result.stdout).not.toContain("${IMAGE_TAG}");
    // The original's line for a run whose logs hold no block.
    expect(result.stdout).toMatch(/1023: .*\n {2}\(no metadata lines found in logs\)\n/);
  });

  it("gh-list --include-failed --json", async () => {
    const result = await cli(["gh-list", ...gh(), "--include-failed", "--json"]);
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as {
      runs: Array<{
        id: number;
        conclusion: string | null;
        metadata: Record<string, string> | null;
        expected_tags: string[];
      }>;
    };
    expect(json.runs).toHaveLength(28);
    const failed = json.runs.find((r) => r.id === 1019);
    expect(failed?.conclusion).toBe("failure");
    expect(failed?.metadata?.["Worker bundle mode"]).toBe("all");
    expect(json.runs.find((r) => r.id === 1024)?.expected_tags).toContain(
      gitlabTagOf(byId(1024), "presto-native-worker-gpu"),
    );
  });

  it("gitlab-list shows every tag, past the first page, with size and date", async () => {
    const result = await cli(["gitlab-list", ...tb.gitlabArgs]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Repository: x86\/presto-coordinator \(id=\d+\)$/m);
    for (const tag of [
      NIGHTLY_TAGS[0],
      NIGHTLY_TAGS[109],
      gitlabTagOf(byId(1024), "x").split(":")[1],
    ]) {
      expect(result.stdout).toMatch(
        new RegExp(`^  ${tag}\\s+size=\\s*\\d+(\\.\\d+)? (B|KiB|MiB|GiB)  created=20`, "m"),
      );
    }
    const json = JSON.parse((await cli(["gitlab-list", ...tb.gitlabArgs, "--json"])).stdout) as {
      repositories: Array<{ name: string; tags: Array<{ name: string; total_size: number }> }>;
    };
    const coordinator = json.repositories.find((r) => r.name === "x86/presto-coordinator");
    expect(coordinator?.tags.length).toBeGreaterThan(100);
    expect(coordinator?.tags[0]?.total_size).toBeGreaterThan(0);
    // Each size in the unit that keeps it readable: a 2 MiB image is not `0.00 GiB`.
    const block = result.stdout
      .split("Repository: ")
      .find((b) => b.startsWith("x86/presto-coordinator "));
    for (const tag of coordinator?.tags ?? []) {
      const line = block?.split("\n").find((l) => l.startsWith(`  ${tag.name} `));
      expect(line, tag.name).toMatch(/size= *\d+(\.\d+)? (B|KiB|MiB|GiB) {2}created=/);
      expect(line).toContain(`size=${formatBytes(tag.total_size).padStart(9)}  created=`);
    }
    expect(result.stdout).not.toContain("0.00 GiB");
  });
});
