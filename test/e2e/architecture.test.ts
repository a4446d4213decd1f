/**
 * An image is published only under the architecture it was built for (issue 21 item 2): a build
 * for `linux/arm64` one of whose images' configs says amd64 has that image refused as damaged
 * input, in one line naming both platforms, and nothing of it tagged, while its siblings go —
 * through the streaming `sync`, the daemon, and `prepare` before `push`. A platform spelled with
 * a look-alike letter is warned of, and decides no path.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { addArtifactRun, type ArtifactFixtureOptions } from "../testbed/artifacts.js";
import { daemonArgs, startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import type { AccessLogEntry } from "../testbed/registry.js";
import { makeMetadata } from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { expectOneLineError, gitlabTags } from "./checks.js";
import { plainStderrLines, runBinary } from "./run-cli.js";

const gate = testbedGate();
const GPU = "presto-native-worker-gpu";
const SIBLINGS = ["presto-coordinator", "presto-native-worker-cpu"];

interface Case {
  id: number;
  fixture: Omit<ArtifactFixtureOptions, "dir" | "metadata">;
  /** The block's `Target platform`, when it is not the plain `linux/arm64` of the image tag. */
  platform?: string;
}
/** Builds for linux/arm64 whose gpu worker was saved from an amd64 image. */
const wrongGpu = { repoArchitecture: { [GPU]: "amd64" } };
const cases = {
  sync: { id: 7301, fixture: wrongGpu },
  daemon: { id: 7302, fixture: wrongGpu },
  prepare: { id: 7303, fixture: wrongGpu },
  // Cyrillic а (U+0430) for the Latin a: reads as linux/arm64, is not.
  lookalike: { id: 7304, fixture: { architecture: "arm64" }, platform: "linux/\u0430rm64" },
} satisfies Record<string, Case>;

function metadataOf(c: Case): RunMetadata {
  const metadata = makeMetadata({
    prestoRef: ref(`arch-${c.id}`),
    veloxRef: ref(`arch-v-${c.id}`),
    platform: "linux/arm64",
    mode: "all_native",
  });
  return c.platform ? { ...metadata, "Target platform": c.platform } : metadata;
}
const tagOf = (c: Case): string => metadataOf(c)["Image tag"] ?? "";
const gitlabTagOf = (c: Case): string => tagOf(c).replace(/-linux-arm64$/, "");
const manifestPuts = (log: AccessLogEntry[], c: Case) =>
  log.filter(
    (e) => e.method === "PUT" && e.path.includes("/manifests/") && e.path.includes(gitlabTagOf(c)),
  );
const MISMATCH = "its config says linux/amd64 but the build's target platform is linux/arm64";

describe.skipIf(gate.skip)(`images of another architecture than their build ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  const downloads = () => path.join(work, "downloads");

  const cli = (args: string[]) =>
    runBinary(args, {
      env: { ...tb.env, HOME: path.join(work, "home"), DOCKER_HOST: undefined },
      cwd: work,
      timeoutMs: 120_000,
    });
  const accessLog = () => tb.gitlab.registry.accessLog();

  /** The siblings are published under arm/, the gpu worker nowhere, and its manifest never put. */
  async function expectOnlySiblings(c: Case, mark: number): Promise<void> {
    const tags = await gitlabTags(tb);
    for (const repo of SIBLINGS) expect(tags).toContain(`arm/${repo}:${gitlabTagOf(c)}`);
    expect([...tags].filter((t) => t.includes(GPU) && t.includes(gitlabTagOf(c)))).toEqual([]);
    const puts = manifestPuts(accessLog().slice(mark), c);
    expect(puts.filter((e) => e.path.includes(GPU))).toEqual([]);
    expect(puts.filter((e) => e.status === 201)).toHaveLength(SIBLINGS.length);
  }

  beforeAll(async () => {
    tb = await startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-arch-"));
    for (const c of Object.values(cases) as Case[]) {
      await addArtifactRun(tb.github, {
        id: c.id,
        metadata: metadataOf(c),
        dir: path.join(work, "fixtures", String(c.id)),
        createdAt: new Date(Date.UTC(2025, 10, 6) + c.id * 60_000)
          .toISOString()
          .replace(".000Z", "Z"),
        fixture: c.fixture,
      });
    }
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const syncArgs = (c: Case) => [
    "sync",
    tagOf(c),
    "--engine",
    "registry",
    "--downloads-dir",
    downloads(),
    ...tb.githubArgs,
    ...tb.gitlabArgs,
    ...tb.registryArgs,
    "--limit",
    "50",
    "--yes",
  ];

  it("sync: the image whose config says amd64 is refused in one line naming both; its siblings go to arm/", async () => {
    const c = cases.sync;
    const mark = accessLog().length;
    const result = await cli(syncArgs(c));
    expectOneLineError(
      result,
      new RegExp(`1 of 3 image\\(s\\) not pushed \\(the others were\\): .*${GPU}-${tagOf(c)}`),
    );
    expect(result.stdout + result.stderr).toContain(MISMATCH);
    await expectOnlySiblings(c, mark);
  });

  it("prepare refuses the artifact naming both platforms, and push then publishes nothing of it", async () => {
    const c = cases.prepare;
    const tagsBefore = await gitlabTags(tb);
    const download = await cli([
      "download",
      tagOf(c),
      ...tb.githubArgs,
      "--output-dir",
      downloads(),
    ]);
    expect(download.code, download.stderr).toBe(0);
    const prepared = await cli(["prepare", tagOf(c), "--downloads-dir", downloads()]);
    expectOneLineError(
      prepared,
      new RegExp(`${GPU}-${tagOf(c)}\\.tar\\.gz is not an image of its build: ${MISMATCH}`),
    );
    const mark = accessLog().length;
    const pushed = await cli([
      "push",
      tagOf(c),
      "--engine",
      "registry",
      "--yes",
      "--downloads-dir",
      downloads(),
      ...tb.githubArgs,
      ...tb.gitlabArgs,
      ...tb.registryArgs,
    ]);
    expect(pushed.code).not.toBe(0);
    expect(manifestPuts(accessLog().slice(mark), c)).toEqual([]);
    expect(await gitlabTags(tb)).toEqual(tagsBefore);
  });

  it("a look-alike platform is warned of and decides no path: nothing published", async () => {
    const c = cases.lookalike;
    const mark = accessLog().length;
    const result = await cli(syncArgs(c));
    expect(result.code).toBe(1);
    const lines = plainStderrLines(result.stderr);
    expect(lines.join("\n") + result.stdout).toContain(
      "the build's target platform 'linux/\\u{430}rm64' holds non-ASCII or invisible characters (U+0430)",
    );
    expect(manifestPuts(accessLog().slice(mark), c)).toEqual([]);
  });

  it("daemon --once: the same refusal, the siblings published", async () => {
    const c = cases.daemon;
    // Only this build is left for the daemon.
    for (const other of [cases.sync, cases.prepare, cases.lookalike]) tb.github.removeRun(other.id);
    const mark = accessLog().length;
    const result = await cli(
      daemonArgs(tb, path.join(work, "daemon"), ["--once", "--platform", "linux/arm64"]),
    );
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toContain(MISMATCH);
    await expectOnlySiblings(c, mark);
  });
});
