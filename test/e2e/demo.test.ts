/**
 * The README's first command, `npm run demo`, as a test: the demo script (test/testbed/demo.ts)
 * runs the main job — `daemon --once`, streaming, with the docker engine when a dockerd can run
 * here — and must end with every image in the registry. The streaming docker engine once hung
 * here (its `docker load` lost the end of each tarball) while the narrower e2e tests passed.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { testbedGate } from "../testbed/index.js";

const gate = testbedGate();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

describe.skipIf(gate.skip)(`npm run demo ${gate.reason}`, () => {
  it("runs the main job to the end: every image in the registry, nothing missing after", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/testbed/demo.ts"], {
      cwd: root,
      // tsx would keep its compile cache in /tmp/tsx-<uid>; the suite leaves nothing in /tmp.
      env: { ...process.env, FORCE_COLOR: "0", TSX_DISABLE_CACHE: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    // A hang is a failure with the output so far, not a test runner's timeout without it.
    const timer = setTimeout(() => child.kill("SIGTERM"), 150_000);
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    clearTimeout(timer);
    expect(output, output).toContain("Demo complete: every image is in the registry.");
    expect(code).toBe(0);
    expect(output).toContain("No missing GitLab images.");
    expect(output).toMatch(/cycle 1 ok: 3 runs, 2 missing, 5 tags pushed, 0 failed/);
  }, 180_000);
});
