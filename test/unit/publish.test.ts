/**
 * The middle push, sync and the daemon share (sync/publish.ts): the lines each image gets, and
 * the one error line for the images that could not be pushed.
 */
import { describe, expect, it } from "vitest";
import type { StepReporter } from "../../src/domain/events.js";
import { DamagedInputError, SyncError } from "../../src/errors.js";
import { RegistryError } from "../../src/registry/registry-error.js";
import {
  failsAlone,
  ImageLines,
  notAllPushed,
  printExisting,
  type Planned,
} from "../../src/sync/publish.js";

function recorder(brief = false): { steps: StepReporter; lines: string[] } {
  const lines: string[] = [];
  const say = (m: string) => void lines.push(m);
  return {
    lines,
    steps: {
      brief,
      step: (n, t, m) => say(`[${n}/${t}] ${m}`),
      detail: say,
      warn: (m) => say(`WARNING: ${m}`),
      text: say,
      status: say,
      rule: () => say("---"),
    },
  };
}

const item = (repo: string): Planned => ({
  gitlabTag: `x86/${repo}:t`,
  label: `${repo}.tar.gz`,
  tarballLine: `Local tarball: ${repo}.tar.gz`,
  localRef: `${repo}:t-linux-amd64`,
  repository: `p/x86/${repo}`,
  tag: "t",
  remoteRef: `r/p/x86/${repo}:t`,
  siblings: [],
  status: "repository exists, tag missing",
});

describe("ImageLines", () => {
  it("one image at a time (push): its pushed line follows its own lines and does not name it again", () => {
    const { steps, lines } = recorder();
    const out = new ImageLines(steps);
    for (const repo of ["a", "b"]) {
      out.start(item(repo), `${repo}.tar.gz`, 3 << 20);
      out.pushed(item(repo), "sha256:1", "1 layer sent");
    }
    expect(lines).toEqual([
      "",
      "Pushing r/p/x86/a:t ...",
      "  archive: a.tar.gz (3.00 MiB)",
      "  pushed sha256:1: 1 layer sent",
      "",
      "Pushing r/p/x86/b:t ...",
      "  archive: b.tar.gz (3.00 MiB)",
      "  pushed sha256:1: 1 layer sent",
    ]);
  });

  it("all read first, then published (sync): each pushed line names its image", () => {
    const { steps, lines } = recorder();
    const out = new ImageLines(steps);
    for (const repo of ["a", "b"])
      out.start(item(repo), `${repo}.tar.gz (streamed from z)`, undefined);
    out.notPushed(item("a"), new DamagedInputError("a.tar.gz is cut short"));
    out.pushed(item("b"), "sha256:2", "2 layers sent");
    expect(lines.slice(-3)).toEqual([
      "  archive: b.tar.gz (streamed from z)",
      "WARNING: a.tar.gz is not pushed: a.tar.gz is cut short",
      "  pushed r/p/x86/b:t sha256:2: 2 layers sent",
    ]);
  });
});

describe("the short view (a person's terminal, default level)", () => {
  it("names each image by its path in the project, once, without archive lines or digests", () => {
    const { steps, lines } = recorder(true);
    const out = new ImageLines(steps);
    out.start(item("a"), "a.tar.gz", 3 << 20);
    out.pushed(item("a"), "sha256:1", "1 layer sent");
    // Streamed: read first, published after, so each pushed line names its image.
    for (const repo of ["b", "c"]) out.start(item(repo), `${repo}.tar.gz (streamed)`, undefined);
    for (const repo of ["b", "c"]) out.pushed(item(repo), "sha256:2", "2 layers sent");
    printExisting(steps, [item("d")], false);
    expect(lines).toEqual([
      "Pushing x86/a ...",
      "  pushed: 1 layer sent",
      "Pushing x86/b ...",
      "Pushing x86/c ...",
      "  pushed x86/b: 2 layers sent",
      "  pushed x86/c: 2 layers sent",
      "",
      "Skipping already-present tags (use --force to push anyway):",
      "  x86/d",
    ]);
  });
});

describe("notAllPushed", () => {
  it("names each failure in one line; damaged input only when every failure is", () => {
    const damaged = {
      item: item("a"),
      error: new DamagedInputError("a.tar.gz is cut short", { hint: "re-run download --force" }),
    };
    const refused = {
      item: item("b"),
      error: new SyncError("registry r answered 400 (MANIFEST_INVALID: manifest invalid)"),
    };
    const one = notAllPushed([damaged], 3);
    expect(one).toBeInstanceOf(DamagedInputError);
    expect(one.message).toBe("1 of 3 image(s) not pushed (the others were): a.tar.gz is cut short");
    expect(one.hint).toBe("re-run download --force");
    const both = notAllPushed([refused, damaged], 2);
    expect(both).not.toBeInstanceOf(DamagedInputError);
    expect(both.message).toBe(
      "2 of 2 image(s) not pushed: registry r answered 400 (MANIFEST_INVALID: manifest invalid); a.tar.gz is cut short",
    );
    expect(both.hint).toBe("rerun with --log-level debug");
  });
});

describe("failsAlone", () => {
  it("an image's own failure lets its siblings go on; a registry down, failing or refusing the user stops the run", () => {
    const answered = (status: number) =>
      new RegistryError(`registry r answered ${status}`, { status });
    expect(failsAlone(new DamagedInputError("a.tar.gz is cut short"))).toBe(true);
    expect(failsAlone(answered(400))).toBe(true);
    expect(failsAlone(answered(413))).toBe(true);
    for (const status of [401, 403, 429, 500, 503])
      expect(failsAlone(answered(status))).toBe(false);
    expect(failsAlone(new RegistryError("registry r unreachable", { retryable: true }))).toBe(
      false,
    );
    expect(failsAlone(new SyncError("no space left on the disk"))).toBe(false);
  });
});
