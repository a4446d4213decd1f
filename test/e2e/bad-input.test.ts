import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { ref, seedScenario, type ScenarioRun } from "../testbed/scenario.js";
import { runBinary, startBinary } from "./run-cli.js";
import { expectOneLineError } from "./checks.js";

const gate = testbedGate();

const runs: ScenarioRun[] = [
  {
    id: 2001,
    presto: ref("bad-1"),
    velox: ref("bad-1"),
    platform: "linux/amd64",
    mode: "all_native",
    present: ["presto-coordinator"],
  },
  {
    id: 2002,
    presto: ref("bad-2"),
    velox: ref("bad-2"),
    platform: "linux/arm64",
    mode: "all",
    stepFiles: true,
  },
  {
    id: 2003,
    presto: ref("bad-3"),
    velox: ref("bad-3"),
    platform: "linux/amd64",
    mode: "all",
    noBlock: true,
  },
  {
    id: 2004,
    presto: ref("bad-4"),
    velox: ref("bad-4"),
    platform: "linux/amd64",
    mode: "all_native",
    conclusion: "failure",
    partialBlock: true,
  },
];

describe.skipIf(gate.skip)(`bad input on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let stateRoot: string;
  let stateDir: string;
  let n = 0;
  const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
    runBinary([...args, "--log-format", "json"], { env: { ...tb.env, ...env } });
  const gh = () => [...tb.githubArgs, "--state-dir", stateDir];

  beforeAll(async () => {
    tb = await startTestbed();
    stateRoot = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-bad-"));
    await seedScenario(tb, runs);
  });
  beforeEach(() => {
    // A fresh cache per test, so every test really reaches GitHub.
    stateDir = path.join(stateRoot, `state-${++n}`);
    tb.github.clearFaults();
    tb.gitlab.clearFaults();
    tb.github.resetRequests();
  });
  afterAll(async () => {
    await tb?.stop();
    if (stateRoot) await rm(stateRoot, { recursive: true, force: true });
  });

  it("wrong GitHub token: says which token and what it needs", async () => {
    const result = await cli(["xref", ...gh(), ...tb.gitlabArgs], { GH_TOKEN: "ghp_wrong" });
    expectOneLineError(result, /GitHub.*(401|rejected|token).*GH_TOKEN/i);
    expect(result.stderr).not.toContain("ghp_wrong");
  });

  it("wrong GitLab token: says which token and which scope", async () => {
    const result = await cli(["gitlab-list", ...tb.gitlabArgs], { GITLAB_TOKEN: "glpat-wrong" });
    expectOneLineError(result, /GitLab rejected the token.*401.*GITLAB_TOKEN/);
    expect(result.stderr).not.toContain("glpat-wrong");
  });

  it("no GitLab token at all", async () => {
    const result = await cli(["gitlab-list", ...tb.gitlabArgs], { GITLAB_TOKEN: undefined });
    expectOneLineError(result, /GitLab token not provided.*--gitlab-token/);
  });

  it("unknown repository or workflow: 404 named", async () => {
    expectOneLineError(
      await cli(["gh-list", ...gh(), "--repo", "nobody/nothing"]),
      /not found.*--repo/i,
    );
    expectOneLineError(
      await cli(["gh-list", ...gh(), "--workflow", "missing.yml"]),
      /not found.*--workflow/i,
    );
  });

  it("unknown GitLab project: 404 named", async () => {
    const result = await cli([
      "gitlab-list",
      ...tb.gitlabArgs,
      "--gitlab-project",
      "nobody/nothing",
    ]);
    expectOneLineError(result, /GitLab project nobody\/nothing not found.*--gitlab-project/);
  });

  it("GitHub 5xx then success: retried, not failed", async () => {
    tb.github.injectFault({ match: /\/runs$/, status: 502, times: 2 });
    const result = await cli(["gh-list", ...gh()]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("2001: ");
    const statuses = tb.github.requests
      .filter((r) => /\/workflows\/.*\/runs$/.test(r.path))
      .map((r) => r.status);
    expect(statuses).toEqual([502, 502, 200]);
  });

  it("GitLab 5xx then success: retried, not failed", async () => {
    tb.gitlab.injectFault({ match: /registry\/repositories$/, status: 503, times: 1 });
    const result = await cli(["gitlab-list", ...tb.gitlabArgs]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("Repository: x86/presto-coordinator");
  });

  it("rate limit with a reset time: waited out, then done", async () => {
    const reset = Math.floor(Date.now() / 1000) + 2;
    tb.github.injectFault({
      match: /\/runs$/,
      status: 403,
      headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) },
      body: JSON.stringify({ message: "API rate limit exceeded for user." }),
    });
    const result = await cli(["gh-list", ...gh()]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("2001: ");
    expect(result.stderr).toMatch(/rate limit/i);
  });

  it("a run whose logs hold no metadata block is reported, not fatal", async () => {
    const result = await cli(["gh-list", ...gh()]);
    expect(result.code).toBe(0);
    // The original's line; the warning on stderr says which run.
    expect(result.stdout).toMatch(/2003: .*\n {2}\(no metadata lines found in logs\)\n/);
    expect(result.stderr).toMatch(/run 2003: no build metadata block found/);
    // A block cut short (no Image tag): its keys are shown, as the original shows what it found.
    const failed = await cli(["gh-list", ...gh(), "--include-failed"]);
    expect(failed.code, failed.stderr).toBe(0);
    expect(failed.stdout).toMatch(
      /2004: .* · conclusion=failure · .*\n {2}Presto repository : prestodb\/presto\n {2}Presto ref {8}: [0-9a-f]{40}\n(?: {2}.*\n){7}-{80}\n/,
    );
    expect(failed.stdout).not.toMatch(/2004: [^\n]*\n(?: {2}.*\n)* {2}Image tag/);
    expect(failed.stderr).toMatch(/run 2004: the metadata block in its logs has no 'Image tag'/);
    expect(result.stdout).toContain("  Image tag         : presto-");
  });

  it.each([["abc"], ["0"], ["1.5"], ["-1"]])(
    "malformed --limit %s: usage error, exit 2",
    async (limit) => {
      const result = await cli(["xref", ...gh(), ...tb.gitlabArgs, "--limit", limit]);
      expectOneLineError(result, /--limit must be a whole number from 1 to 1000/, 2);
      expect(tb.github.requests).toEqual([]);
    },
  );

  it("a reader that goes away (| head) ends the output quietly, without a crash", async () => {
    const running = startBinary(["daemon", "--help"]);
    running.child.stdout?.destroy();
    const result = await running.result;
    expect(result.code).toBe(0);
    expect(result.stderr).not.toMatch(/EPIPE|Unhandled/);
  });

  it("--version prints the package version", async () => {
    const result = await runBinary(["--version"]);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("unknown flag: usage error, exit 2", async () => {
    const result = await cli(["xref", "--no-such-flag"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown option '--no-such-flag'/);
  });

  it("a hostile image tag is refused before anything touches the disk", async () => {
    const cwd = path.join(stateRoot, "cwd");
    await mkdir(cwd);
    for (const tag of ["../../etc", "a/b"]) {
      const result = await runBinary(["download", tag, ...gh()], { env: tb.env, cwd });
      expectOneLineError(result, /invalid image tag/, 2);
    }
    expect(await readdir(cwd)).toEqual([]);
    expect(tb.github.requests).toEqual([]);
  });

  it("GitHub unreachable: names the address", async () => {
    const result = await cli([
      "gh-list",
      "--github-api-url",
      "http://127.0.0.1:9",
      "--state-dir",
      stateDir,
    ]);
    expectOneLineError(result, /127\.0\.0\.1:9/);
  });

  it("--log-level debug shows the stack that is otherwise hidden", async () => {
    const result = await cli([
      "gh-list",
      ...gh(),
      "--repo",
      "nobody/nothing",
      "--log-level",
      "debug",
    ]);
    expect(result.code).toBe(1);
    // Under --log-format json the stack is a field of the closing record, not loose lines.
    const stacks = result.stderr
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => (JSON.parse(line) as { stack?: unknown }).stack)
      .filter((stack): stack is string => typeof stack === "string");
    expect(stacks.some((stack) => /^\s+at /m.test(stack))).toBe(true);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});
