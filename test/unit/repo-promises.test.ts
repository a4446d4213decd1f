/**
 * What the README promises about the checkout itself, checked against the files that keep the
 * promise: the packages `npm run setup:system` installs, the memory the daemon is given, and
 * the tarball `npm pack` leaves in the checkout kept out of git.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const readme = readFileSync(path.join(root, "README.md"), "utf8");

describe("the README and the checkout agree", () => {
  it("names every package setup:system installs", () => {
    const script = readFileSync(path.join(root, "scripts", "setup-system.sh"), "utf8");
    const list = /^packages=\(([^)]*)\)/m.exec(script)?.[1] ?? "";
    const packages = list.split(/\s+/).filter((p) => p !== "" && !p.startsWith('"$'));
    expect(packages.length).toBeGreaterThan(5);
    const paragraph = readme.slice(readme.indexOf("Both need the Debian packages"));
    const named = paragraph.slice(0, paragraph.indexOf("npm run setup:system"));
    for (const pkg of packages) expect(named, pkg).toContain(`\`${pkg}\``);
  });

  it("gives the daemon in Kubernetes at least the memory it advises", () => {
    const advice = /Give the daemon ([\d.]+) GiB/.exec(readme)?.[1];
    const limit = /limits: \{ memory: (\d+)(Mi|Gi) \}/.exec(readme);
    expect(advice).toBeDefined();
    expect(limit).not.toBeNull();
    const limitMiB = Number(limit?.[1]) * (limit?.[2] === "Gi" ? 1024 : 1);
    expect(limitMiB).toBeGreaterThanOrEqual(Number(advice) * 1024);
  });

  it("keeps the tarball npm pack writes out of git", () => {
    const version = (
      JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
        version: string;
      }
    ).version;
    // check-ignore exits 0 when the path is ignored, 1 when not: execFileSync throws on 1.
    const out = execFileSync("git", ["check-ignore", `gh-gitlab-sync-${version}.tgz`], {
      cwd: root,
      encoding: "utf8",
    });
    expect(out.trim()).toBe(`gh-gitlab-sync-${version}.tgz`);
  });
});
