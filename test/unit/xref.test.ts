import { describe, expect, it } from "vitest";
import type { WorkflowRun } from "../../src/github/runs.js";
import { crossReference, expectedFromRuns } from "../../src/sync/xref.js";

function run(id: number, startedAt: string, conclusion = "success"): WorkflowRun {
  return {
    id,
    name: "Build Presto images",
    display_title: `run ${id}`,
    run_number: id,
    event: "workflow_dispatch",
    status: "completed",
    conclusion,
    head_branch: "main",
    head_sha: "abc",
    html_url: `https://github.example/runs/${id}`,
    created_at: startedAt,
    updated_at: startedAt,
    run_started_at: startedAt,
  };
}

const meta = (tag: string, extra: Record<string, string> = {}) => ({
  "Image tag": `${tag}-linux-amd64`,
  "Target platform": "linux/amd64",
  "Presto ref": `${tag}-presto`,
  ...extra,
});

describe("xref", () => {
  it("lets the newest successful run win when runs share an image tag", () => {
    const expected = expectedFromRuns([
      {
        run: run(1, "2025-01-01T00:00:00Z"),
        metadata: meta("presto-a-velox-b", { "Presto ref": "old" }),
      },
      {
        run: run(3, "2025-03-01T00:00:00Z"),
        metadata: meta("presto-a-velox-b", { "Presto ref": "new" }),
      },
      {
        run: run(4, "2025-04-01T00:00:00Z", "failure"),
        metadata: meta("presto-a-velox-b", { "Presto ref": "failed" }),
      },
    ]);
    const entry = expected.byGitlabTag.get("x86/presto-coordinator:presto-a-velox-b");
    expect(entry?.run.id).toBe(3);
    expect(entry?.metadata["Presto ref"]).toBe("new");
    expect(expected.runsByImage.get("presto-a-velox-b-linux-amd64")?.map((r) => r.id)).toEqual([
      3, 1,
    ]);
  });

  it("takes the whole expected set of a shared image tag from the newest run", () => {
    const expected = expectedFromRuns([
      {
        run: run(1, "2025-01-01T00:00:00Z"),
        metadata: meta("presto-a-velox-b", { "Build Java worker": "true" }),
      },
      {
        run: run(2, "2025-02-01T00:00:00Z"),
        metadata: meta("presto-a-velox-b", { "Build native CPU": "true" }),
      },
    ]);
    expect([...expected.byGitlabTag.keys()].sort()).toEqual([
      "x86/presto-coordinator:presto-a-velox-b",
      "x86/presto-native-worker-cpu:presto-a-velox-b",
    ]);
  });

  it("finds missing and extra tags, grouped by image tag", () => {
    const expected = expectedFromRuns([
      {
        run: run(1, "2025-01-01T00:00:00Z"),
        metadata: meta("presto-a-velox-b", { "Build native CPU": "true" }),
      },
      { run: run(2, "2025-01-02T00:00:00Z"), metadata: meta("presto-c-velox-d") },
      { run: run(5, "2025-01-03T00:00:00Z") },
    ]);
    const present = new Set([
      "x86/presto-coordinator:presto-a-velox-b",
      "x86/presto-coordinator:latest",
    ]);
    const result = crossReference(expected, present);
    expect(result.expectedCount).toBe(3);
    expect(result.presentCount).toBe(2);
    expect(result.missing.map((m) => [m.imageTag, m.missing.map((e) => e.gitlabTag)])).toEqual([
      ["presto-c-velox-d-linux-amd64", ["x86/presto-coordinator:presto-c-velox-d"]],
      ["presto-a-velox-b-linux-amd64", ["x86/presto-native-worker-cpu:presto-a-velox-b"]],
    ]);
    expect(result.extra).toEqual(["x86/presto-coordinator:latest"]);
  });

  it("reports nothing missing when GitLab has everything", () => {
    const expected = expectedFromRuns([
      { run: run(1, "2025-01-01T00:00:00Z"), metadata: meta("presto-a-velox-b") },
    ]);
    const result = crossReference(expected, new Set(["x86/presto-coordinator:presto-a-velox-b"]));
    expect(result.missing).toEqual([]);
    expect(result.extra).toEqual([]);
  });
});
