/**
 * `--log-format json` is what a log pipeline reads (`journalctl -o cat | jq`): every line on
 * stderr must parse as one pino-shaped record, the closing error, the interrupt line and what a
 * library prints (here Node's own warning about NODE_TLS_REJECT_UNAUTHORIZED) included.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { daemonArgs, startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { runBinary, startBinary } from "./run-cli.js";

const gate = testbedGate();

/** Every stderr line as a record; a line that is not one JSON object fails the test, quoting it. */
function everyLineJson(stderr: string): Array<Record<string, unknown>> {
  const lines = stderr.split("\n").filter((line) => line !== "");
  return lines.map((line) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new Error(`not a JSON line on stderr: ${line}`);
    }
    expect(parsed, line).toBeTypeOf("object");
    const record = parsed as Record<string, unknown>;
    expect(record.level, line).toBeTypeOf("number");
    expect(record.time, line).toBeTypeOf("number");
    expect(record.msg, line).toBeTypeOf("string");
    return record;
  });
}

describe.skipIf(gate.skip)(`--log-format json on the testbed ${gate.reason}`, () => {
  let tb: Testbed;
  let work: string;

  beforeAll(async () => {
    // TLS, so that Node itself prints a warning when told not to check certificates.
    tb = await startTestbed({ tls: true });
    work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-jsonlog-"));
  });
  afterAll(async () => {
    await tb?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("a failing daemon --once: the warning, the records and the closing error all parse", async () => {
    const result = await runBinary(
      daemonArgs(tb, path.join(work, "downloads"), ["--once", "--gitlab-token", "glpat-wrong"]),
      { env: { ...tb.env, NODE_TLS_REJECT_UNAUTHORIZED: "0" }, cwd: work },
    );
    expect(result.code, result.stderr).toBe(1);
    const records = everyLineJson(result.stderr);
    // Node's warning arrived as a record of its own, not as a bare line.
    expect(records.some((r) => String(r.msg).includes("NODE_TLS_REJECT_UNAUTHORIZED"))).toBe(true);
    const last = records.at(-1);
    expect(last).toMatchObject({ level: 50, exitCode: 1 });
    expect(String(last?.msg)).toMatch(/^daemon --once: cycle failed: .*GitLab/);
    expect(result.stdout).toBe("");
  });

  it("a daemon stopped by SIGTERM: the interrupt line is a record too", async () => {
    const daemon = startBinary(
      daemonArgs(tb, path.join(work, "downloads"), ["--interval", "3600"]),
      { env: tb.env, cwd: work },
    );
    try {
      while (!daemon.output().stderr.includes('"summary"')) {
        if (daemon.child.exitCode !== null) break;
        await sleep(50);
      }
      daemon.child.kill("SIGTERM");
      const result = await daemon.result;
      expect(result.code, result.stderr).toBe(0);
      const records = everyLineJson(result.stderr);
      expect(records.at(-1)).toMatchObject({
        msg: "Interrupted by SIGTERM; daemon stopped",
        signal: "SIGTERM",
        exitCode: 0,
      });
      expect(result.stdout).toBe("");
    } finally {
      daemon.child.kill("SIGKILL");
    }
  });
});
