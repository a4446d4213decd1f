/**
 * `--help` as a person reads it in an 80-column terminal: every subcommand's page fits in 50
 * lines, none wider than 80; the flags many subcommands share are named once under their own
 * heading and described by `help flags`; a boolean flag does not say `(default: false)`.
 */
import { describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli.js";
import { runBinary } from "./run-cli.js";

const names = buildProgram(
  { env: {}, stdout: process.stdout, stderr: process.stderr, signal: new AbortController().signal },
  () => undefined,
)
  .commands.filter((cmd) => !(cmd as unknown as { _hidden: boolean })._hidden)
  .map((cmd) => cmd.name());

async function help(args: string[]): Promise<string[]> {
  const result = await runBinary(args, { env: { COLUMNS: "80" } });
  expect(result.code, result.stderr).toBe(0);
  return result.stdout.replace(/\n+$/, "").split("\n");
}

describe("--help at 80 columns", () => {
  it("knows every subcommand", () => {
    expect(names).toEqual(
      expect.arrayContaining(["xref", "download", "push", "sync", "daemon", "status", "retag"]),
    );
  });

  it.each(names)("%s --help: at most 50 lines, none wider than 80", async (name) => {
    const lines = await help([name, "--help"]);
    expect(lines.length, lines.join("\n")).toBeLessThanOrEqual(50);
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(lines.join("\n")).not.toContain("(default: false)");
  });

  it("daemon --help names the shared flags once, under their heading, and points at help flags", async () => {
    const text = (await help(["daemon", "--help"])).join("\n");
    expect(text).toMatch(/^Shared options \(gh-gitlab-sync help flags\):$/m);
    expect(text.match(/--registry-password/g)).toHaveLength(1);
    expect(text).not.toContain("GITLAB_REGISTRY_PASSWORD");
  });

  it("a mistyped shared flag still gets its suggestion", async () => {
    const result = await runBinary(["daemon", "--gitlab-hots", "x"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("(Did you mean --gitlab-host?)");
  });

  it("help flags describes each shared flag, by group, within 80 columns", async () => {
    const lines = await help(["help", "flags"]);
    const text = lines.join("\n");
    for (const heading of ["GitHub:", "GitLab:", "Registry:", "Workspace:", "Network:"]) {
      expect(text).toMatch(new RegExp(`^${heading}$`, "m"));
    }
    expect(text).toContain("GITLAB_REGISTRY_PASSWORD");
    expect(text).toContain("--http-timeout <seconds>");
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(80);
  });

  it("the top-level --help fits too", async () => {
    const lines = await help(["--help"]);
    expect(lines.length, lines.join("\n")).toBeLessThanOrEqual(50);
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(80);
  });
});
