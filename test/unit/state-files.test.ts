import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { StepReporter } from "../../src/domain/events.js";
import { silentLogger } from "../../src/report/logger.js";
import { prepareImageTag } from "../../src/sync/prepare.js";
import { pushImageTag, type PushServices } from "../../src/sync/push.js";
import { FailureState } from "../../src/workspace/failures.js";
import { IMAGE_INFO_FILE, loadImageInfo } from "../../src/workspace/image-info.js";
import { acquireWorkspaceLock, LOCK_FILE } from "../../src/workspace/lock.js";
import { capturingLogger, failure, tempDir } from "./helpers.js";

/**
 * Every file the tool reads back from disk goes through a schema: a bad field in a file the
 * operator's pipeline depends on is one line naming the file and the field; in a cache or a
 * record of earlier work it is a warning, and the file is written afresh. Never a crash.
 */
const TAG = "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64";
const quiet: StepReporter = {
  step: () => undefined,
  detail: () => undefined,
  warn: () => undefined,
  text: () => undefined,
  status: () => undefined,
  rule: () => undefined,
};
const ctx = () => ({ logger: silentLogger(), signal: new AbortController().signal });

async function tagDir(): Promise<{ downloads: string; dir: string }> {
  const downloads = await tempDir("state-files-");
  const dir = path.join(downloads, TAG);
  await mkdir(dir, { recursive: true });
  return { downloads, dir };
}

describe("state files with a bad field", () => {
  it("metadata.json: a flag that is not text is named, with the file", async () => {
    const { downloads, dir } = await tagDir();
    const file = path.join(dir, "metadata.json");
    await writeFile(
      file,
      JSON.stringify({
        "Image tag": TAG,
        "Target platform": "linux/amd64",
        "Build native CPU": true,
      }),
    );
    const err = await failure(
      prepareImageTag(ctx(), quiet, { imageTag: TAG, downloadsDir: downloads, clean: false }),
    );
    expect(err.message).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} has a bad value at Build native CPU \\(`,
      ),
    );
    expect(err.hint).toBe("run download again for this tag");
  });

  it("upload-plan.json: a bad field is named before anything is pushed", async () => {
    const { downloads, dir } = await tagDir();
    const file = path.join(dir, "upload-plan.json");
    await writeFile(
      file,
      JSON.stringify({
        image_tag: TAG,
        artifacts: [{ gitlab_tag: "x86/presto-coordinator:t", arch: "x86", repo: "r", file: 5 }],
      }),
    );
    // Nothing beyond the plan may be touched: any use of a service fails the test.
    const untouchable = new Proxy({} as PushServices, {
      get: () => {
        throw new Error("a service was used");
      },
    });
    const err = await failure(
      pushImageTag(ctx(), quiet, untouchable, {
        imageTag: TAG,
        downloadsDir: downloads,
        registry: "127.0.0.1:5000",
        registryProject: "hercules/veloxtesting",
        username: "u",
        force: false,
        skipLogin: true,
        retagAsLatest: false,
      }),
    );
    expect(err.message).toContain(`${file} has a bad value at artifacts.0.file`);
  });

  it("failures.json: a damaged record is a warning and is written afresh, once", async () => {
    const stateDir = await tempDir("state-files-");
    const file = path.join(stateDir, "failures.json");
    await writeFile(file, JSON.stringify({ [TAG]: { attempts: "three" } }));
    const { logger, lines } = capturingLogger();
    const state = new FailureState(stateDir, { baseSeconds: 60, maxSeconds: 600 }, logger);
    expect(await state.waiting(TAG)).toBeUndefined();
    expect(await state.waiting(TAG)).toBeUndefined();
    const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toContain(`${file} has a bad value at ${TAG}.attempts`);
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({});
  });

  it(".image-info.json: a damaged record is a warning, and the tarballs are read again", async () => {
    const { dir } = await tagDir();
    await writeFile(path.join(dir, IMAGE_INFO_FILE), JSON.stringify({ t: { file: 1 } }));
    const { logger, lines } = capturingLogger();
    expect((await loadImageInfo(dir, logger)).size).toBe(0);
    expect(lines.join("\n")).toContain(`${IMAGE_INFO_FILE} has a bad value at t.file`);
  });

  it("the lock: a file that is not a lock of ours is taken over, not trusted or crashed on", async () => {
    const downloads = await tempDir("state-files-");
    await writeFile(
      path.join(downloads, LOCK_FILE),
      JSON.stringify({ pid: "1", hostname: os.hostname(), command: "daemon" }),
    );
    const lock = await acquireWorkspaceLock(downloads, "push t");
    expect(JSON.parse(await readFile(lock.path, "utf8"))).toMatchObject({
      pid: process.pid,
      command: "push t",
    });
    await lock.release();
  });
});
