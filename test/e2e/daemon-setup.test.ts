/**
 * A mistake in the setup is not the image's fault: no Docker engine where `--engine docker`
 * looks, a registry password that is wrong. The cycle ends with one line saying what to fix
 * and holds no image back, so once the setup is fixed the next run works at once, without
 * `--retry-now`. And a run that did skip images for their back-off names `--retry-now`.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedImages } from "../../src/domain/images.js";
import { addMissingBuild, singleBuild } from "../testbed/demo-data.js";
import { daemonArgs, startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { freePort } from "../testbed/registry.js";
import { metadataOf } from "../testbed/scenario.js";
import { gitlabTags } from "./checks.js";
import { plainStderrLines, runBinary, startBinary } from "./run-cli.js";

const gate = testbedGate();

describe.skipIf(gate.skip)(`a setup mistake, then its fix ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;
  let downloads: string;
  const failuresFile = () => path.join(downloads, ".state", "failures.json");
  const failures = async (): Promise<Record<string, unknown>> =>
    existsSync(failuresFile())
      ? (JSON.parse(await readFile(failuresFile(), "utf8")) as Record<string, unknown>)
      : {};
  const once = (extra: string[], env: Record<string, string> = {}) =>
    runBinary(daemonArgs(tb, downloads, ["--once", ...extra]), {
      env: { ...tb.env, ...env },
      cwd: work,
      timeoutMs: 240_000,
    });
  const errorLines = (stderr: string) =>
    plainStderrLines(stderr).filter((line) => line.startsWith("Error: "));
  const pushedAll = async (id: number) => {
    const present = await gitlabTags(tb);
    return expectedImages(metadataOf(singleBuild(id, `setup-${id}`), 0)).every((image) =>
      present.has(image.gitlabTag),
    );
  };

  beforeAll(async () => {
    tb = await startTestbed();
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-setup-"));
    downloads = path.join(work, "downloads");
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("no Docker engine: one line naming the engine, no back-off; --engine registry then works at once", async () => {
    await addMissingBuild(tb, singleBuild(7501, "setup-7501"), 0);
    const socket = path.join(work, "no-dockerd.sock");
    const failed = await once(["--engine", "docker"], { DOCKER_HOST: `unix://${socket}` });
    expect(failed.code, failed.stderr).toBe(1);
    const errors = errorLines(failed.stderr);
    expect(errors, failed.stderr).toHaveLength(1);
    expect(errors[0]).toMatch(
      /Docker engine not reachable at .*no-dockerd\.sock.* — .*--engine registry/,
    );
    expect(await failures()).toEqual({});

    const fixed = await once([]);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(await pushedAll(7501)).toBe(true);
  });

  it("registry credentials refused: one line naming them, no back-off; the right password then works at once", async () => {
    await addMissingBuild(tb, singleBuild(7502, "setup-7502"), 1);
    const failed = await once(["--registry-password", "not-the-password"]);
    expect(failed.code, failed.stderr).toBe(1);
    const errors = errorLines(failed.stderr);
    expect(errors, failed.stderr).toHaveLength(1);
    expect(errors[0]).toMatch(/refused the credentials .*--registry-password/);
    expect(await failures()).toEqual({});

    const fixed = await once([]);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(await pushedAll(7502)).toBe(true);
  });

  it("/metrics: downloaded_bytes_total moves during a download, missing_images is 0 once pushed", async () => {
    await addMissingBuild(tb, singleBuild(7504, "setup-7504"), 3, { layerBytes: 3 << 20 });
    tb.github.injectFault({
      match: "/artifacts/",
      host: "blob",
      bytesPerSecond: 512 * 1024,
      times: Infinity,
    });
    const port = await freePort();
    const daemon = startBinary(
      daemonArgs(tb, downloads, ["--interval", "3600", "--health-port", String(port)]),
      { env: tb.env, cwd: work, timeoutMs: 240_000 },
    );
    const metric = async (name: string) => {
      const text = await fetch(`http://127.0.0.1:${port}/metrics`)
        .then((r) => r.text())
        .catch(() => "");
      const value = new RegExp(`^gh_gitlab_sync_${name} (\\d+)$`, "m").exec(text)?.[1];
      return value === undefined ? undefined : Number(value);
    };
    try {
      let during: number | undefined;
      for (let waited = 0; waited < 60_000; waited += 100) {
        if (daemon.output().stderr.includes('"summary"')) break;
        const bytes = await metric("downloaded_bytes_total");
        if (bytes !== undefined && bytes > 0) {
          during = bytes;
          break;
        }
        await sleep(100);
      }
      // Counted while the cycle still ran, before its summary.
      expect(during, daemon.output().stderr).toBeGreaterThan(0);
      expect(daemon.output().stderr).not.toContain('"summary"');
      tb.github.clearFaults();
      while (!daemon.output().stderr.includes('"summary"')) {
        if (daemon.child.exitCode !== null) break;
        await sleep(100);
      }
      expect(await metric("missing_images")).toBe(0);
      expect(await pushedAll(7504)).toBe(true);
    } finally {
      tb.github.clearFaults();
      daemon.child.kill("SIGTERM");
      await daemon.result;
    }
  });

  it("an image skipped for its back-off: the closing line names --retry-now", async () => {
    await addMissingBuild(tb, singleBuild(7503, "setup-7503"), 2);
    const tag = metadataOf(singleBuild(7503, "setup-7503"), 2)["Image tag"] ?? "";
    // As a damaged artifact would have left it: failed once, next try in an hour.
    const next = new Date(Date.now() + 3_600_000).toISOString();
    await mkdir(path.dirname(failuresFile()), { recursive: true });
    const entry = {
      attempts: 1,
      last_error: "damaged",
      last_attempt: new Date().toISOString(),
      next_retry: next,
    };
    await writeFile(failuresFile(), JSON.stringify({ [tag]: entry }));
    const skipped = await once([]);
    expect(skipped.code, skipped.stderr).toBe(1);
    const errors = errorLines(skipped.stderr);
    expect(errors, skipped.stderr).toHaveLength(1);
    expect(errors[0]).toContain("--retry-now");
  });
});
