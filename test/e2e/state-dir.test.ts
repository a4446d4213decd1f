import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LOCK_FILE } from "../../src/workspace/lock.js";
import { addArtifactRun } from "../testbed/artifacts.js";
import { daemonArgs, startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { makeMetadata } from "../testbed/run-fixtures.js";
import { ref } from "../testbed/scenario.js";
import { plainStderrLines, runBinary, startBinary } from "./run-cli.js";

/**
 * The disk under the downloads or state directory failing mid-cycle: a real tmpfs (as root;
 * elsewhere skipped with the reason) remounted read-only while the daemon downloads. Only a
 * real file system shows the real errno paths.
 */
const testbed = testbedGate();
const gate =
  process.getuid?.() !== 0
    ? { skip: true, reason: "(needs root to mount a tmpfs)" }
    : { skip: testbed.skip, reason: testbed.reason };

describe.skipIf(gate.skip)(
  `a downloads or state directory failing mid-cycle ${gate.reason}`,
  () => {
    let tb: Testbed;
    let work: string;
    let disk: string;
    let mounted = false;

    const mount = () => {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=96m", "tmpfs", disk]);
      mounted = true;
    };
    /** `mount -o remount,ro`, tried again while a file open for writing makes it busy. */
    const remountReadOnly = async () => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          execFileSync("mount", ["-o", "remount,ro", disk], { stdio: "ignore" });
          return;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await sleep(5);
        }
      }
    };
    const unmount = () => {
      if (!mounted) return;
      execFileSync("umount", [disk]);
      mounted = false;
    };

    beforeAll(async () => {
      tb = await startTestbed();
      work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-state-dir-"));
      disk = path.join(work, "disk");
      await mkdir(disk);
    });
    afterEach(() => {
      tb.github.clearFaults();
      unmount();
    });
    afterAll(async () => {
      unmount();
      await tb?.stop();
      if (work) await rm(work, { recursive: true, force: true });
    });

    /** A daemon cycle with a directory on the tmpfs, which `breakDisk` spoils while the artifact downloads. */
    async function cycleTurnedReadOnly(
      id: number,
      layout: { downloads: string; state?: string },
      breakDisk: () => Promise<void> = remountReadOnly,
    ) {
      const metadata = makeMetadata({
        prestoRef: ref(`state-dir-${id}`),
        veloxRef: ref(`state-dir-v-${id}`),
        platform: "linux/amd64",
        mode: "single",
        workerVariant: "java",
      });
      await addArtifactRun(tb.github, {
        id,
        metadata,
        dir: path.join(work, "fixtures", String(id)),
        createdAt: new Date(Date.UTC(2025, 10, 9) + id * 60_000)
          .toISOString()
          .replace(".000Z", "Z"),
        fixture: { layerBytes: 3 << 20 },
      });
      // Slow enough that the file system turns read-only while the artifact is on its way.
      tb.github.resetRequests();
      tb.github.injectFault({
        match: "/artifacts/",
        host: "blob",
        bytesPerSecond: 512 * 1024,
        times: Infinity,
      });
      const daemon = startBinary(
        daemonArgs(tb, layout.downloads, [
          "--once",
          "--limit",
          "50",
          ...(layout.state ? ["--state-dir", layout.state] : []),
        ]),
        { env: tb.env, cwd: work, timeoutMs: 120_000 },
      );
      try {
        const deadline = Date.now() + 60_000;
        while (
          !tb.github.requests.some(
            (r) => r.host === "blob" && r.path.includes("/artifacts/") && r.bytesSent > 600_000,
          )
        ) {
          if (Date.now() > deadline)
            throw new Error(`the download never started: ${daemon.output().stderr}`);
          await sleep(50);
        }
        await breakDisk();
        const result = await daemon.result;
        return { result, imageTag: metadata["Image tag"] ?? "" };
      } finally {
        daemon.child.kill("SIGKILL");
      }
    }

    /** Every file under `dir`, relative. */
    const tree = async (dir: string) =>
      (await readdir(dir, { recursive: true })).map(String).sort();

    it("the state directory turns read-only mid-cycle: one line naming the file and the operation, nothing half-written, the lock left clearly stale; writable again, the next run syncs", async () => {
      mount();
      const state = path.join(disk, "state");
      const downloads = path.join(work, "downloads");
      const { result, imageTag } = await cycleTurnedReadOnly(6101, { downloads, state });
      try {
        expect(result.code).toBe(1);
        const errors = plainStderrLines(result.stderr).filter((l) => l.startsWith("Error: "));
        expect(errors).toEqual([
          expect.stringMatching(
            new RegExp(
              `^Error: daemon --once: cycle failed: EROFS writing ${state}/[a-z-]+\\.json: the file system is read-only — make ${state} writable`,
            ),
          ),
        ]);
        // Not blamed on the tarballs, nor the image: nothing of it is recorded as failing.
        expect(result.stderr).not.toMatch(/is not pushed|unexpected failure|Premature close/);
        for (const dir of [state, downloads]) {
          expect((await tree(dir)).filter((f) => f.includes(".tmp-"))).toEqual([]);
        }
        expect(existsSync(path.join(state, "failures.json"))).toBe(false);
        // The lock could not be removed: it names a process that has ended, which `status` tells
        // and the next run takes over.
        const lock = JSON.parse(await readFile(path.join(state, LOCK_FILE), "utf8")) as {
          pid: number;
        };
        expect(() => process.kill(lock.pid, 0)).toThrow();
        expect(existsSync(path.join(downloads, LOCK_FILE))).toBe(false);

        execFileSync("mount", ["-o", "remount,rw", disk]);
        const again = await runBinary(
          daemonArgs(tb, downloads, ["--once", "--limit", "50", "--state-dir", state]),
          { env: tb.env, cwd: work, timeoutMs: 120_000 },
        );
        expect(again.code, again.stderr).toBe(0);
        expect(again.stderr).toContain(`"missing":["${imageTag}"]`);
      } finally {
        tb.github.removeRun(6101);
      }
    }, 180_000);

    it("the state directory fills up mid-cycle: one line naming the file and the operation, no temporary file left, the lock released", async () => {
      mount();
      const state = path.join(disk, "state");
      const downloads = path.join(work, "downloads-full");
      const fill = async () => {
        const filler = await open(path.join(disk, "filler"), "w");
        try {
          for (;;) await filler.write(Buffer.alloc(64 << 10));
        } catch {
          // Full.
        } finally {
          await filler.close();
        }
      };
      try {
        const { result } = await cycleTurnedReadOnly(6102, { downloads, state }, fill);
        expect(result.code).toBe(1);
        const errors = plainStderrLines(result.stderr).filter((l) => l.startsWith("Error: "));
        expect(errors).toEqual([
          expect.stringMatching(
            new RegExp(
              `^Error: daemon --once: cycle failed: ENOSPC writing ${state}/[a-z-]+\\.json: no space left on the disk \\([0-9.]+ [KM]?i?B needed\\) — free disk space under ${state} `,
            ),
          ),
        ]);
        expect(result.stderr).not.toMatch(/is not pushed|unexpected failure|Premature close/);
        expect((await tree(state)).filter((f) => f.includes(".tmp-"))).toEqual([]);
        expect(existsSync(path.join(state, "failures.json"))).toBe(false);
        for (const dir of [state, downloads])
          expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
      } finally {
        tb.github.removeRun(6102);
      }
    }, 180_000);

    it("the downloads directory turns read-only while a cut download waits to resume: one line naming the part file, the lock left clearly stale", async () => {
      mount();
      const downloads = path.join(disk, "downloads");
      const cutAt = 1 << 20;
      // The first transfer is cut; while the download waits to resume (its file closed), the
      // file system turns read-only under it.
      tb.github.injectFault({ match: "/artifacts/", host: "blob", cutAfterBytes: cutAt });
      const readOnlyOnceCut = async () => {
        const deadline = Date.now() + 30_000;
        while (!tb.github.requests.some((r) => r.host === "blob" && r.bytesSent >= cutAt)) {
          if (Date.now() > deadline) throw new Error("the transfer was never cut");
          await sleep(20);
        }
        // The part file is closed a moment after the cut; until then the remount is refused.
        await remountReadOnly();
      };
      try {
        const { result, imageTag } = await cycleTurnedReadOnly(
          6103,
          // The state elsewhere: nothing but the download writes on this disk.
          { downloads, state: path.join(work, "state-6103") },
          readOnlyOnceCut,
        );
        expect(result.code).toBe(1);
        const part = `${downloads}/${imageTag}/${imageTag}.zip.part`;
        const errors = plainStderrLines(result.stderr).filter((l) => l.startsWith("Error: "));
        expect(errors).toEqual([
          `Error: daemon --once: cycle failed: EROFS writing ${part}: the file system is read-only — make ${downloads}/${imageTag} writable (or point --state-dir/--downloads-dir elsewhere) and run again`,
        ]);
        expect(result.stderr).not.toMatch(/is not pushed|unexpected failure|Premature close/);
        // What came before the cut is kept for the resume; nothing else of the image is there.
        expect(await tree(path.join(downloads, imageTag))).toEqual([`${imageTag}.zip.part`]);
        expect((await tree(downloads)).filter((f) => f.includes(".tmp-"))).toEqual([]);
        const lock = JSON.parse(await readFile(path.join(downloads, LOCK_FILE), "utf8")) as {
          pid: number;
        };
        expect(() => process.kill(lock.pid, 0)).toThrow();
      } finally {
        tb.github.removeRun(6103);
      }
    }, 180_000);
  },
);
