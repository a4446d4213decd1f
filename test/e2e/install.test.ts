/**
 * The install the README gives an operator: `npm pack`, then `npm install -g` of the tarball —
 * here into a temporary prefix — and the installed binary run from another directory, with no
 * checkout near it. Then the systemd unit, pointed at that binary, through `systemd-analyze
 * verify` where the machine has it.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGithubStandIn } from "../testbed/github-standin.js";
import { GITHUB_TOKEN } from "../testbed/index.js";
import { freePort } from "../testbed/registry.js";
import { makeFixtureRun, makeMetadata } from "../testbed/run-fixtures.js";
import { findOnPath } from "../testbed/system.js";
import { plainStderrLines, runBinary } from "./run-cli.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
  name: string;
  version: string;
};
/** Where systemd looks up a unit's bare program name (systemd.service(5), "Command lines"). */
const SYSTEMD_SEARCH_PATH = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
];

describe("install from a packed tarball", () => {
  let work: string;
  let prefix: string;
  let installed: string;

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-install-"));
    prefix = path.join(work, "prefix");
    const { stdout } = await run("npm", ["pack", "--pack-destination", work, "--silent"], {
      cwd: root,
    });
    const tarball = path.join(work, stdout.trim().split("\n").pop() ?? "");
    expect(path.basename(tarball)).toBe(`${pkg.name}-${pkg.version}.tgz`);
    // From npm's cache, as `npm ci` left it: the test needs no network.
    await run(
      "npm",
      ["install", "-g", "--prefix", prefix, tarball, "--prefer-offline", "--no-audit", "--no-fund"],
      { cwd: work, env: { ...process.env, npm_config_loglevel: "error" } },
    );
    installed = path.join(prefix, "bin", "gh-gitlab-sync");
  }, 180_000);
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("is a copy under the prefix (no link back to the checkout) and runs from another directory", async () => {
    expect(existsSync(installed)).toBe(true);
    const home = path.join(prefix, "lib", "node_modules", "gh-gitlab-sync");
    expect(await readdir(home)).toEqual(
      expect.arrayContaining(["bin", "dist", "package.json", "README.md", "LICENSE"]),
    );
    // Only what the package needs: no sources, tests or benchmarks.
    expect(await readdir(home)).not.toEqual(expect.arrayContaining(["src"]));
    // Its dependencies are bundled (scripts/bundle.mjs): npm installs nothing beside it, and the
    // licences of what is bundled come with it.
    expect(existsSync(path.join(home, "node_modules"))).toBe(false);
    expect((await readdir(path.join(home, "dist"))).sort()).toEqual([
      "THIRD-PARTY-NOTICES",
      "gh-gitlab-sync.cjs",
      "gh-gitlab-sync.cjs.cache",
      "load-cached.cjs",
      "vendor",
    ]);
    const notices = readFileSync(path.join(home, "dist", "THIRD-PARTY-NOTICES"), "utf8");
    for (const bundled of ["@octokit/rest", "@gitbeaker/rest", "undici", "dockerode", "pino"])
      expect(notices).toMatch(new RegExp(`^${bundled} \\d+\\.\\d+\\.\\d+ — `, "m"));
    const elsewhere = path.join(work, "elsewhere");
    await mkdir(elsewhere);
    const version = await run(installed, ["--version"], { cwd: elsewhere });
    expect(version.stdout.trim()).toBe(pkg.version);
    const help = await run(installed, ["daemon", "--help"], { cwd: elsewhere });
    expect(help.stdout).toContain("--health-port");
    // A real command: loads the HTTP client, the GitLab client and the logger from the install.
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const unreachable = await runBinary(
      ["gitlab-list", "--gitlab-host", nobody, "--log-format", "json"],
      { cwd: elsewhere, env: { GITLAB_TOKEN: "glpat-x" }, bin: installed },
    );
    expect(unreachable.code).toBe(1);
    expect(plainStderrLines(unreachable.stderr).join("\n")).toContain(
      `Error: Cannot reach GitLab at ${nobody} (ECONNREFUSED)`,
    );
    expect(await readdir(elsewhere)).toEqual([]);
  });

  it("reads GitHub with the dependencies bundled into it", async () => {
    // The bundle is built from the checkout's tree (its `overrides` included: content-type 1.x
    // under @octokit/request), so an installed copy runs that same code on Node 20.
    const github = await startGithubStandIn({ token: GITHUB_TOKEN });
    try {
      github.addRun(
        await makeFixtureRun({
          id: 4242,
          metadata: makeMetadata({
            prestoRef: "a".repeat(40),
            veloxRef: "b".repeat(40),
            platform: "linux/amd64",
            mode: "all_native",
          }),
        }),
      );
      const listed = await runBinary(
        [
          "gh-list",
          "--limit",
          "1",
          "--state-dir",
          path.join(work, "state"),
          "--github-api-url",
          github.url,
        ],
        { cwd: work, env: { GH_TOKEN: GITHUB_TOKEN }, bin: installed },
      );
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toContain("Found 1 workflow runs");
      expect(listed.stdout).toContain(
        "Image tag         : presto-aaaaaaaaaaaa-velox-bbbbbbbbbbbb-linux-amd64",
      );
    } finally {
      await github.close();
    }
  });

  it("puts the binary where the unit finds it: in the prefix's bin, on systemd's search path", async () => {
    expect(path.relative(prefix, installed)).toBe(path.join("bin", "gh-gitlab-sync"));
    const { stdout } = await run("npm", ["prefix", "-g"]);
    expect(SYSTEMD_SEARCH_PATH).toContain(path.join(stdout.trim(), "bin"));
  });

  it.skipIf(!findOnPath("systemd-analyze"))(
    "the unit passes systemd-analyze verify with the installed binary",
    async () => {
      const unit = readFileSync(path.join(root, "deploy", "gh-gitlab-sync.service"), "utf8");
      // The unit names the binary as systemd finds it on a host; here it lives in the temporary prefix.
      const here = unit.replace(/^ExecStart=gh-gitlab-sync /m, `ExecStart=${installed} `);
      expect(here).not.toBe(unit);
      const file = path.join(work, "gh-gitlab-sync.service");
      await writeFile(file, here);
      const result = await run("systemd-analyze", ["verify", file]).then(
        (r) => ({ code: 0, ...r }),
        (err: { code?: number; stdout?: string; stderr?: string }) => ({
          code: err.code ?? 1,
          stdout: err.stdout ?? "",
          stderr: err.stderr ?? "",
        }),
      );
      // Only lines about this unit count: a container's own units may draw warnings of their own.
      const ours = `${result.stdout}${result.stderr}`
        .split("\n")
        .filter((l) => l.includes("gh-gitlab-sync.service"));
      expect(ours).toEqual([]);
      expect(result.code).toBe(0);
    },
  );
});
