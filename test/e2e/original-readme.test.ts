/**
 * Drop-in for gh_gitlab_sync.py: every command line of the original's README (tools/README.md),
 * run as written there — only `python3 tools/gh_gitlab_sync.py` becomes this binary, and the
 * testbed's addresses and tokens stand in for the real ones (GITHUB_API_URL and `--gitlab-host`
 * point at the stand-ins, the registry address replaces gitlab-master.nvidia.com:5005, `<user>`
 * and the tokens are the testbed's). Each must do what that README says it does. Beside them: a
 * downloads directory written by the original (Python's own json module writes its files) is
 * prepared and pushed here, and metadata.json written here reads back in Python as the original
 * reads it; no-terminal confirmations fail; the java worker (the coordinator re-tagged) moves
 * no blob; every tag here comes from short refs and keeps the workflow's trailing dash.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedImages } from "../../src/domain/images.js";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { silentLogger } from "../../src/report/logger.js";
import { RegistryClient } from "../../src/registry/client.js";
import { shellQuote } from "../../src/util/text.js";
import { addArtifactRun, type ArtifactFixture } from "../testbed/artifacts.js";
import { dockerdGate, startDockerd, type Dockerd } from "../testbed/dockerd.js";
import {
  GITHUB_TOKEN,
  GITLAB_TOKEN,
  PROJECT_PATH,
  REGISTRY_USER,
  startTestbed,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import type { AccessLogEntry } from "../testbed/registry.js";
import { seedImage } from "../testbed/registry-seed.js";
import { makeMetadata, WORKFLOW_NAME } from "../testbed/run-fixtures.js";
import type { ScenarioRun } from "../testbed/scenario.js";
import { expectOneLineError, gitlabTags } from "./checks.js";
import { BIN, runBinary, startBinary, type CliResult } from "./run-cli.js";

const gate = testbedGate();
const dockerGate = gate.skip ? gate : dockerdGate();

/** The original README's command lines, verbatim (tools/README.md at 7dfb8ca). */
const README = {
  ghList: `python3 tools/gh_gitlab_sync.py gh-list \\
  --limit 10 \\
  --gh-token "$GH_TOKEN"`,
  gitlabList: `python3 tools/gh_gitlab_sync.py gitlab-list \\
  --gitlab-token "$GITLAB_TOKEN"`,
  xref: `python3 tools/gh_gitlab_sync.py xref \\
  --gh-token "$GH_TOKEN" \\
  --gitlab-token "$GITLAB_TOKEN"`,
  download: `python3 tools/gh_gitlab_sync.py download <image-tag> \\
     --output-dir downloads \\
     --gh-token "$GH_TOKEN"`,
  prepare: `python3 tools/gh_gitlab_sync.py prepare <image-tag> \\
     --downloads-dir downloads`,
  push: `python3 tools/gh_gitlab_sync.py push <image-tag> \\
     --downloads-dir downloads \\
     --gitlab-token "$GITLAB_TOKEN" \\
     --registry gitlab-master.nvidia.com:5005 \\
     --registry-username <user> \\
  [--retag-as-latest] \\
     --verbose \\
     --yes`,
  clean: `python3 tools/gh_gitlab_sync.py clean <image-tag> \\
     --downloads-dir downloads \\
     --gh-token "$GH_TOKEN" \\
     --yes`,
  retag: `python3 tools/gh_gitlab_sync.py retag \\
  x86/presto-coordinator:presto-92865fbce0d2-velox-65797d572e0a \\
  x86/presto-coordinator:latest \\
  --registry gitlab-master.nvidia.com:5005 \\
  --registry-project hercules/veloxtesting \\
  --gitlab-token "$GITLAB_TOKEN" \\
  --registry-username <user> \\
  --registry-password "$GITLAB_TOKEN"`,
  daemon: `python3 tools/gh_gitlab_sync.py daemon \\
  --downloads-dir downloads \\
  --interval 900 \\
  --repo rapidsai/velox-testing \\
  --workflow .github/workflows/presto-build-images.yml \\
  --gitlab-token "$GITLAB_TOKEN" \\
  --registry gitlab-master.nvidia.com:5005 \\
  --registry-username <user> \\
  [--retag-as-latest] \\
  --verbose`,
  daemonOnce: `python3 tools/gh_gitlab_sync.py daemon \\
  --downloads-dir downloads \\
  --once \\
  --interval 900 \\
  --gitlab-token "$GITLAB_TOKEN" \\
  --gh-token "$GH_TOKEN" \\
  --registry gitlab-master.nvidia.com:5005 \\
  --registry-username <user>`,
};

type Build = Pick<ScenarioRun, "id" | "presto" | "velox" | "platform" | "mode" | "variant">;

/** Every build from short refs: their tags keep the workflow's trailing dash. */
const builds = {
  /** The manual download → prepare → push → clean of the README; every image (java too). */
  manual: { id: 7001, presto: "main", velox: "v1.2", platform: "linux/arm64", mode: "all" },
  /** Synced by the README's long-running daemon line. */
  loop: {
    id: 7002,
    presto: "0.295",
    velox: "main",
    platform: "linux/amd64",
    mode: "single",
    variant: "native_gpu",
  },
  /** Synced by the README's `daemon --once` line. */
  once: {
    id: 7003,
    presto: "release",
    velox: "dev",
    platform: "linux/amd64",
    mode: "single",
    variant: "java",
  },
  /** Downloaded by the original (its metadata.json from its daemon); prepared and pushed here. */
  fromDaemon: { id: 7004, presto: "v0.1", velox: "dev", platform: "linux/amd64", mode: "all" },
  /** Downloaded and prepared by the original (by hand); pushed here. */
  fromManual: {
    id: 7005,
    presto: "v0.2",
    velox: "dev",
    platform: "linux/arm64",
    mode: "all_native",
  },
  /** A newer successful run of fromManual's tag: GitHub's newest is not the run on disk. */
  rebuilt: {
    id: 7006,
    presto: "v0.2",
    velox: "dev",
    platform: "linux/arm64",
    mode: "all_native",
  },
} satisfies Record<string, Build>;

const metadataOf = (b: Build): RunMetadata =>
  makeMetadata({
    prestoRef: b.presto,
    veloxRef: b.velox,
    platform: b.platform,
    mode: b.mode,
    workerVariant: b.variant,
  });
const tagOf = (b: Build): string => metadataOf(b)["Image tag"] ?? "";
const gitlabTagsOf = (b: Build): string[] => expectedImages(metadataOf(b)).map((i) => i.gitlabTag);

/** The keys gh_gitlab_sync.py reads back from metadata.json (prepare, push, clean, daemon). */
const ORIGINAL_READS = [
  "Image tag",
  "Presto ref",
  "Velox ref",
  "Target platform",
  "Build Java worker",
  "Build native CPU",
  "Build native GPU",
  "run_id",
  "run_name",
  "repository",
  "artifact_name",
  "artifact_zip",
  "_run_branch",
  "_run_conclusion",
  "_run_info",
];

/** Python itself, so the original's file format is Python's and not our idea of it. */
function python(script: string, input: unknown, args: string[] = []): string {
  return execFileSync("python3", ["-c", script, ...args], {
    input: JSON.stringify(input),
    encoding: "utf8",
  });
}
const WRITE_JSON = `import json, sys
spec = json.load(sys.stdin)
with open(spec["path"], "w", encoding="utf-8") as fh:
    json.dump(spec["value"], fh, indent=2, sort_keys=True)`;
const EXTRACT = `import json, sys, zipfile
spec = json.load(sys.stdin)
with zipfile.ZipFile(spec["zip"]) as zf:
    zf.extractall(spec["dir"])`;
const READ_BACK = `import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
data = json.loads(text)
keys = json.load(sys.stdin)
print(json.dumps({
    "same_bytes": json.dumps(data, indent=2, sort_keys=True) == text,
    "read": {key: data.get(key) for key in keys},
}))`;

/** Blob traffic of one repository in the registry's access log. */
function blobTraffic(log: AccessLogEntry[], repository: string): AccessLogEntry[] {
  return log.filter((e) => e.path.startsWith(`/v2/${repository}/blobs/`));
}

describe.skipIf(gate.skip || dockerGate.skip)(
  `the original README's command lines ${gate.reason || dockerGate.reason}`,
  () => {
    let tb: Testbed;
    let dockerd: Dockerd;
    let work: string;
    let registry: RegistryClient;
    const fixtures = new Map<number, ArtifactFixture>();

    const env = (): Record<string, string> => ({
      GH_TOKEN: GITHUB_TOKEN,
      GITLAB_TOKEN,
      GITHUB_API_URL: tb.github.url,
      DOCKER_HOST: dockerd.dockerHost,
      HOME: path.join(work, "home"),
    });
    /** A README line as argv: placeholders filled, the testbed's addresses and tokens put in. */
    const words = (line: string, tag = tagOf(builds.manual)): string[] => {
      const tokens = line.replace(/\\\n/g, " ").match(/"[^"]*"|\S+/g) ?? [];
      const argv = tokens.slice(2).map((word) => {
        const unquoted = word.replace(/^"(.*)"$/, "$1");
        const values: Record<string, string> = {
          $GH_TOKEN: GITHUB_TOKEN,
          $GITLAB_TOKEN: GITLAB_TOKEN,
          "<image-tag>": tag,
          "<user>": REGISTRY_USER,
          "[--retag-as-latest]": "--retag-as-latest",
          "gitlab-master.nvidia.com:5005": tb.gitlab.registryHost,
        };
        return values[unquoted] ?? unquoted;
      });
      const talksToGitlab = ["gitlab-list", "xref", "push", "retag", "daemon"];
      return talksToGitlab.includes(argv[0] ?? "")
        ? [...argv, "--gitlab-host", tb.gitlab.url]
        : argv;
    };
    const readme = (line: string, tag?: string): Promise<CliResult> =>
      runBinary(words(line, tag), { env: env(), cwd: work, timeoutMs: 240_000 });
    const downloads = () => path.join(work, "downloads");
    const tagDir = (b: Build) => path.join(downloads(), tagOf(b));
    const present = () => gitlabTags(tb);
    /** The keys the original's download adds to the run's metadata. */
    const downloadKeys = (b: Build) => ({
      run_id: b.id,
      run_name: WORKFLOW_NAME,
      repository: "rapidsai/velox-testing",
      artifact_name: `presto-images-${b.id}`,
      artifact_size_bytes: fixtures.get(b.id)?.size,
      artifact_zip: `${tagOf(b)}.zip`,
    });
    /** A push by this tool of a directory the original wrote, through the registry engine. */
    const pushHere = (b: Build, downloadsDir: string, extra: string[] = []) =>
      runBinary(["push", tagOf(b), "--downloads-dir", downloadsDir, ...registryFlags(), ...extra], {
        env: env(),
        cwd: work,
      });
    const registryFlags = () => [
      "--gitlab-host",
      tb.gitlab.url,
      "--registry",
      tb.gitlab.registryHost,
      "--registry-username",
      REGISTRY_USER,
      "--engine",
      "registry",
      "--yes",
    ];
    const addBuild = async (b: Build): Promise<void> => {
      fixtures.set(
        b.id,
        await addArtifactRun(tb.github, {
          id: b.id,
          metadata: metadataOf(b),
          dir: path.join(work, "fixtures", String(b.id)),
          createdAt: new Date(Date.UTC(2025, 11, 5, 8) + (b.id - 7000) * 600_000)
            .toISOString()
            .replace(".000Z", "Z"),
        }),
      );
    };

    beforeAll(async () => {
      tb = await startTestbed();
      work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-readme-"));
      dockerd = await startDockerd();
      registry = new RegistryClient({
        fetch: globalThis.fetch,
        registry: tb.gitlab.registryHost,
        username: REGISTRY_USER,
        password: GITLAB_TOKEN,
        logger: silentLogger(),
      });
      // `once` appears on GitHub only when its test starts, so that the long-running daemon
      // before it leaves it for `daemon --once` to sync.
      for (const b of (Object.values(builds) as Build[]).filter((b) => b !== builds.once)) {
        await addBuild(b);
      }
      // The README's retag example names a build already in GitLab.
      await seedImage(tb.gitlab, "x86/presto-coordinator", [
        "presto-92865fbce0d2-velox-65797d572e0a",
      ]);
    }, 180_000);
    afterAll(async () => {
      await dockerd?.stop();
      await tb?.stop();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it("a downloads directory written by the original's daemon is prepared and pushed here; the re-tagged java worker moves no blob", async () => {
      const b = builds.fromDaemon;
      const dir = path.join(work, "original", tagOf(b));
      await mkdir(dir, { recursive: true });
      await cp(fixtures.get(b.id)?.zip ?? "", path.join(dir, `${tagOf(b)}.zip`));
      // What the original's daemon writes: the run's metadata, its run keys, download's keys.
      const runInfo = {
        databaseId: b.id,
        displayTitle: WORKFLOW_NAME,
        headBranch: "main",
        conclusion: "success",
        htmlUrl: `https://github.com/rapidsai/velox-testing/actions/runs/${b.id}`,
      };
      python(WRITE_JSON, {
        path: path.join(dir, "metadata.json"),
        value: {
          ...metadataOf(b),
          _tags: gitlabTagsOf(b),
          _run_display: WORKFLOW_NAME,
          _run_id: b.id,
          _run_info: runInfo,
          _run_branch: "main",
          _run_conclusion: "success",
          ...downloadKeys(b),
        },
      });
      const downloadsDir = path.join(work, "original");
      const prep = await runBinary(["prepare", tagOf(b), "--downloads-dir", downloadsDir], {
        env: env(),
        cwd: work,
      });
      expect(prep.code, prep.stderr).toBe(0);
      expect(prep.stdout).toContain(`Preparing artifacts from run ${b.id} (${WORKFLOW_NAME}).`);

      const mark = tb.gitlab.registry.accessLog().length;
      const push = await pushHere(b, downloadsDir);
      expect(push.code, push.stderr).toBe(0);
      expect(push.stdout).toContain(
        `    → run ${b.id} (${WORKFLOW_NAME}), branch=main, conclusion=success\n`,
      );
      for (const tag of gitlabTagsOf(b)) expect(await present()).toContain(tag);

      // The java worker is the coordinator under a second name: its repository got only
      // existence checks and mounts — no upload of a layer or of the config.
      const java = `${PROJECT_PATH}/x86/presto-java-worker`;
      const traffic = blobTraffic(tb.gitlab.registry.accessLog().slice(mark), java);
      const uploads = traffic.filter((e) => !(e.method === "HEAD" || e.method === "GET"));
      expect(traffic.length).toBeGreaterThan(0);
      expect(uploads.length).toBeGreaterThan(0);
      for (const e of uploads) {
        expect([e.method, e.status, e.path.includes("mount=")]).toEqual(["POST", 201, true]);
      }
      expect(traffic.filter((e) => e.method === "PATCH" || e.method === "PUT")).toEqual([]);
      const coordinator = await registry.getManifest(
        `${PROJECT_PATH}/x86/presto-coordinator`,
        gitlabTagsOf(b)[0]?.split(":")[1] ?? "",
      );
      const worker = await registry.getManifest(java, gitlabTagsOf(b)[1]?.split(":")[1] ?? "");
      expect(worker?.digest).toBe(coordinator?.digest);
    });

    it("a directory the original downloaded and prepared by hand is pushed here; the run shown is the one on disk", async () => {
      const b = builds.fromManual;
      const downloadsDir = path.join(work, "original");
      const dir = path.join(downloadsDir, tagOf(b));
      await mkdir(dir, { recursive: true });
      await cp(fixtures.get(b.id)?.zip ?? "", path.join(dir, `${tagOf(b)}.zip`));
      // The original's download by hand: no _run_* keys at all.
      python(WRITE_JSON, {
        path: path.join(dir, "metadata.json"),
        value: {
          ...metadataOf(b),
          ...downloadKeys(b),
        },
      });
      // The original's prepare: zipfile's extractall, then its plan.
      const extracted = path.join(dir, "extracted");
      python(EXTRACT, { zip: path.join(dir, `${tagOf(b)}.zip`), dir: extracted });
      python(WRITE_JSON, {
        path: path.join(dir, "upload-plan.json"),
        value: {
          image_tag: tagOf(b),
          presto_ref: b.presto,
          velox_ref: b.velox,
          platform: b.platform,
          artifacts: expectedImages(metadataOf(b)).map((image) => ({
            gitlab_tag: image.gitlabTag,
            arch: image.arch,
            repo: image.repo,
            file: path.join(extracted, image.tarball),
          })),
        },
      });
      const push = await pushHere(b, downloadsDir);
      expect(push.code, push.stderr).toBe(0);
      // The images came from run 7005; GitHub's newest run for the tag is 7006: shown, and warned.
      expect(push.stdout).toContain(
        `    → run ${b.id} (${WORKFLOW_NAME}), branch=main, conclusion=success\n`,
      );
      expect(push.stdout).toContain(
        `WARNING: Prepared metadata run_id differs from GitHub lookup (${b.id} vs ${builds.rebuilt.id}).`,
      );
      for (const tag of gitlabTagsOf(b)) expect(await present()).toContain(tag);
    });

    it("gh-list --limit 10 --gh-token shows each run's metadata block with its Image tag line", async () => {
      const result = await readme(README.ghList);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^Found 5 workflow runs$/m);
      expect(result.stdout).toContain(
        `${builds.manual.id}: ${WORKFLOW_NAME} · branch=main · conclusion=success · started=`,
      );
      expect(result.stdout).toContain(`  Image tag         : ${tagOf(builds.manual)}\n`);
      expect(result.stdout).toContain("  Presto ref        : main\n");
      expect(result.stdout).toContain("  Velox ref         : v1.2\n");
    });

    it("gitlab-list --gitlab-token shows the repositories and their tags with size and creation date", async () => {
      const result = await readme(README.gitlabList);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^Repository: x86\/presto-coordinator \(id=\d+\)$/m);
      expect(result.stdout).toMatch(
        /^ {2}presto-92865fbce0d2-velox-65797d572e0a\s+size=\s*\d+(\.\d+)? (B|KiB|MiB|GiB) {2}created=20\d\d-/m,
      );
      expect(result.stdout).toMatch(/^ {2}presto-v0\.1--velox-dev-\s+size=/m);
    });

    it("xref --gh-token --gitlab-token reports the tags GitLab is missing, trailing dashes kept", async () => {
      const result = await readme(README.xref);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^Collected \d+ expected image tags from GitHub runs\.$/m);
      expect(result.stdout).toContain("Images present in GitHub runs but missing on GitLab:");
      expect(result.stdout).toContain(`  Image tag: ${tagOf(builds.manual)}\n`);
      for (const b of [builds.manual, builds.loop]) {
        for (const tag of gitlabTagsOf(b)) expect(result.stdout).toContain(`missing tag: ${tag}\n`);
      }
      expect(result.stdout).toContain(
        "missing tag: arm/presto-java-worker:presto-main--velox-v1.2-\n",
      );
      // Synced above from the original's directories: not missing.
      expect(result.stdout).not.toContain(tagOf(builds.fromDaemon));
    });

    it("download <image-tag> --output-dir downloads records metadata.json the original reads, and keeps the archive", async () => {
      const b = builds.manual;
      const result = await readme(README.download);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain("Download complete.");
      expect(existsSync(path.join(tagDir(b), `${tagOf(b)}.zip`))).toBe(true);
      const file = path.join(tagDir(b), "metadata.json");
      const back = JSON.parse(python(READ_BACK, ORIGINAL_READS, [file])) as {
        same_bytes: boolean;
        read: Record<string, unknown>;
      };
      // Byte for byte what Python's json.dump(indent=2, sort_keys=True) would have written.
      expect(back.same_bytes).toBe(true);
      expect(back.read).toMatchObject({
        ...Object.fromEntries(
          Object.entries(metadataOf(b)).filter(([k]) => ORIGINAL_READS.includes(k)),
        ),
        run_id: b.id,
        run_name: WORKFLOW_NAME,
        repository: "rapidsai/velox-testing",
        artifact_name: `presto-images-${b.id}`,
        artifact_zip: `${tagOf(b)}.zip`,
        _run_branch: "main",
        _run_conclusion: "success",
        _run_info: {
          databaseId: b.id,
          displayTitle: WORKFLOW_NAME,
          headBranch: "main",
          conclusion: "success",
          htmlUrl: `https://github.com/rapidsai/velox-testing/actions/runs/${b.id}`,
        },
      });
    });

    it("prepare <image-tag> --downloads-dir downloads extracts every expected tarball and writes upload-plan.json", async () => {
      const b = builds.manual;
      const result = await readme(README.prepare);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain("Prepare complete.");
      const images = expectedImages(metadataOf(b));
      expect((await readdir(path.join(tagDir(b), "extracted"))).sort()).toEqual(
        [...images.map((i) => i.tarball), "build-metadata.txt"].sort(),
      );
      const plan = JSON.parse(await readFile(path.join(tagDir(b), "upload-plan.json"), "utf8")) as {
        artifacts: Array<{ gitlab_tag: string }>;
      };
      expect(plan.artifacts.map((a) => a.gitlab_tag)).toEqual([
        "arm/presto-coordinator:presto-main--velox-v1.2-",
        "arm/presto-java-worker:presto-main--velox-v1.2-",
        "arm/presto-native-worker-cpu:presto-main--velox-v1.2-",
        "arm/presto-native-worker-gpu:presto-main--velox-v1.2-",
      ]);
    });

    it("push without --yes and without a terminal fails and changes nothing; at a terminal it asks again until answered", async () => {
      const b = builds.manual;
      const line = words(README.push).filter((w) => w !== "--yes");
      const before = await present();
      const mark = tb.gitlab.registry.accessLog().length;
      const piped = await runBinary(line, { env: env(), cwd: work, input: "y\n" });
      expectOneLineError(piped, /no terminal to confirm on; pass --yes/);
      expect(piped.stdout).toContain("Push plan:");

      // A terminal (util-linux `script` gives the CLI a pty): "maybe" is asked again, "n" stops.
      const command = [process.execPath, BIN, ...line].map(shellQuote).join(" ");
      const atTerminal = await new Promise<CliResult>((resolve, reject) => {
        const child = spawn("script", ["-qec", command, "/dev/null"], {
          cwd: work,
          env: { PATH: process.env.PATH ?? "", ...env() },
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
        child.stdin.end("maybe\nn\n");
      });
      const screen = atTerminal.stdout.replace(/\r\n/g, "\n");
      expect(atTerminal.code, screen + atTerminal.stderr).toBe(0);
      expect(screen).toContain(
        "Proceed with upload? [y/N]: Please respond with 'y' or 'n'.\n\nProceed with upload? [y/N]: ",
      );
      expect(screen).toContain("Push aborted.");

      const writes = tb.gitlab.registry
        .accessLog()
        .slice(mark)
        .filter((e) => ["PUT", "POST", "PATCH", "DELETE"].includes(e.method));
      expect(writes).toEqual([]);
      expect(await present()).toEqual(before);
      for (const tag of gitlabTagsOf(b)) expect(before).not.toContain(tag);
    });

    it("push … --retag-as-latest --verbose --yes: docker login/load/tag/push of each tarball, latest too; again: skips what is there", async () => {
      const b = builds.manual;
      const result = await readme(README.push);
      expect(result.code, result.stderr).toBe(0);
      const remote = (repo: string) =>
        `${tb.gitlab.registryHost}/${PROJECT_PATH}/arm/${repo}:presto-main--velox-v1.2-`;
      // arm/… exists since the original's directory was pushed above; its java worker does not.
      expect(result.stdout).toContain("    GitLab status: repository exists, tag missing\n");
      expect(result.stdout).toContain(
        "    GitLab status: repository not found (will be created on push)\n",
      );
      expect(result.stdout).toContain(`    Local tag    : presto-coordinator:${tagOf(b)}\n`);
      // --verbose: the docker commands equivalent to what the engine does.
      expect(result.stdout).toContain(
        `\nCommand preview:\n    $ docker load --input ${path.join(tagDir(b), "extracted", `presto-coordinator-${tagOf(b)}.tar.gz`)}\n` +
          `    $ docker tag presto-coordinator:${tagOf(b)} ${remote("presto-coordinator")}\n` +
          `    $ docker push ${remote("presto-coordinator")}\n`,
      );
      expect(result.stdout).toMatch(/^\[5\/5\] Executing docker push sequence \.\.\.$/m);
      expect(result.stdout).toContain("Push complete: 4 pushed.");
      const tags = await present();
      for (const tag of gitlabTagsOf(b)) {
        expect(tags).toContain(tag);
        expect(tags).toContain(`${tag.split(":")[0]}:latest`);
      }

      const again = await readme(README.push);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain(
        "\nSkipping already-present tags (use --force to push anyway):\n" +
          `  ${remote("presto-coordinator")}\n`,
      );
      expect(again.stdout).toContain("Nothing to push.\n");
    });

    it("clean … --gh-token --yes removes the tag's archive, extraction and metadata, and the run's leftovers", async () => {
      const b = builds.manual;
      // Without --yes and without a terminal: refused, nothing removed.
      const refused = await runBinary(
        words(README.clean).filter((w) => w !== "--yes"),
        { env: env(), cwd: work },
      );
      expectOneLineError(refused, /no terminal to confirm on; pass --yes/);
      expect(existsSync(path.join(tagDir(b), "metadata.json"))).toBe(true);

      // The original's older layout for the run, and a look-alike of another run.
      await mkdir(path.join(downloads(), String(b.id)), { recursive: true });
      await writeFile(path.join(downloads(), `presto-images-${b.id}.zip`), "old");
      await writeFile(path.join(downloads(), `presto-images-${b.id}0.zip`), "another run");
      const result = await readme(README.clean);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(
        `    → run ${b.id} (${WORKFLOW_NAME}), branch=main, conclusion=success\n`,
      );
      expect(result.stdout).toContain(`  - ${tagDir(b)}/ (download + prepared data)\n`);
      expect(result.stdout).toContain("Clean complete.");
      const left = await readdir(downloads());
      expect(left).not.toContain(tagOf(b));
      expect(left).not.toContain(String(b.id));
      expect(left).not.toContain(`presto-images-${b.id}.zip`);
      expect(left).toContain(`presto-images-${b.id}0.zip`);
      expect(left).toContain(".state");
    });

    it("retag … --registry-project … points latest at the existing manifest", async () => {
      const source = `${PROJECT_PATH}/x86/presto-coordinator`;
      const digest = (await registry.getManifest(source, "presto-92865fbce0d2-velox-65797d572e0a"))
        ?.digest;
      expect(digest).toMatch(/^sha256:/);
      const result = await readme(README.retag);
      expect(result.code, result.stderr).toBe(0);
      expect((await registry.getManifest(source, "latest"))?.digest).toBe(digest);
    });

    it("daemon --interval 900 … --verbose: xref, then download → prepare → push → clean, then sleeps; SIGTERM stops it", async () => {
      const b = builds.loop;
      const daemon = startBinary(words(README.daemon), {
        env: env(),
        cwd: work,
        timeoutMs: 240_000,
      });
      try {
        const deadline = Date.now() + 180_000;
        while (!/"summary":/.test(daemon.output().stderr) && Date.now() < deadline) {
          await sleep(100);
        }
        expect(daemon.output().stderr).toMatch(/"summary":/);
        daemon.child.kill("SIGTERM");
        const result = await daemon.result;
        expect(result.code, result.stderr).toBe(0);
      } finally {
        daemon.child.kill("SIGKILL");
      }
      const tags = await present();
      for (const tag of gitlabTagsOf(b)) {
        expect(tags).toContain(tag);
        expect(tags).toContain(`${tag.split(":")[0]}:latest`);
      }
      expect(await readdir(downloads())).not.toContain(tagOf(b));
    });

    it("daemon --once … syncs what is missing and exits 0", async () => {
      const b = builds.once;
      await addBuild(b);
      const result = await readme(README.daemonOnce);
      expect(result.code, result.stderr).toBe(0);
      const tags = await present();
      for (const tag of gitlabTagsOf(b)) expect(tags).toContain(tag);
      expect(tags).toContain("x86/presto-java-worker:presto-release--velox-dev-");
      expect(await readdir(downloads())).not.toContain(tagOf(b));
    });

    it("--registry-project names the GitLab API project too, in push, daemon and retag", async () => {
      // GitLab knows no project `elsewhere/unknown`: only --registry-project can make these work.
      const project = ["--gitlab-project", "elsewhere/unknown", "--registry-project", PROJECT_PATH];
      const common = [...registryFlags().filter((w) => w !== "--yes"), ...project];
      const b = builds.fromDaemon;
      const push = await pushHere(b, path.join(work, "original"), project);
      expect(push.code, push.stderr).toBe(0);
      expect(push.stdout).toContain(
        "    GitLab status: already present (push will overwrite the existing tag)",
      );
      expect(push.stdout).toContain("Nothing to push.");
      const daemon = await runBinary(
        ["daemon", "--once", "--downloads-dir", "downloads", ...common],
        { env: env(), cwd: work },
      );
      expect(daemon.code, daemon.stderr).toBe(0);
      expect(daemon.stderr).toMatch(/cycle 1 ok: 6 runs, 0 missing/);
      const retag = await runBinary(
        [
          "retag",
          `x86/presto-coordinator:${gitlabTagsOf(b)[0]?.split(":")[1]}`,
          "stable",
          ...common,
        ],
        { env: env(), cwd: work },
      );
      expect(retag.code, retag.stderr).toBe(0);
      expect(await present()).toContain("x86/presto-coordinator:stable");
    });
  },
);
