import { describe, expect, it } from "vitest";
import {
  daemonOptionsSchema,
  githubOptionsSchema,
  parseImageTag,
  parseOptions,
  stateDirFor,
} from "../../src/config/options.js";
import {
  resolveGithubToken,
  resolveGitlabToken,
  resolveRegistryCredentials,
} from "../../src/config/tokens.js";
import { SyncError, UsageError } from "../../src/errors.js";
import path from "node:path";

const githubRaw = {
  repo: "rapidsai/velox-testing",
  workflow: ".github/workflows/presto-build-images.yml",
  limit: "20",
  githubApiUrl: "https://api.github.com",
};

describe("options", () => {
  it("turns flags into typed settings", () => {
    const options = parseOptions(githubOptionsSchema, { ...githubRaw, branch: " main " });
    expect(options.limit).toBe(20);
    expect(options.branch).toBe("main");
  });

  it.each([["abc"], ["0"], ["-3"], ["2.5"], [""], ["100000"], ["0x10"], ["1e3"], ["+5"]])(
    "refuses --limit %s as a usage error naming the flag",
    (limit) => {
      const run = () => parseOptions(githubOptionsSchema, { ...githubRaw, limit });
      expect(run).toThrow(UsageError);
      expect(run).toThrow(/^--limit must be a whole number from 1 to 1000/);
      try {
        run();
      } catch (err) {
        expect((err as UsageError).exitCode).toBe(2);
      }
    },
  );

  it("takes the daemon's waits as whole seconds, from one second to a week", () => {
    const timing = {
      interval: "900",
      pollInterval: "30",
      retryBackoff: "1",
      retryBackoffMax: "604800",
    };
    expect(parseOptions(daemonOptionsSchema, timing)).toEqual({
      interval: 900,
      pollInterval: 30,
      retryBackoff: 1,
      retryBackoffMax: 604800,
    });
    for (const interval of ["0", "604801", "0x10", "1e3", "1.5", "soon"]) {
      expect(() => parseOptions(daemonOptionsSchema, { ...timing, interval })).toThrow(
        /^--interval must be a whole number of seconds, at least 1 and at most a week/,
      );
    }
    // --poll-interval 0 turns the looks off; a negative or fractional one is refused.
    expect(parseOptions(daemonOptionsSchema, { ...timing, pollInterval: "0" }).pollInterval).toBe(
      0,
    );
    for (const pollInterval of ["-1", "0.5", "604801"]) {
      expect(() => parseOptions(daemonOptionsSchema, { ...timing, pollInterval })).toThrow(
        /^--poll-interval must be a whole number of seconds from 0 \(no polling\)/,
      );
    }
    expect(() => parseOptions(daemonOptionsSchema, { ...timing, retryBackoffMax: "-1" })).toThrow(
      /^--retry-backoff-max must be a whole number of seconds/,
    );
  });

  it("refuses a repo that is not owner/name and a bad API URL", () => {
    expect(() =>
      parseOptions(githubOptionsSchema, { ...githubRaw, repo: "velox-testing" }),
    ).toThrow(/--repo must be owner\/name/);
    expect(() =>
      parseOptions(githubOptionsSchema, { ...githubRaw, githubApiUrl: "ftp://x" }),
    ).toThrow(/--github-api-url/);
  });

  it.each(["../../etc", "a/b", "", ".hidden", "-dash", "x".repeat(129), "tag with space"])(
    "refuses image tag %j",
    (tag) => {
      expect(() => parseImageTag(tag)).toThrow(UsageError);
    },
  );

  it("accepts a real image tag", () => {
    expect(parseImageTag("presto-92865fbce0d2-velox-65797d572e0a-linux-amd64")).toBe(
      "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64",
    );
  });

  it("puts the state directory under the downloads directory unless told otherwise", () => {
    expect(stateDirFor({ downloadsDir: "dl", stateDir: undefined })).toBe(
      path.resolve("dl/.state"),
    );
    expect(stateDirFor({ downloadsDir: "dl", stateDir: "/var/lib/x" })).toBe("/var/lib/x");
  });
});

describe("token resolution", () => {
  const noGh = () => undefined;

  it("follows --gh-token, GH_TOKEN, GITHUB_TOKEN, then gh auth token", () => {
    const env = { GH_TOKEN: "gh-env", GITHUB_TOKEN: "github-env" };
    expect(resolveGithubToken("flag", env, noGh)).toEqual({ value: "flag", source: "--gh-token" });
    expect(resolveGithubToken(undefined, env, noGh)).toEqual({
      value: "gh-env",
      source: "GH_TOKEN",
    });
    expect(resolveGithubToken(undefined, { GITHUB_TOKEN: " x " }, noGh)).toEqual({
      value: "x",
      source: "GITHUB_TOKEN",
    });
    expect(resolveGithubToken(undefined, {}, () => "from-gh")).toEqual({
      value: "from-gh",
      source: "gh auth token",
    });
  });

  it("says where to put a GitHub token when there is none", () => {
    expect(() => resolveGithubToken(undefined, { GH_TOKEN: "  " }, noGh)).toThrow(SyncError);
    expect(() => resolveGithubToken(undefined, {}, noGh)).toThrow(/No GitHub token/);
  });

  it("resolves the GitLab token and the registry credentials like the original", () => {
    expect(resolveGitlabToken(undefined, { GITLAB_TOKEN: "glpat" }).value).toBe("glpat");
    expect(() => resolveGitlabToken(undefined, {})).toThrow(/GitLab token not provided/);
    expect(
      resolveRegistryCredentials({}, { CI_REGISTRY_USER: "ci", CI_REGISTRY_PASSWORD: "p" }, "tok"),
    ).toEqual({
      username: "ci",
      password: "p",
      passwordSource: "CI_REGISTRY_PASSWORD",
    });
    expect(resolveRegistryCredentials({ username: "me" }, {}, "tok")).toEqual({
      username: "me",
      password: "tok",
      passwordSource: "the GitLab token",
    });
    expect(resolveRegistryCredentials({}, {}, undefined)).toEqual({
      username: "oauth2",
      password: undefined,
      passwordSource: undefined,
    });
  });
});
