import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { LOCK_FILE } from "../../src/workspace/lock.js";
import { addArtifactRun, runCreatedAt, type ArtifactFixtureOptions } from "../testbed/artifacts.js";
import { json, startHangingServer, type HangingServer } from "../testbed/hanging-server.js";
import { startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { makeMetadata } from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { plainStderrLines, runBinary, startBinary, type CliResult } from "./run-cli.js";

/**
 * A signal in every phase, against servers that hang: the real binary is started, brought to
 * the phase under test (a request held unanswered, a transfer trickling, an extraction under
 * way, the wait between daemon cycles), signalled, and must end within 2 s with the shell's
 * status for the signal (the daemon: 0 on SIGTERM), one "Interrupted" line and no lock left.
 */
const gate = testbedGate();
const STOP_LIMIT_MS = 2_000;

interface Build {
  id: number;
  fixture?: Omit<ArtifactFixtureOptions, "dir" | "metadata">;
}
const builds = {
  small: { id: 7001, fixture: { layerBytes: 1 << 20 } },
  // A 256 MiB layer of zeros: a small zip whose verification still takes a moment to read.
  zeros: {
    id: 7002,
    fixture: { baseLayer: { files: { "zeros.bin": Buffer.alloc(256 << 20) } }, gzipLevel: 1 },
  },
} satisfies Record<string, Build>;

function metadataOf(b: Build): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`signal-${b.id}`),
    veloxRef: ref(`signal-v-${b.id}`),
    platform: "linux/amd64",
    mode: "single",
    workerVariant: "native_cpu",
  });
}
const tagOf = (b: Build) => metadataOf(b)["Image tag"] ?? "";

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe.skipIf(gate.skip)(`a signal stops every phase within 2 s ${gate.reason}`, () => {
  let tb: Testbed;
  let hang: HangingServer;
  let work: string;
  let downloads: string;
  const stops: Array<{ phase: string; signal: string; ms: number }> = [];

  const env = () => ({ ...tb.env, HOME: path.join(work, "home"), DOCKER_HOST: undefined });
  const lockGone = () => !existsSync(path.join(downloads, LOCK_FILE));
  const tagDir = (b: Build) => path.join(downloads, tagOf(b));

  /** Starts the CLI, waits until it sits in the phase, signals it and checks how it ended. */
  async function interrupt(
    phase: string,
    args: string[],
    options: {
      signal: NodeJS.Signals;
      inPhase: (output: { stdout: string; stderr: string }) => boolean;
      code: number;
    },
  ): Promise<CliResult> {
    const cli = startBinary([...args, "--log-format", "json"], {
      env: env(),
      cwd: work,
      timeoutMs: 60_000,
    });
    try {
      await until(`${phase} to be under way`, () => options.inPhase(cli.output()));
      // Well inside the phase: whatever it waits on has had time to be waited on.
      await sleep(200);
      expect(cli.child.exitCode, cli.output().stderr).toBeNull();
      const signalled = performance.now();
      cli.child.kill(options.signal);
      const result = await Promise.race([
        cli.result,
        sleep(10_000).then(() => {
          throw new Error(`still running 10 s after ${options.signal}: ${cli.output().stderr}`);
        }),
      ]);
      const ms = Math.round(performance.now() - signalled);
      stops.push({ phase, signal: options.signal, ms });
      expect(result.code, result.stderr).toBe(options.code);
      expect(ms).toBeLessThan(STOP_LIMIT_MS);
      const lines = plainStderrLines(result.stderr);
      expect(lines.filter((l) => l.startsWith(`Interrupted by ${options.signal}`))).toHaveLength(1);
      expect(result.stderr).not.toContain("unexpected failure");
      expect(lines.filter((l) => l.startsWith("Error: "))).toEqual([]);
      expect(lockGone()).toBe(true);
      return result;
    } finally {
      cli.child.kill("SIGKILL");
    }
  }

  const cli = (args: string[]) =>
    runBinary([...args, "--log-format", "json"], { env: env(), cwd: work, timeoutMs: 120_000 });
  async function download(b: Build): Promise<void> {
    const result = await cli(["download", tagOf(b), ...tb.githubArgs, "--output-dir", downloads]);
    expect(result.code, result.stderr).toBe(0);
  }

  beforeAll(async () => {
    tb = await startTestbed();
    hang = await startHangingServer();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-signals-"));
    downloads = path.join(work, "downloads");
    for (const b of Object.values(builds) as Build[]) {
      await addArtifactRun(tb.github, {
        id: b.id,
        metadata: metadataOf(b),
        dir: path.join(work, "fixtures", String(b.id)),
        createdAt: runCreatedAt(b.id),
        ...(b.fixture ? { fixture: b.fixture } : {}),
      });
    }
    // A registry that lets a push begin its upload and then never answers the data.
    hang.answer("GET", "/v2/", json(200, {}));
    hang.answer("HEAD", "/v2/", (_req, res) => {
      res.writeHead(404).end();
    });
    hang.answer("POST", "/v2/", (req, res) => {
      const name = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(req.url ?? "")?.[1] ?? "x";
      res.writeHead(202, { location: `/v2/${name}/blobs/uploads/hang-1`, "content-length": "0" });
      res.end();
    });
  }, 180_000);

  afterAll(async () => {
    await hang?.close();
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
    if (stops.length > 0) {
      console.log(
        `stop times: ${stops.map((s) => `${s.phase} (${s.signal}) ${s.ms} ms`).join("; ")}`,
      );
    }
  });

  it("the GitHub runs listing, against an API that never answers (SIGINT → 130)", async () => {
    const before = hang.requests.length;
    await interrupt(
      "GitHub runs listing",
      ["gh-list", "--github-api-url", hang.url, "--downloads-dir", downloads],
      { signal: "SIGINT", code: 130, inPhase: () => hang.requests.length > before },
    );
  });

  it("the GitLab listing, against a GitLab that never answers (SIGTERM → 143)", async () => {
    const before = hang.requests.length;
    await interrupt(
      "GitLab listing",
      ["gitlab-list", "--gitlab-host", hang.url, "--gitlab-project", "hercules/veloxtesting"],
      { signal: "SIGTERM", code: 143, inPhase: () => hang.requests.length > before },
    );
  });

  it("a GitLab request waiting out its back-off (retry-after) (SIGINT → 130)", async () => {
    tb.gitlab.injectFault({
      match: "/registry/repositories",
      status: 503,
      headers: { "retry-after": "50" },
      times: Infinity,
    });
    try {
      await interrupt("GitLab retry back-off", ["gitlab-list", ...tb.gitlabArgs], {
        signal: "SIGINT",
        code: 130,
        inPhase: () => tb.gitlab.requests.some((r) => r.status === 503),
      });
    } finally {
      tb.gitlab.clearFaults();
    }
  });

  it("a GitHub rate-limit wait (SIGINT → 130)", async () => {
    const reset = Math.floor(Date.now() / 1000) + 600;
    tb.github.injectFault({
      match: /\/runs$/,
      status: 403,
      headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) },
      body: JSON.stringify({ message: "API rate limit exceeded for user." }),
      times: Infinity,
    });
    try {
      await interrupt("GitHub rate-limit wait", ["gh-list", ...tb.githubArgs], {
        signal: "SIGINT",
        code: 130,
        inPhase: ({ stderr }) => /waiting \d+s before trying again/.test(stderr),
      });
    } finally {
      tb.github.clearFaults();
    }
  });

  it("a log read whose host never answers (SIGINT → 130)", async () => {
    tb.github.injectFault({ match: "/logs/", host: "blob", delayMs: 600_000, times: Infinity });
    try {
      await interrupt(
        "job log read",
        ["gh-list", ...tb.githubArgs, "--downloads-dir", path.join(work, "fresh-state")],
        {
          signal: "SIGINT",
          code: 130,
          inPhase: () =>
            tb.github.requests.some((r) => r.host === "blob" && r.path.startsWith("/logs/")),
        },
      );
    } finally {
      tb.github.clearFaults();
    }
  });

  it("a download that trickles: exit 130, the .part kept, no .zip, and it says it will resume", async () => {
    const b = builds.small;
    tb.github.injectFault({
      match: "/artifacts/",
      host: "blob",
      bytesPerSecond: 8 * 1024,
      times: Infinity,
    });
    try {
      const result = await interrupt(
        "artifact download",
        ["download", tagOf(b), ...tb.githubArgs, "--output-dir", downloads],
        {
          signal: "SIGINT",
          code: 130,
          inPhase: () =>
            tb.github.requests.some(
              (r) => r.host === "blob" && r.path.includes("/artifacts/") && r.bytesSent > 0,
            ),
        },
      );
      expect(plainStderrLines(result.stderr).join("\n")).toMatch(
        /^Interrupted by SIGINT; download stopped — .*\.zip\.part is kept.*resume/m,
      );
      // No false "done" for a transfer that stopped.
      expect(result.stderr).not.toMatch(/"msg":"download [^"]*: done"/);
    } finally {
      tb.github.clearFaults();
    }
    const files = await readdir(tagDir(b));
    expect(files.some((f) => f.endsWith(".zip.part"))).toBe(true);
    expect(files.filter((f) => f.endsWith(".zip") || f === "metadata.json")).toEqual([]);
  });

  it("prepare while it extracts and verifies (SIGTERM → 143): nothing extracted, no plan", async () => {
    const b = builds.zeros;
    await download(b);
    await interrupt("extraction (prepare)", ["prepare", tagOf(b), "--downloads-dir", downloads], {
      signal: "SIGTERM",
      code: 143,
      inPhase: () => listing(tagDir(b)).some((n) => n.startsWith("extracted.tmp-")),
    });
    const left = await readdir(tagDir(b));
    expect(left.filter((f) => f.startsWith("extracted") || f.endsWith(".json"))).toEqual([
      "metadata.json",
    ]);
  });

  it("a registry-engine push whose upload the registry never answers (SIGINT → 130)", async () => {
    const b = builds.small;
    await rm(tagDir(b), { recursive: true, force: true });
    await download(b);
    const prepared = await cli(["prepare", tagOf(b), "--downloads-dir", downloads]);
    expect(prepared.code, prepared.stderr).toBe(0);
    const before = hang.requests.length;
    await interrupt(
      "registry-engine push",
      [
        "push",
        tagOf(b),
        "--engine",
        "registry",
        "--yes",
        "--skip-login",
        "--downloads-dir",
        downloads,
        ...tb.githubArgs,
        ...tb.gitlabArgs,
        "--registry",
        hang.host,
      ],
      {
        signal: "SIGINT",
        code: 130,
        inPhase: () => hang.requests.slice(before).some((r) => r.startsWith("PATCH ")),
      },
    );
  });

  it("the token realm, which never answers (SIGTERM → 143)", async () => {
    const realm = await startHangingServer();
    try {
      realm.answer(
        "GET",
        "/v2/",
        json(
          401,
          { errors: [{ code: "UNAUTHORIZED" }] },
          {
            "www-authenticate": `Bearer realm="${realm.url}/jwt/auth",service="container_registry"`,
          },
        ),
      );
      await interrupt(
        "token realm",
        [
          "retag",
          "x86/presto-coordinator:a",
          "x86/presto-coordinator:b",
          ...tb.gitlabArgs,
          "--registry",
          realm.host,
          "--registry-username",
          "u",
          "--registry-password",
          "p",
        ],
        {
          signal: "SIGTERM",
          code: 143,
          inPhase: () => realm.requests.some((r) => r.startsWith("GET /jwt/auth")),
        },
      );
    } finally {
      await realm.close();
    }
  });

  it("a server that never answers times out after --http-timeout and is retried with back-off", async () => {
    const silent = await startHangingServer();
    try {
      const started = performance.now();
      const result = await cli([
        "retag",
        "x86/presto-coordinator:a",
        "x86/presto-coordinator:b",
        ...tb.gitlabArgs,
        "--registry",
        silent.host,
        "--http-timeout",
        "1",
      ]);
      const seconds = (performance.now() - started) / 1000;
      expect(result.code, result.stderr).toBe(1);
      const errors = plainStderrLines(result.stderr).filter((l) => l.startsWith("Error: "));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(
        new RegExp(
          `^Error: registry ${silent.host} unreachable while .*no answer for 1 s \\(--http-timeout\\)`,
        ),
      );
      // Asked again after each timeout, with growing waits in between.
      expect(silent.requests.length).toBeGreaterThanOrEqual(4);
      expect(seconds).toBeLessThan(30);
    } finally {
      await silent.close();
    }
  });

  it("takes the timeout from GH_GITLAB_SYNC_HTTP_TIMEOUT, and refuses a bad one as a usage error", async () => {
    const result = await runBinary(["gitlab-list", ...tb.gitlabArgs], {
      env: { ...env(), GH_GITLAB_SYNC_HTTP_TIMEOUT: "soon" },
      cwd: work,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^Error: --http-timeout must be a whole number of seconds from 1 to 86400 \(got 'soon'\)/m,
    );
    const zero = await cli(["gh-list", ...tb.githubArgs, "--http-timeout", "0"]);
    expect(zero.code).toBe(2);
  });

  const daemonArgs = (githubUrl: string, extra: string[] = []) => [
    "daemon",
    "--interval",
    "3600",
    "--downloads-dir",
    downloads,
    "--github-api-url",
    githubUrl,
    ...tb.gitlabArgs,
    "--registry",
    hang.host,
    "--engine",
    "registry",
    ...extra,
  ];

  it("the daemon in a GitHub listing that hangs: SIGTERM ends it cleanly (0), lock removed", async () => {
    const before = hang.requests.length;
    await interrupt("daemon, GitHub listing", daemonArgs(hang.url), {
      signal: "SIGTERM",
      code: 0,
      inPhase: () => hang.requests.length > before && existsSync(path.join(downloads, LOCK_FILE)),
    });
  });

  it("the daemon waiting for its next cycle: SIGINT → 130", async () => {
    await interrupt(
      "daemon, wait between cycles",
      daemonArgs(tb.github.url, ["--repo", "nobody/nothing"]),
      { signal: "SIGINT", code: 130, inPhase: ({ stderr }) => stderr.includes('"summary"') },
    );
  });
});

function listing(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
