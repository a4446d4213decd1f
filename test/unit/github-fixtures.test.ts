import { describe, expect, it } from "vitest";
import unzipper from "unzipper";
import {
  imageTagFor,
  makeFixtureRun,
  makeMetadata,
  renderJobLog,
} from "../testbed/run-fixtures.js";

describe("run fixtures", () => {
  it("computes image tags as the workflow does", () => {
    expect(
      imageTagFor(
        "92865fbce0d2a056af5334a0afecc1f36853b657",
        "65797d572e0a297fa898e4f6ab4c1afc75fe3419",
        "linux/amd64",
      ),
    ).toBe("presto-92865fbce0d2-velox-65797d572e0a-linux-amd64");
    expect(imageTagFor("Feature/My_Branch+x", "main", "linux/arm64")).toBe(
      "presto-feature-my_b-velox-main--linux-arm64",
    );
    // `tr -c` turns echo's newline into a dash, which `cut -c1-12` keeps for a short ref.
    expect(imageTagFor("main", "v1.2", "linux/arm64")).toBe("presto-main--velox-v1.2--linux-arm64");
    expect(imageTagFor("abcdefabcdef", "abcdefabcde", "linux/amd64")).toBe(
      "presto-abcdefabcdef-velox-abcdefabcde--linux-amd64",
    );
  });

  it("sets the build flags per bundle mode", () => {
    const base = { prestoRef: "p", veloxRef: "v", platform: "linux/amd64" } as const;
    const flags = (m: ReturnType<typeof makeMetadata>) => [
      m["Build Java worker"],
      m["Build native CPU"],
      m["Build native GPU"],
    ];
    expect(flags(makeMetadata({ ...base, mode: "all" }))).toEqual(["true", "true", "true"]);
    expect(flags(makeMetadata({ ...base, mode: "all_native" }))).toEqual(["false", "true", "true"]);
    // The workflow's default worker_variant is native_cpu.
    expect(flags(makeMetadata({ ...base, mode: "single" }))).toEqual(["false", "true", "false"]);
    expect(flags(makeMetadata({ ...base, mode: "single", workerVariant: "java" }))).toEqual([
      "true",
      "false",
      "false",
    ]);
    expect(flags(makeMetadata({ ...base, mode: "single", workerVariant: "native_gpu" }))).toEqual([
      "false",
      "false",
      "true",
    ]);
  });

  it("renders timestamped lines with script text and noise on both sides", () => {
    const metadata = makeMetadata({
      prestoRef: "p",
      veloxRef: "v",
      platform: "linux/amd64",
      mode: "all",
    });
    const log = renderJobLog(metadata, { noiseBytes: 200_000, crlf: true });
    const lines = log
      .replace(/^\uFEFF/, "")
      .split("\r\n")
      .filter(Boolean);
    for (const line of lines) expect(line).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z /);
    expect(log).toContain('printf "%-18s: %s\\n" "Image tag" "${IMAGE_TAG}"');
    expect(log).toContain('date -u +"%Y-%m-%dT%H:%M:%SZ"');
    expect(log).toContain("\u001b[36;1m");
    const block = log.indexOf("Image tag         : presto-p--velox-v--linux-amd64");
    expect(block).toBeGreaterThan(2000);
    expect(log.length - block).toBeGreaterThan(150_000);
    expect(log.length).toBeGreaterThan(190_000);
  });

  it("makes tens of MiB of log quickly", () => {
    const metadata = makeMetadata({
      prestoRef: "p",
      veloxRef: "v",
      platform: "linux/amd64",
      mode: "all",
    });
    const log = renderJobLog(metadata, { noiseBytes: 40 * 1024 * 1024 });
    expect(log.length).toBeGreaterThan(39 * 1024 * 1024);
  });

  it("builds a run-log zip with job files and, on request, step files", async () => {
    const metadata = makeMetadata({
      prestoRef: "p",
      veloxRef: "v",
      platform: "linux/amd64",
      mode: "all",
    });
    const withSteps = await makeFixtureRun({
      id: 7,
      metadata,
      stepFiles: true,
      noiseBytes: 10_000,
    });
    const names = (await unzipper.Open.buffer(withSteps.logsZip as Buffer)).files.map(
      (f) => f.path,
    );
    // The real workflow: one job, its steps in order; a skipped step has no file.
    expect(names.filter((n) => !n.includes("/"))).toEqual([
      "0_Build and package docker images.txt",
    ]);
    expect(names).toContain("Build and package docker images/10_Record build metadata.txt");
    expect(names).toContain("Build and package docker images/9_Determine worker build plan.txt");
    expect(names).not.toContain(
      "Build and package docker images/12_Enable Velox backward compatibility flag.txt",
    );
    const without = await makeFixtureRun({ id: 8, metadata, stepFiles: false });
    const plain = (await unzipper.Open.buffer(without.logsZip as Buffer)).files.map((f) => f.path);
    expect(plain.every((name) => !name.includes("/"))).toBe(true);
    expect(withSteps.jobs).toHaveLength(1);
    expect(withSteps.jobs[0]?.name).toBe("Build and package docker images");
    const steps = withSteps.jobs[0]?.steps ?? [];
    expect(steps.map((s) => s.name).slice(0, 11)).toEqual([
      "Set up job",
      "Checkout velox-testing",
      "Checkout Presto",
      "Checkout Velox",
      "Ensure artifact directory",
      "Set up QEMU",
      "Set up Docker Buildx",
      "Prepare build metadata",
      "Determine worker build plan",
      "Record build metadata",
      "Fetch Presto dependency image",
    ]);
    expect(steps.find((s) => s.name === "Archive Java worker image")?.conclusion).toBe("success");
    // No run-name in the workflow: the display title is the workflow's name.
    expect(withSteps.run.display_title).toBe("Presto Build Docker Images");
    expect(withSteps.run.name).toBe("Presto Build Docker Images");
  });

  it("a java-only build skips the Velox checkout and the native steps", async () => {
    const java = await makeFixtureRun({
      id: 9,
      metadata: makeMetadata({
        prestoRef: "p",
        veloxRef: "v",
        platform: "linux/amd64",
        mode: "single",
        workerVariant: "java",
      }),
    });
    const conclusion = (name: string) =>
      java.jobs[0]?.steps.find((s) => s.name === name)?.conclusion;
    expect(conclusion("Checkout Velox")).toBe("skipped");
    expect(conclusion("Build Presto native CPU worker image")).toBe("skipped");
    expect(conclusion("Archive Java worker image")).toBe("success");
    expect(java.jobs[0]?.log.toString()).toContain("cut -c1-12");
  });
});
