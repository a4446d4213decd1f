import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import {
  cp,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { makeArtifactZip, sha256File, type ArtifactFixtureOptions } from "../testbed/artifacts.js";
import { corruptZipEntry, truncateFile } from "../testbed/image-fixtures.js";
import { startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import {
  makeFixtureRun,
  makeMetadata,
  type BundleMode,
  type Platform,
  type WorkerVariant,
} from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { runBinary } from "./run-cli.js";
import { expectOneLineError } from "./checks.js";

const gate = testbedGate();

interface Case {
  id: number;
  platform?: Platform;
  mode?: BundleMode;
  variant?: WorkerVariant;
  fixture?: Omit<ArtifactFixtureOptions, "dir" | "metadata">;
  expired?: boolean;
  wrongDigest?: boolean;
  /** Damage the finished zip (GitHub then reports the damaged zip's size and digest). */
  damageZip?: (zip: string) => Promise<void>;
}

const cases = {
  good: { id: 3001, fixture: { ociRepos: ["presto-native-worker-cpu"] } },
  zip64: {
    id: 3002,
    platform: "linux/arm64",
    mode: "single",
    variant: "native_cpu",
    fixture: { forceZip64: true, ociRepos: ["presto-coordinator"] },
  },
  resume: { id: 3003, fixture: { layerBytes: 3 << 20 } },
  expired: { id: 3004, expired: true },
  digest: { id: 3005, wrongDigest: true },
  wrongTag: { id: 3006, fixture: { wrongTagRepo: "presto-native-worker-gpu" } },
  missing: { id: 3007, fixture: { omit: "presto-native-worker-gpu" } },
  zipSlip: {
    id: 3008,
    fixture: { rawEntries: [{ name: "../../x", data: Buffer.from("escaped\n") }] },
  },
  crc: { id: 3009, damageZip: (zip: string) => corruptZipEntry(zip, "build-metadata.txt") },
  truncatedZip: { id: 3010, damageZip: (zip: string) => truncateFile(zip, 0.6) },
  notGzip: {
    id: 3011,
    fixture: {
      mutateTarball: async (repo: string, file: string) => {
        if (repo === "presto-coordinator") await writeFile(file, "this is not gzip\n");
      },
    },
  },
  cutGzip: {
    id: 3012,
    fixture: {
      mutateTarball: async (repo: string, file: string) => {
        if (repo === "presto-native-worker-cpu") await truncateFile(file, 0.5);
      },
    },
  },
  space: { id: 3013 },
  legacy: { id: 3014 },
  deletedListed: { id: 3015 },
  deletedRedirected: { id: 3016 },
} satisfies Record<string, Case>;

function metadataOf(c: Case): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`art-${c.id}`),
    veloxRef: ref(`art-v-${c.id}`),
    platform: c.platform ?? "linux/amd64",
    mode: c.mode ?? "all_native",
    workerVariant: c.variant,
  });
}
const tagOf = (c: Case): string => metadataOf(c)["Image tag"] ?? "";

async function listTree(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true })).map(String).sort();
  } catch {
    return [];
  }
}

describe.skipIf(gate.skip)(`download, prepare and clean on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let downloads: string;
  const sizes = new Map<number, number>();
  const cli = (args: string[]) =>
    runBinary([...args, "--log-format", "json"], { env: tb.env, cwd: work });
  const download = (c: Case, extra: string[] = []) =>
    cli([
      "download",
      tagOf(c),
      ...tb.githubArgs,
      "--output-dir",
      downloads,
      "--limit",
      "50",
      ...extra,
    ]);
  const prepare = (c: Case, extra: string[] = []) =>
    cli(["prepare", tagOf(c), "--downloads-dir", downloads, ...extra]);
  const tagDir = (c: Case) => path.join(downloads, tagOf(c));

  beforeAll(async () => {
    tb = await startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-art-"));
    downloads = path.join(work, "downloads");
    for (const c of Object.values(cases) as Case[]) {
      const metadata = metadataOf(c);
      const fixture = await makeArtifactZip({
        dir: path.join(work, "fixtures", String(c.id)),
        metadata,
        ...c.fixture,
      });
      await c.damageZip?.(fixture.zip);
      const size = (await stat(fixture.zip)).size;
      sizes.set(c.id, size);
      const digest = c.wrongDigest ? `sha256:${"0".repeat(64)}` : await sha256File(fixture.zip);
      tb.github.addRun(
        await makeFixtureRun({
          id: c.id,
          metadata,
          createdAt: new Date(Date.UTC(2025, 10, 1) + c.id * 60_000)
            .toISOString()
            .replace(".000Z", "Z"),
          artifacts: [
            {
              id: c.id * 10,
              name: `presto-images-${c.id}`,
              bytes: fixture.zip,
              digest,
              expired: c.expired,
            },
          ],
        }),
      );
    }
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("download → prepare of 3 real docker save tarballs (one OCI) writes the original's files", async () => {
    const c = cases.good;
    tb.github.resetRequests();
    const dl = await download(c);
    expect(dl.code, dl.stderr).toBe(0);
    expect(dl.stdout).toMatch(/^\[1\/5\] Locating workflow run for image tag/m);
    expect(dl.stdout).toContain("Download complete.");
    // The token went to the API only; the blob host would have refused it.
    const blob = tb.github.requests.filter(
      (r) => r.host === "blob" && r.path.includes("/artifacts/"),
    );
    expect(blob.length).toBeGreaterThan(0);
    expect(blob.every((r) => !r.authorization && r.status < 300)).toBe(true);

    const metadata = JSON.parse(
      await readFile(path.join(tagDir(c), "metadata.json"), "utf8"),
    ) as Record<string, unknown>;
    expect(metadata).toMatchObject({
      "Image tag": tagOf(c),
      "Target platform": "linux/amd64",
      run_id: c.id,
      repository: "rapidsai/velox-testing",
      artifact_name: `presto-images-${c.id}`,
      artifact_size_bytes: sizes.get(c.id),
      artifact_zip: `${tagOf(c)}.zip`,
    });
    expect(Object.keys(metadata)).toEqual([...Object.keys(metadata)].sort());

    const prep = await prepare(c);
    expect(prep.code, prep.stderr).toBe(0);
    expect(prep.stdout).toContain("Prepare complete.");
    const plan = JSON.parse(await readFile(path.join(tagDir(c), "upload-plan.json"), "utf8")) as {
      image_tag: string;
      platform: string;
      artifacts: Array<{ gitlab_tag: string; arch: string; repo: string; file: string }>;
    };
    const tag = tagOf(c).replace("-linux-amd64", "");
    expect(plan.image_tag).toBe(tagOf(c));
    expect(plan.platform).toBe("linux/amd64");
    expect(plan.artifacts).toEqual(
      ["presto-coordinator", "presto-native-worker-cpu", "presto-native-worker-gpu"].map(
        (repo) => ({
          gitlab_tag: `x86/${repo}:${tag}`,
          arch: "x86",
          repo,
          file: path.join(tagDir(c), "extracted", `${repo}-${tagOf(c)}.tar.gz`),
        }),
      ),
    );
    // A second prepare reuses the verified extraction; --clean extracts again.
    const again = await prepare(c);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already exists; verifying it before reuse/);
    expect((await prepare(c, ["--clean"])).code).toBe(0);
    // Without --force an existing download is refused, as the original does.
    expectOneLineError(await download(c), /already exists.*--force/);
  });

  it("a ZIP64 artifact (arm64, single worker) prepares the same way", async () => {
    const c = cases.zip64;
    expect((await download(c)).code).toBe(0);
    const prep = await prepare(c);
    expect(prep.code, prep.stderr).toBe(0);
    const plan = JSON.parse(await readFile(path.join(tagDir(c), "upload-plan.json"), "utf8")) as {
      artifacts: Array<{ gitlab_tag: string }>;
    };
    const tag = tagOf(c).replace("-linux-arm64", "");
    expect(plan.artifacts.map((a) => a.gitlab_tag)).toEqual([
      `arm/presto-coordinator:${tag}`,
      `arm/presto-native-worker-cpu:${tag}`,
    ]);
  });

  it("a transfer cut at half resumes and fetches only the rest", async () => {
    const c = cases.resume;
    const size = sizes.get(c.id) ?? 0;
    tb.github.resetRequests();
    tb.github.injectFault({
      match: `/artifacts/${c.id * 10}.zip`,
      host: "blob",
      cutAfterBytes: Math.floor(size / 2),
    });
    const dl = await download(c);
    expect(dl.code, dl.stderr).toBe(0);
    const transfers = tb.github.requests.filter(
      (r) => r.host === "blob" && r.path.includes(`/artifacts/${c.id * 10}.zip`),
    );
    expect(transfers).toHaveLength(2);
    // The resume asks for the rest only: from what reached the disk to the end, and gets exactly that.
    const start = Number(/^bytes=(\d+)-$/.exec(transfers[1]?.range ?? "")?.[1]);
    expect(start).toBeGreaterThan(0);
    expect(start).toBeLessThanOrEqual(Math.floor(size / 2));
    expect(transfers[1]?.bytesSent).toBe(size - start);
    expect(await sha256File(path.join(tagDir(c), `${tagOf(c)}.zip`))).toBe(
      await sha256File(path.join(work, "fixtures", String(c.id), "artifact.zip")),
    );
    expect(await listTree(tagDir(c))).not.toContain(`${tagOf(c)}.zip.part`);
  });

  it("an expired artifact is refused with the reason, leaving no tag directory", async () => {
    const c = cases.expired;
    expectOneLineError(
      await download(c),
      /artifact 'presto-images-3004' of run 3004 has expired.*re-run the build workflow/,
    );
    // Not even an empty directory named after the tag.
    expect(existsSync(tagDir(c))).toBe(false);
  });

  it.each([
    ["listed", cases.deletedListed],
    ["redirected", cases.deletedRedirected],
  ] as const)(
    "an artifact GitHub deletes after it was %s is told as gone, and leaves no .zip.part nor tag directory",
    async (when, c) => {
      tb.github.deleteArtifactAfter(c.id * 10, when);
      expectOneLineError(
        await download(c),
        new RegExp(`the artifact of run ${c.id} is gone; GitHub deleted or expired it`),
      );
      expect(existsSync(tagDir(c))).toBe(false);
    },
  );

  it("a digest mismatch leaves no zip behind, nor an empty tag directory", async () => {
    const c = cases.digest;
    expectOneLineError(await download(c), /digest mismatch/);
    // Not even an empty directory named after the tag.
    expect(existsSync(tagDir(c))).toBe(false);
  });

  const badPrepare: Array<[keyof typeof cases, RegExp]> = [
    ["wrongTag", /does not hold presto-native-worker-gpu:presto-.*RepoTags/],
    ["missing", /Missing expected tarballs: presto-native-worker-gpu-presto-/],
    ["zipSlip", /"\.\.\/\.\.\/x" would be written outside the extraction directory/],
    ["crc", /build-metadata\.txt.*(damaged|CRC)/],
    ["truncatedZip", /is not a complete zip/],
    ["notGzip", /presto-coordinator-presto-.*is not gzip/],
    ["cutGzip", /presto-native-worker-cpu-presto-.*cut short/],
  ];
  it.each(badPrepare)(
    "prepare refuses a bad artifact (%s) and leaves nothing that looks prepared",
    async (name, pattern) => {
      const c: Case = cases[name];
      const dl = await download(c);
      expect(dl.code, dl.stderr).toBe(0);
      expectOneLineError(await prepare(c), pattern);
      const left = await listTree(tagDir(c));
      expect(left).not.toContain("upload-plan.json");
      expect(left.filter((f) => f.startsWith("extracted"))).toEqual([]);
      expect(await listTree(path.join(work, "x"))).toEqual([]);
      expect(left.some((f) => f.includes(".tmp-"))).toBe(false);
    },
  );

  it("not enough disk space: refused before downloading", async (ctx) => {
    const small = path.join(work, "small-disk");
    await mkdir(small, { recursive: true });
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", small], { stdio: "ignore" });
    } catch {
      if (process.env.CI)
        throw new Error(
          "CI=true but a tmpfs cannot be mounted for the disk-space test (needs root)",
        );
      ctx.skip();
    }
    try {
      tb.github.resetRequests();
      const c = cases.space;
      const result = await cli([
        "download",
        tagOf(c),
        ...tb.githubArgs,
        "--output-dir",
        small,
        "--limit",
        "50",
      ]);
      expectOneLineError(result, /not enough disk space in .*small-disk.*needed.*free/);
      expect(
        tb.github.requests.filter((r) => r.host === "blob" && r.path.includes("/artifacts/")),
      ).toEqual([]);
      expect(await listTree(path.join(small, tagOf(c)))).toEqual([]);
    } finally {
      execFileSync("umount", [small]);
    }
  });

  it("accepts a download directory written by the original tool", async () => {
    const c = cases.legacy;
    const dir = tagDir(c);
    await mkdir(dir, { recursive: true });
    await cp(
      path.join(work, "fixtures", String(c.id), "artifact.zip"),
      path.join(dir, `${tagOf(c)}.zip`),
    );
    // The original's metadata.json: json.dump(indent=2, sort_keys=True), no _run_info.
    const original: Record<string, unknown> = {
      ...metadataOf(c),
      artifact_name: `presto-images-${c.id}`,
      artifact_size_bytes: sizes.get(c.id),
      artifact_zip: `${tagOf(c)}.zip`,
      repository: "rapidsai/velox-testing",
      run_id: c.id,
      run_name: "Build Presto images",
    };
    const sorted = Object.fromEntries(
      Object.keys(original)
        .sort()
        .map((k) => [k, original[k]]),
    );
    await writeFile(path.join(dir, "metadata.json"), JSON.stringify(sorted, null, 2));
    const prep = await prepare(c);
    expect(prep.code, prep.stderr).toBe(0);
    expect(prep.stdout).toContain(`Preparing artifacts from run ${c.id} (Build Presto images).`);
  });

  it("clean removes exactly the tag's files, and nothing outside the downloads directory", async () => {
    const c = cases.good;
    const outside = path.join(work, "outside");
    await mkdir(outside, { recursive: true });
    await writeFile(path.join(outside, "precious.txt"), "keep me");
    // Hostile metadata: a run id that is a path, a link out of the tag directory.
    const meta = JSON.parse(
      await readFile(path.join(tagDir(c), "metadata.json"), "utf8"),
    ) as Record<string, unknown>;
    await writeFile(
      path.join(tagDir(c), "metadata.json"),
      JSON.stringify({ ...meta, run_id: "../outside" }),
    );
    await symlink(outside, path.join(tagDir(c), "link-out"));
    const other = tagDir(cases.zip64);

    // No terminal to ask on (stdin is a pipe): a failure that removes nothing, not a quiet "no".
    const asked = await runBinary(["clean", tagOf(c), "--downloads-dir", downloads], {
      env: tb.env,
      cwd: work,
      input: "n\n",
    });
    expectOneLineError(asked, /no terminal to confirm on; pass --yes/);
    expect(await listTree(tagDir(c))).toContain("metadata.json");

    const result = await cli(["clean", tagOf(c), "--downloads-dir", downloads, "--yes"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`  - ${tagDir(c)}/ (download + prepared data)`);
    expect(await listTree(tagDir(c))).toEqual([]);
    expect(await readFile(path.join(outside, "precious.txt"), "utf8")).toBe("keep me");
    expect(await listTree(other)).toContain("upload-plan.json");

    // The original's legacy layout for a run: <downloads>/<run_id>/ and presto-images-<run_id>.zip.
    const c2 = cases.zip64;
    await mkdir(path.join(downloads, String(c2.id)), { recursive: true });
    await writeFile(path.join(downloads, `presto-images-${c2.id}.zip`), "old");
    const second = await cli(["clean", tagOf(c2), "--downloads-dir", downloads, "--yes"]);
    expect(second.code).toBe(0);
    expect(await listTree(downloads)).not.toContain(String(c2.id));
    expect(await listTree(downloads)).not.toContain(`presto-images-${c2.id}.zip`);
  });

  it("a partial download left behind is resumed without --force", async () => {
    const c = cases.zip64;
    const source = path.join(work, "fixtures", String(c.id), "artifact.zip");
    await mkdir(tagDir(c), { recursive: true });
    const part = path.join(tagDir(c), `${tagOf(c)}.zip.part`);
    await cp(source, part);
    await truncate(part, Math.floor((sizes.get(c.id) ?? 0) / 3));
    tb.github.resetRequests();
    const dl = await download(c);
    expect(dl.code, dl.stderr).toBe(0);
    const transfer = tb.github.requests.find(
      (r) => r.host === "blob" && r.path.includes("/artifacts/"),
    );
    expect(transfer?.range).toMatch(/^bytes=\d+-$/);
    expect(await sha256File(path.join(tagDir(c), `${tagOf(c)}.zip`))).toBe(
      await sha256File(source),
    );
  });
});
