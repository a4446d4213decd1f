import { describe, expect, it } from "vitest";
import { errorCode, UsageError } from "../../src/errors.js";
import { gitlabBaseUrl } from "../../src/gitlab/client.js";
import { serverDelayMs } from "../../src/net/retry.js";

describe("gitlabBaseUrl", () => {
  it.each([
    ["gitlab-master.nvidia.com", "https://gitlab-master.nvidia.com"],
    ["  GitLab.Example.com:8443 ", "https://gitlab.example.com:8443"],
    ["http://127.0.0.1:8929", "http://127.0.0.1:8929"],
    ["http://127.0.0.1:8929/", "http://127.0.0.1:8929"],
    ["http://127.0.0.1:8929/api/v4", "http://127.0.0.1:8929"],
    ["https://gitlab.example.com/api/v4/", "https://gitlab.example.com"],
    ["https://example.com/gitlab/", "https://example.com/gitlab"],
    ["HTTPS://GITLAB.EXAMPLE.COM", "https://gitlab.example.com"],
    ["[::1]:8929", "https://[::1]:8929"],
  ])("%s → %s", (host, expected) => {
    expect(gitlabBaseUrl(host)).toBe(expected);
  });

  it.each([
    "",
    "   ",
    "ftp://gitlab.example.com",
    "gitlab example.com",
    "gitlab.example.com/path",
    "-bad-.example.com",
    "https://user:secret@gitlab.example.com",
    "https://gitlab.example.com/?x=1",
    "http://",
  ])("refuses %j with a usage error", (host) => {
    expect(() => gitlabBaseUrl(host)).toThrow(UsageError);
  });

  it("does not echo credentials given in the URL", () => {
    try {
      gitlabBaseUrl("https://user:secret@gitlab.example.com");
      expect.unreachable();
    } catch (error) {
      expect((error as UsageError).oneLine()).not.toContain("secret");
      expect((error as UsageError).exitCode).toBe(2);
    }
  });
});

// The requester's retries read GitLab's headers and fetch's errors through the shared helpers.
describe("serverDelayMs on GitLab's headers", () => {
  const now = Date.parse("2025-10-01T12:00:00Z");
  it("reads retry-after in seconds or as a date, then ratelimit-reset", () => {
    expect(serverDelayMs(new Headers({ "retry-after": "7" }), now)).toBe(7000);
    expect(
      serverDelayMs(new Headers({ "retry-after": "Wed, 01 Oct 2025 12:00:05 GMT" }), now),
    ).toBe(5000);
    expect(serverDelayMs(new Headers({ "ratelimit-reset": String(now / 1000 + 3) }), now)).toBe(
      3000,
    );
    expect(
      serverDelayMs(new Headers({ "retry-after": "Wed, 01 Oct 2025 11:00:00 GMT" }), now),
    ).toBe(0);
    expect(serverDelayMs(new Headers(), now)).toBeUndefined();
  });
});

describe("errorCode on a fetch failure", () => {
  it("digs the code out of fetch's wrapped cause", () => {
    const cause = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
      code: "ECONNREFUSED",
    });
    expect(errorCode(new TypeError("fetch failed", { cause }))).toBe("ECONNREFUSED");
    expect(errorCode(new Error("plain"))).toBeUndefined();
    expect(errorCode("not an error")).toBeUndefined();
  });
});
