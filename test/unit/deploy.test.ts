/**
 * deploy/: the systemd unit and every environment file beside it, read the way systemd reads
 * them. An EnvironmentFile= line is `KEY=value` to the end of the line: a `# note` after a
 * value is part of the value (the original example sent `ghp_…   # GitHub token …` as the
 * token), so each value is checked for what the tool will really receive.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { envFlag } from "../../src/config/options.js";
import { describe, expect, it } from "vitest";
import { isRegistryHost } from "../../src/domain/reference.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const deploy = path.join(root, "deploy");

/**
 * systemd's EnvironmentFile= parser (src/basic/env-file.c, parse_env_file_internal): a line
 * starting with `#` or `;` is a comment; `KEY=value` with blanks around the key and before the
 * value skipped; an unquoted value runs to the end of the line with trailing blanks dropped
 * (`#` included), a backslash escapes the next character (a newline: the line goes on); single
 * quotes keep everything; double quotes let `\` escape `"`, `\`, `` ` ``, `$` and a newline.
 */
export function parseEnvironmentFile(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  let i = 0;
  const n = text.length;
  const blank = (c: string | undefined) => c === " " || c === "\t";
  while (i < n) {
    while (i < n && (blank(text[i]) || text[i] === "\n" || text[i] === "\r")) i += 1;
    if (i >= n) break;
    if (text[i] === "#" || text[i] === ";") {
      // A comment runs to the end of the line; a backslash before the newline carries it on.
      while (i < n && text[i] !== "\n") i += text[i] === "\\" ? 2 : 1;
      continue;
    }
    let key = "";
    while (i < n && text[i] !== "=" && text[i] !== "\n") key += text[i++];
    if (text[i] !== "=") continue; // no `=` on the line: ignored
    i += 1;
    key = key.trim();
    while (i < n && blank(text[i])) i += 1;
    let value = "";
    let trailingBlanks = 0;
    while (i < n && text[i] !== "\n") {
      const c = text[i] ?? "";
      if (c === "\\") {
        const next = text[i + 1];
        i += 2;
        if (next !== "\n" && next !== undefined) value += next;
        trailingBlanks = 0;
      } else if (c === "'") {
        i += 1;
        while (i < n && text[i] !== "'") value += text[i++];
        i += 1;
        trailingBlanks = 0;
      } else if (c === '"') {
        i += 1;
        while (i < n && text[i] !== '"') {
          if (text[i] === "\\" && /["\\`$\n]/.test(text[i + 1] ?? "")) {
            if (text[i + 1] !== "\n") value += text[i + 1];
            i += 2;
          } else value += text[i++];
        }
        i += 1;
        trailingBlanks = 0;
      } else {
        value += c;
        trailingBlanks = blank(c) ? trailingBlanks + 1 : 0;
        i += 1;
      }
    }
    if (trailingBlanks > 0) value = value.slice(0, -trailingBlanks);
    vars.set(key, value.replace(/\r$/, ""));
  }
  return vars;
}

/** The lines a person is meant to uncomment (`#KEY=value`), as they would read once uncommented. */
function commentedAssignments(text: string): Map<string, string> {
  const lines = text
    .split("\n")
    .filter((l) => /^#\s?[A-Z][A-Z0-9_]*=/.test(l))
    .map((l) => l.replace(/^#\s?/, ""));
  return parseEnvironmentFile(lines.join("\n"));
}

const isUrl = (value: string) => {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
};

/** Every variable the tool (or Node, for it) reads, and what its value must look like. */
const KNOWN: Record<string, (value: string) => boolean> = {
  GH_TOKEN: (v) => /^[A-Za-z0-9_]+$/.test(v),
  GITHUB_TOKEN: (v) => /^[A-Za-z0-9_]+$/.test(v),
  GITLAB_TOKEN: (v) => /^[A-Za-z0-9_-]+$/.test(v),
  GITLAB_REGISTRY_USERNAME: (v) => /^[A-Za-z0-9_.-]+$/.test(v),
  GITLAB_REGISTRY_PASSWORD: (v) => /^\S+$/.test(v),
  CI_REGISTRY_USER: (v) => /^[A-Za-z0-9_.-]+$/.test(v),
  CI_REGISTRY_PASSWORD: (v) => /^\S+$/.test(v),
  GITHUB_API_URL: isUrl,
  GITLAB_HOST: (v) => isUrl(v) || /^[A-Za-z0-9.-]+(:\d+)?$/.test(v),
  CI_REGISTRY: isRegistryHost,
  HTTPS_PROXY: isUrl,
  HTTP_PROXY: isUrl,
  NO_PROXY: (v) => /^[A-Za-z0-9.*:,-]+$/.test(v),
  NODE_EXTRA_CA_CERTS: (v) => path.isAbsolute(v) && !/\s/.test(v),
  DOCKER_HOST: (v) => /^(unix|tcp|ssh):\/\/\S+$/.test(v),
  GH_GITLAB_SYNC_HTTP_TIMEOUT: (v) => /^\d+$/.test(v),
  GH_GITLAB_SYNC_MULTIARCH_INDEX: (v) => envFlag({ v }, "v"),
};

const envFiles = readdirSync(deploy).filter((f) => /\.env/.test(f));

describe("systemd's EnvironmentFile rules, as the test reads them", () => {
  it("keep a note after a value in the value, and drop only a line's own comment", () => {
    const vars = parseEnvironmentFile(
      [
        "# a comment",
        "; another",
        "GH_TOKEN=ghp_abc                  # GitHub token with actions:read",
        "  SPACED =  value with  inner blanks   ",
        'QUOTED="a \\"b\\" # c"',
        "SINGLE='x # y'",
        "LONG=one\\",
        "two",
        "EMPTY=",
        "no assignment here",
      ].join("\n"),
    );
    expect(vars.get("GH_TOKEN")).toBe("ghp_abc                  # GitHub token with actions:read");
    expect(vars.get("SPACED")).toBe("value with  inner blanks");
    expect(vars.get("QUOTED")).toBe('a "b" # c');
    expect(vars.get("SINGLE")).toBe("x # y");
    expect(vars.get("LONG")).toBe("onetwo");
    expect(vars.get("EMPTY")).toBe("");
    expect([...vars.keys()]).toEqual(["GH_TOKEN", "SPACED", "QUOTED", "SINGLE", "LONG", "EMPTY"]);
  });
});

describe.each(envFiles)("deploy/%s", (file) => {
  const text = readFileSync(path.join(deploy, file), "utf8");
  const vars = parseEnvironmentFile(text);
  const offered = commentedAssignments(text);

  it("sets the tokens, each value exactly what the tool will receive", () => {
    expect([...vars.keys()]).toEqual(
      expect.arrayContaining(["GH_TOKEN", "GITLAB_TOKEN", "GITLAB_REGISTRY_USERNAME"]),
    );
    for (const [key, value] of [...vars, ...offered]) {
      expect(KNOWN[key], `${key} is not a variable gh-gitlab-sync reads`).toBeDefined();
      expect(value, `${key}'s value must not carry a comment`).not.toMatch(/#|\s/);
      expect(KNOWN[key]?.(value), `${key}=${value}`).toBe(true);
    }
  });

  it("keeps comments on lines of their own", () => {
    for (const line of text.split("\n")) {
      if (/^\s*[#;]/.test(line) || line.trim() === "") continue;
      expect(line, "an assignment line holds nothing but KEY=value").toMatch(/^[A-Z0-9_]+=\S*$/);
    }
  });

  it("offers, commented out, every setting an operator may need beyond the tokens", () => {
    for (const key of [
      "GITLAB_HOST",
      "CI_REGISTRY",
      "HTTPS_PROXY",
      "NO_PROXY",
      "NODE_EXTRA_CA_CERTS",
      "GITHUB_API_URL",
    ]) {
      expect(offered.has(key) || vars.has(key), key).toBe(true);
    }
  });
});

describe("deploy/gh-gitlab-sync.service", () => {
  const unit = readFileSync(path.join(deploy, "gh-gitlab-sync.service"), "utf8");
  /** `Key=value` lines of a section, continuation lines joined. */
  const section = (name: string): Map<string, string[]> => {
    const body = unit.split(/^\[/m).find((s) => s.startsWith(`${name}]`)) ?? "";
    const entries = new Map<string, string[]>();
    const joined = body.replace(/\\\n\s*/g, " ");
    for (const line of joined.split("\n").slice(1)) {
      const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
      if (m?.[1]) entries.set(m[1], [...(entries.get(m[1]) ?? []), m[2] ?? ""]);
    }
    return entries;
  };
  const service = section("Service");

  it("starts the daemon by the name a global npm install puts on systemd's search path", () => {
    const [execStart] = service.get("ExecStart") ?? [];
    const argv = (execStart ?? "").trim().split(/\s+/);
    expect(argv[0]).toBe("gh-gitlab-sync");
    expect(argv.slice(1)).toEqual(expect.arrayContaining(["daemon", "--log-format", "json"]));
  });

  it("reads the environment file the README installs, as a dedicated user with its own state", () => {
    expect(service.get("EnvironmentFile")).toEqual(["/etc/gh-gitlab-sync.env"]);
    expect(service.get("User")).toEqual(["gh-gitlab-sync"]);
    expect(service.get("StateDirectory")).toEqual(["gh-gitlab-sync"]);
    const [execStart] = service.get("ExecStart") ?? [];
    expect(execStart).toContain("--downloads-dir /var/lib/gh-gitlab-sync/");
    expect(service.get("KillSignal")).toEqual(["SIGTERM"]);
  });
});
