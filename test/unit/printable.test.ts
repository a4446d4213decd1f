import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { runCli } from "../../src/cli.js";
import { createLogger } from "../../src/report/logger.js";
import { createOutput } from "../../src/report/output.js";

/** What a terminal would obey: OSC (retitle), CSI (clear, move), NUL, a bare CR, a C1 CSI. */
const HOSTILE = "a\u001b]0;pwned\u0007b\u001b[2Jc\u0000d\re\u009bf";
// eslint-disable-next-line no-control-regex -- no raw control character may be written
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

function sink(): { stream: Writable & { isTTY?: boolean }; text: () => string } {
  let text = "";
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  return { stream, text: () => text };
}

describe("printable output (issue 13)", () => {
  it("escapes control characters in stdout lines, keeping the lines themselves", () => {
    const out = sink();
    createOutput(out.stream).line(`Image tag: ${HOSTILE}\n  next line\ttabbed`);
    expect(out.text()).toBe(
      "Image tag: a\\x1b]0;pwned\\x07b\\x1b[2Jc\\x00d\\x0de\\x9bf\n  next line\ttabbed\n",
    );
  });

  it("keeps --json valid JSON with DEL and C1 controls escaped too", () => {
    const out = sink();
    createOutput(out.stream).json({ title: HOSTILE });
    expect(out.text()).not.toMatch(RAW);
    expect(JSON.parse(out.text())).toEqual({ title: HOSTILE });
  });

  it("escapes log messages whatever the format", () => {
    const lines: string[] = [];
    const logger = createLogger({ destination: { write: (l: string) => void lines.push(l) } });
    logger.warn({ runId: 1 }, `run title ${HOSTILE}`);
    const record = JSON.parse(lines[0] ?? "{}") as { msg: string };
    expect(record.msg).toBe("run title a\\x1b]0;pwned\\x07b\\x1b[2Jc\\x00d\\x0de\\x9bf");
  });

  it("prints the final error line printable", async () => {
    const stdout = sink();
    const stderr = sink();
    const code = await runCli(
      [
        "node",
        "gh-gitlab-sync",
        "prepare",
        "tag",
        "--downloads-dir",
        "/dev/null/no\u001b]0;pwned\u0007/dir",
      ],
      {
        env: {},
        stdout: stdout.stream,
        stderr: stderr.stream,
        signal: new AbortController().signal,
      },
    );
    expect(code).not.toBe(0);
    expect(stderr.text()).toMatch(/^Error: /);
    expect(stderr.text()).toContain("\\x1b]0;pwned\\x07");
    expect(stderr.text().replace(/\n$/, "")).not.toMatch(RAW);
  });
});
