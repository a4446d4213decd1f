import { expect } from "vitest";
import type { Testbed } from "../testbed/index.js";
import { plainStderrLines, runBinary, type CliResult } from "./run-cli.js";

/** One clear line on stderr, no stack trace: what every failure must look like to an operator. */
export function expectOneLineError(result: CliResult, pattern: RegExp, code = 1): void {
  expect(result.code, result.stdout + result.stderr).toBe(code);
  const errors = plainStderrLines(result.stderr).filter(
    (l) => l.startsWith("Error: ") || l.startsWith("error: "),
  );
  expect(errors, result.stderr).toHaveLength(1);
  expect(errors[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

/** Every `repo:tag` GitLab lists for the testbed's project, read through `gitlab-list --json`. */
export async function gitlabTags(tb: Testbed): Promise<Set<string>> {
  const result = await runBinary(["gitlab-list", ...tb.gitlabArgs, "--json"], { env: tb.env });
  expect(result.code, result.stderr).toBe(0);
  const json = JSON.parse(result.stdout) as {
    repositories: Array<{ name: string; tags: Array<{ name: string }> }>;
  };
  return new Set(json.repositories.flatMap((r) => r.tags.map((t) => `${r.name}:${t.name}`)));
}
