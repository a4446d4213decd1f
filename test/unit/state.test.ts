import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/report/logger.js";
import { MetadataCache } from "../../src/workspace/state.js";
import { capturingLogger } from "./helpers.js";

const METADATA = {
  "Image tag": "presto-a-velox-b-linux-amd64",
  "Presto ref": "a",
  "Velox ref": "b",
};

let stateDir: string;

beforeEach(async () => {
  stateDir = await mkdtemp(path.join(os.tmpdir(), "gh-state-test-"));
});

afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

describe("MetadataCache", () => {
  it("stores one JSON file per run and reads it back", async () => {
    const cache = new MetadataCache(stateDir, silentLogger());
    expect(await cache.get({ id: 42, run_attempt: 1 })).toBeUndefined();
    await cache.put({ id: 42, run_attempt: 1 }, { metadata: METADATA, source: "job-log" });
    const entry = await cache.get({ id: 42, run_attempt: 1 });
    expect(entry).toMatchObject({
      run_id: 42,
      run_attempt: 1,
      metadata: METADATA,
      source: "job-log",
    });
    expect(Date.parse(entry?.cached_at ?? "")).not.toBeNaN();
    const onDisk = JSON.parse(
      await readFile(path.join(stateDir, "runs", "42.json"), "utf8"),
    ) as unknown;
    expect(onDisk).toMatchObject({ run_id: 42, metadata: METADATA });
  });

  it("keeps a negative result (logs without a block)", async () => {
    const cache = new MetadataCache(stateDir, silentLogger());
    await cache.put({ id: 7 }, { metadata: null, source: null });
    expect(await cache.get({ id: 7 })).toMatchObject({
      run_id: 7,
      run_attempt: 1,
      metadata: null,
      source: null,
    });
  });

  it("ignores an entry of another attempt of the run", async () => {
    const cache = new MetadataCache(stateDir, silentLogger());
    await cache.put({ id: 9, run_attempt: 1 }, { metadata: METADATA, source: "run-log-step" });
    expect(await cache.get({ id: 9, run_attempt: 2 })).toBeUndefined();
    expect(await cache.get({ id: 9 })).toBeDefined();
  });

  it("treats a corrupt or foreign file as a miss and overwrites it", async () => {
    const { logger, lines } = capturingLogger();
    const cache = new MetadataCache(stateDir, logger);
    await mkdir(path.join(stateDir, "runs"), { recursive: true });
    const file = path.join(stateDir, "runs", "5.json");
    for (const junk of [
      "{not json",
      JSON.stringify({ run_id: "5" }),
      JSON.stringify({ run_id: 6, run_attempt: 1, metadata: null, source: null, cached_at: "x" }),
    ]) {
      await writeFile(file, junk);
      expect(await cache.get({ id: 5 })).toBeUndefined();
    }
    // A damaged file is worth a warning; an entry of another run is only a miss.
    const warnings = lines.map((line) => JSON.parse(line) as { level: number; msg: string });
    expect(warnings.map((w) => w.level)).toEqual([40, 40]);
    expect(warnings[0]?.msg).toBe(`ignoring metadata cache entry: ${file} is not valid JSON`);
    expect(warnings[1]?.msg).toContain(
      `ignoring metadata cache entry: ${file} has a bad value at run_id`,
    );
    await cache.put({ id: 5 }, { metadata: METADATA, source: "run-log-job" });
    expect((await cache.get({ id: 5 }))?.metadata).toEqual(METADATA);
  });

  it("leaves no temporary files behind, also with concurrent writes", async () => {
    const cache = new MetadataCache(stateDir, silentLogger());
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        cache.put({ id: i % 4 }, { metadata: { "Image tag": `t${i}` }, source: "job-log" }),
      ),
    );
    expect((await readdir(path.join(stateDir, "runs"))).sort()).toEqual([
      "0.json",
      "1.json",
      "2.json",
      "3.json",
    ]);
    expect((await cache.get({ id: 3 }))?.metadata?.["Image tag"]).toMatch(/^t\d+$/);
  });

  it("drops unknown metadata keys instead of failing", async () => {
    const cache = new MetadataCache(stateDir, silentLogger());
    await mkdir(path.join(stateDir, "runs"), { recursive: true });
    await writeFile(
      path.join(stateDir, "runs", "11.json"),
      JSON.stringify({
        run_id: 11,
        run_attempt: 1,
        metadata: { "Image tag": "t", "Future key": "x" },
        source: "job-log",
        cached_at: "2025-10-01T00:00:00Z",
      }),
    );
    expect((await cache.get({ id: 11 }))?.metadata).toEqual({ "Image tag": "t" });
  });
});
