/**
 * The one pipeline (issue 20): every way from an artifact to the registry — `push` after
 * `prepare` (tarballs on disk), `sync` and the daemon (the artifact streamed as it downloads),
 * `daemon --no-stream` (step by step) — runs the same sink, so one build gives the same manifests
 * whichever way it went, the same lines, and no blob goes up twice in a run. And a manifest the
 * registry refuses fails its image alone, on either source, with the registry's own reason.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedImages } from "../../src/domain/images.js";
import type { RunMetadata } from "../../src/domain/metadata.js";
import {
  addRunServing,
  makeArtifactZip,
  runCreatedAt,
  type ArtifactFixture,
} from "../testbed/artifacts.js";
import { blobCommits, gitlabTagOf, metadataOf, tagOf } from "../testbed/builds.js";
import { CuttingProxy } from "../testbed/cutting-proxy.js";
import * as testbed from "../testbed/index.js";
import type { Testbed } from "../testbed/index.js";
import { expectOneLineError, gitlabTags } from "./checks.js";
import { runBinary, type CliResult } from "./run-cli.js";

const gate = testbed.testbedGate();

/** The java worker is the coordinator re-tagged; one worker saved in the OCI layout. */
const BUILD = { id: 6101, mode: "all" as const };
const FIXTURE = { ociRepos: ["presto-native-worker-cpu"] };

describe.skipIf(gate.skip)(`one pipeline, every way in ${gate.reason}`, () => {
  let work: string;
  let fixture: ArtifactFixture;
  const metadata = metadataOf("pipeline", BUILD);

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-pipeline-"));
    fixture = await makeArtifactZip({ dir: path.join(work, "fixture"), metadata, ...FIXTURE });
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** The testbed's CLI, JSON logs, in the work directory. */
  const cli = (tb: Testbed, args: string[]): Promise<CliResult> =>
    runBinary([...args, "--log-format", "json"], {
      env: { ...tb.env, HOME: path.join(work, "home"), DOCKER_HOST: undefined },
      cwd: work,
      timeoutMs: 120_000,
    });

  /** A command's registry flags and the rest every pushing command takes. */
  const pushing = (tb: Testbed, downloads: string, registry = tb.registryArgs) => [
    "--downloads-dir",
    downloads,
    ...tb.githubArgs,
    ...tb.gitlabArgs,
    ...registry,
    "--engine",
    "registry",
    "--limit",
    "50",
    "--yes",
  ];

  /** Each way, as an operator types it. */
  const ways: Record<string, (tb: Testbed, downloads: string) => string[][]> = {
    "push after prepare": (tb, downloads) => [
      ["download", tagOf(metadata), ...tb.githubArgs, "--output-dir", downloads, "--limit", "50"],
      ["prepare", tagOf(metadata), "--downloads-dir", downloads],
      ["push", tagOf(metadata), ...pushing(tb, downloads), "--log-level", "debug"],
    ],
    sync: (tb, downloads) => [
      ["sync", tagOf(metadata), ...pushing(tb, downloads), "--log-level", "debug"],
    ],
    daemon: (tb, downloads) => [testbed.daemonArgs(tb, downloads, ["--once", "--limit", "50"])],
    "daemon --no-stream": (tb, downloads) => [
      testbed.daemonArgs(tb, downloads, ["--once", "--no-stream", "--limit", "50"]),
    ],
  };

  it("one build, pushed each way into a fresh registry: the same manifest digests, every blob uploaded at most once, the same lines", async () => {
    const images = expectedImages(metadata);
    expect(images.map((i) => i.repo)).toContain("presto-java-worker");
    const digests: Record<string, Record<string, string | undefined>> = {};
    const outputs: Record<string, string> = {};
    for (const [way, commands] of Object.entries(ways)) {
      const tb = await testbed.startTestbed();
      try {
        await addRunServing(
          tb.github,
          { id: BUILD.id, metadata, createdAt: runCreatedAt(BUILD.id) },
          fixture,
        );
        const downloads = path.join(work, way.replace(/\W+/g, "-"));
        for (const args of commands(tb, downloads)) {
          const result = await cli(tb, args);
          expect(result.code, `${way}: ${args[0]}: ${result.stderr}`).toBe(0);
          outputs[way] = result.stdout + result.stderr;
        }
        const client = testbed.testbedRegistryClient(tb);
        digests[way] = {};
        for (const image of images) {
          const [repoPath, tag] = image.gitlabTag.split(":") as [string, string];
          digests[way][image.gitlabTag] = await client.manifestDigest(
            `${testbed.PROJECT_PATH}/${repoPath}`,
            tag,
          );
        }
        // No blob went up twice: not the shared base, not the re-tagged coordinator's config.
        const commits = blobCommits(tb.gitlab.registry.accessLog()).map(
          (e) => /digest=(sha256:[0-9a-f]{64})/.exec(decodeURIComponent(e.path))?.[1],
        );
        const twice = commits.filter((d, i) => commits.indexOf(d) !== i);
        expect(twice, `${way} uploaded a blob twice`).toEqual([]);
      } finally {
        await tb.stop();
      }
    }
    const [first, ...others] = Object.values(digests);
    for (const digest of Object.values(first ?? {})) expect(digest).toMatch(/^sha256:/);
    for (const [way, seen] of Object.entries(digests)) {
      expect(seen, `${way} against ${Object.keys(digests)[0]}`).toEqual(first);
    }
    expect(others).toHaveLength(3);

    // push and sync say the same per image: its lines, and its push bar (a task per image).
    for (const way of ["push after prepare", "sync"]) {
      const output = outputs[way] ?? "";
      for (const image of images) {
        const remote = `${testbed.PROJECT_PATH}/${image.gitlabTag}`;
        expect(output, way).toContain(`Pushing `);
        expect(output, way).toMatch(new RegExp(`Pushing \\S+/${remote} \\.\\.\\.\\n  archive: `));
        expect(output, way).toContain(`"task":"push ${remote}"`);
      }
      expect(output, way).toMatch(/\n {2}pushed (\S+ )?sha256:[0-9a-f]{64}: \d+ layers? sent/);
    }
  });

  it("a manifest the registry refuses fails its image alone, pushed from disk or streamed; the line carries the registry's reason", async () => {
    const tb = await testbed.startTestbed();
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const front = new CuttingProxy({ host, port: Number(port) });
    await front.start();
    try {
      const refused = "presto-native-worker-cpu";
      front.intercept({
        match: (r) => r.method === "PUT" && r.path.includes(`/x86/${refused}/manifests/`),
        answer: {
          status: 400,
          body: {
            errors: [
              {
                code: "MANIFEST_INVALID",
                message: "manifest invalid",
                detail: "manifest size 262145 exceeds the limit of 262144 bytes",
              },
            ],
          },
        },
        times: Infinity,
      });
      const viaFront = ["--registry", front.host, ...tb.registryArgs.slice(2)];
      for (const [n, way] of [
        [6201, "sync"],
        [6202, "push"],
      ] as const) {
        const build: RunMetadata = metadataOf("pipeline", { id: n });
        await addRunServing(
          tb.github,
          { id: n, metadata: build, createdAt: runCreatedAt(n) },
          await makeArtifactZip({ dir: path.join(work, `refused-${n}`), metadata: build }),
        );
        const downloads = path.join(work, `refused-${way}`);
        if (way === "push") {
          const dl = await cli(tb, [
            "download",
            tagOf(build),
            ...tb.githubArgs,
            "--output-dir",
            downloads,
            "--limit",
            "50",
          ]);
          expect(dl.code, dl.stderr).toBe(0);
          const prep = await cli(tb, ["prepare", tagOf(build), "--downloads-dir", downloads]);
          expect(prep.code, prep.stderr).toBe(0);
        }
        const result = await cli(tb, [way, tagOf(build), ...pushing(tb, downloads, viaFront)]);
        expectOneLineError(
          result,
          new RegExp(
            `1 of 3 image\\(s\\) not pushed \\(the others were\\): .*answered 400 \\(MANIFEST_INVALID: manifest invalid: manifest size 262145 exceeds the limit of 262144 bytes\\) while writing manifest ${testbed.PROJECT_PATH}/x86/${refused}:`,
          ),
        );
        const present = await gitlabTags(tb);
        for (const repo of ["presto-coordinator", "presto-native-worker-gpu"]) {
          expect(present, way).toContain(`x86/${repo}:${gitlabTagOf(build)}`);
        }
        expect(present, way).not.toContain(`x86/${refused}:${gitlabTagOf(build)}`);
      }
    } finally {
      await front.stop();
      await tb.stop();
    }
  });
});
