import { mkdir, readFile, readdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { buildProgram, runCli, type CliDeps } from "../../src/cli.js";
import { expandOptionPrefixes } from "../../src/commands/option-prefixes.js";
import { expectedImages, gitlabTagName } from "../../src/domain/images.js";
import { InterruptedError, UsageError } from "../../src/errors.js";
import type { WorkflowRun } from "../../src/github/runs.js";
import { confirmAtTerminal } from "../../src/report/prompt.js";
import { findCleanTargets, removeTargets } from "../../src/sync/clean.js";
import { metadataRecord } from "../../src/sync/download.js";
import { storedRunOf } from "../../src/sync/run-provenance.js";
import { pythonJson } from "../../src/util/files.js";
import { shellQuote } from "../../src/util/text.js";
import { metadataFileSchema } from "../../src/workspace/layout.js";
import { makeMetadata } from "../testbed/run-fixtures.js";
import { failure, tempDir } from "./helpers.js";

/**
 * What lets an operator switch from gh_gitlab_sync.py mid-pipeline, piece by piece: its file
 * format, its option prefixes, its prompt, its tag naming, its clean.
 */

describe("metadata.json in the original's format", () => {
  it("is written byte for byte as Python's json.dumps(obj, indent=2, sort_keys=True)", () => {
    const sample = {
      "Image tag": "presto-main--velox-v1.2--linux-arm64",
      "Target platform": "linux/arm64",
      "Presto ref": "main",
      run_id: 19876543210,
      run_name: "Presto Build Docker Images",
      artifact_size_bytes: 11811160064,
      _run_info: {
        databaseId: 19876543210,
        displayTitle: "Presto Build Docker Images",
        headBranch: "main",
        conclusion: "success",
        htmlUrl: "https://github.com/rapidsai/velox-testing/actions/runs/19876543210",
      },
      _run_branch: null,
      _tags: [
        "arm/presto-coordinator:presto-main--velox-v1.2-",
        "arm/presto-java-worker:presto-main--velox-v1.2-",
      ],
      _empty: {},
      _list: [],
      note: 'café – 🚀 tab\there "q" back\\slash \u007f \u0001',
      flag: true,
    };
    // The exact output of CPython 3.11 for `sample` (run once, pasted here).
    const python =
      '{\n  "Image tag": "presto-main--velox-v1.2--linux-arm64",\n  "Presto ref": "main",\n  "Target platform": "linux/arm64",\n  "_empty": {},\n  "_list": [],\n  "_run_branch": null,\n  "_run_info": {\n    "conclusion": "success",\n    "databaseId": 19876543210,\n    "displayTitle": "Presto Build Docker Images",\n    "headBranch": "main",\n    "htmlUrl": "https://github.com/rapidsai/velox-testing/actions/runs/19876543210"\n  },\n  "_tags": [\n    "arm/presto-coordinator:presto-main--velox-v1.2-",\n    "arm/presto-java-worker:presto-main--velox-v1.2-"\n  ],\n  "artifact_size_bytes": 11811160064,\n  "flag": true,\n  "note": "caf\\u00e9 \\u2013 \\ud83d\\ude80 tab\\there \\"q\\" back\\\\slash \\u007f \\u0001",\n  "run_id": 19876543210,\n  "run_name": "Presto Build Docker Images"\n}';
    expect(pythonJson(sample)).toBe(python);
  });

  const metadata = makeMetadata({
    prestoRef: "main",
    veloxRef: "v1.2",
    platform: "linux/arm64",
    mode: "all",
  });
  const run: WorkflowRun = {
    id: 4242,
    name: "Presto Build Docker Images",
    display_title: "Presto Build Docker Images",
    run_number: 17,
    event: "workflow_dispatch",
    status: "completed",
    conclusion: "success",
    head_branch: "main",
    head_sha: "a".repeat(40),
    html_url: "https://github.com/rapidsai/velox-testing/actions/runs/4242",
    created_at: "2025-12-05T10:00:00Z",
    updated_at: "2025-12-05T11:00:00Z",
    run_started_at: "2025-12-05T10:00:05Z",
  };
  const artifact = { name: "presto-images-4242", size: 123456 };
  const zip = "presto-main--velox-v1.2--linux-arm64.zip";

  it("holds every key the original's prepare, push and clean read", () => {
    const record = metadataRecord(metadata, run, "rapidsai/velox-testing", artifact, zip);
    // The keys gh_gitlab_sync.py reads back from metadata.json, with the JSON types it expects.
    expect(record).toMatchObject({
      ...metadata,
      run_id: 4242,
      run_name: "Presto Build Docker Images",
      repository: "rapidsai/velox-testing",
      artifact_name: "presto-images-4242",
      artifact_size_bytes: 123456,
      artifact_zip: zip,
      _run_branch: "main",
      _run_conclusion: "success",
      _run_info: {
        databaseId: 4242,
        displayTitle: "Presto Build Docker Images",
        headBranch: "main",
        conclusion: "success",
        htmlUrl: "https://github.com/rapidsai/velox-testing/actions/runs/4242",
      },
    });
    expect(record).not.toHaveProperty("_tags");
    // What it writes is read back by this tool's own schema and names the same run.
    const back = metadataFileSchema.parse(JSON.parse(pythonJson(record)));
    expect(storedRunOf(back)).toEqual({
      id: 4242,
      title: "Presto Build Docker Images",
      branch: "main",
      conclusion: "success",
    });
  });

  it("from the daemon also carries _tags, _run_display and _run_id, as the original's daemon", () => {
    const record = metadataRecord(metadata, run, "rapidsai/velox-testing", artifact, zip, {
      daemon: true,
    });
    expect(record).toMatchObject({
      _tags: expectedImages(metadata).map((i) => i.gitlabTag),
      _run_display: "Presto Build Docker Images",
      _run_id: 4242,
    });
    expect(record._tags).toContain("arm/presto-java-worker:presto-main--velox-v1.2-");
  });

  it("reads a file the original wrote with None values (null in JSON)", () => {
    const original = {
      "Image tag": "presto-a-velox-b-linux-amd64",
      run_id: 7,
      run_name: null,
      _run_branch: null,
      _run_conclusion: null,
      _run_info: { databaseId: 7, displayTitle: null, headBranch: null, conclusion: null },
      _tags: ["x86/presto-coordinator:presto-a-velox-b"],
      _run_display: null,
      _run_id: 7,
    };
    const parsed = metadataFileSchema.parse(original);
    expect(storedRunOf(parsed)).toEqual({
      id: 7,
      title: undefined,
      branch: undefined,
      conclusion: undefined,
    });
  });
});

describe("GitLab tag naming of the real workflow's tags", () => {
  it("keeps the trailing dash a short ref leaves, and drops the platform suffix whatever its case", () => {
    expect(gitlabTagName("presto-main--velox-v1.2--linux-arm64", "linux/arm64")).toBe(
      "presto-main--velox-v1.2-",
    );
    expect(gitlabTagName("presto-main--velox-v1.2--linux-arm64", "Linux/ARM64")).toBe(
      "presto-main--velox-v1.2-",
    );
    expect(gitlabTagName("presto-a-velox-b-LINUX-AMD64", "linux/amd64")).toBe("presto-a-velox-b");
    const images = expectedImages({
      "Image tag": "presto-main--velox-v1.2--linux-arm64",
      "Target platform": "Linux/ARM64",
      "Build Java worker": "true",
    });
    expect(images.map((i) => i.gitlabTag)).toEqual([
      "arm/presto-coordinator:presto-main--velox-v1.2-",
      "arm/presto-java-worker:presto-main--velox-v1.2-",
    ]);
    expect(images[0]?.tarball).toBe(
      "presto-coordinator-presto-main--velox-v1.2--linux-arm64.tar.gz",
    );
  });
});

function fakeDeps(): CliDeps & { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  const stream = (write: (s: string) => void) =>
    Object.assign(new PassThrough(), {
      write: (chunk: string | Uint8Array) => {
        write(String(chunk));
        return true;
      },
    });
  return {
    env: {},
    stdout: stream((s) => (out += s)),
    stderr: stream((s) => (err += s)),
    signal: new AbortController().signal,
    out: () => out,
    err: () => err,
  };
}

describe("argparse's option prefixes", () => {
  const program = buildProgram(fakeDeps(), () => undefined);
  const expand = (...argv: string[]) => expandOptionPrefixes(program, argv);

  it("spells out an unambiguous prefix of the subcommand's long options", () => {
    expect(expand("gh-list", "--include", "--lim", "5")).toEqual([
      "gh-list",
      "--include-failed",
      "--limit",
      "5",
    ]);
    expect(expand("push", "t", "--registry-u", "bot", "--ye", "--verb")).toEqual([
      "push",
      "t",
      "--registry-username",
      "bot",
      "--yes",
      "--verbose",
    ]);
    expect(expand("clean", "t", "--downloads", "d", "--gh", "x")).toEqual([
      "clean",
      "t",
      "--downloads-dir",
      "d",
      "--gh-token",
      "x",
    ]);
  });

  it("keeps exact names, values, `=value`, global options and everything after --", () => {
    // `--registry` is a whole option even though `--registry-username` starts with it.
    expect(expand("push", "t", "--registry", "r:5000")).toEqual([
      "push",
      "t",
      "--registry",
      "r:5000",
    ]);
    // A value is never expanded, whatever it looks like.
    expect(expand("gh-list", "--gh-token", "--inc")).toEqual(["gh-list", "--gh-token", "--inc"]);
    expect(expand("gh-list", "--lim=3")).toEqual(["gh-list", "--limit=3"]);
    expect(expand("--log-l", "debug", "xref", "--list")).toEqual([
      "--log-level",
      "debug",
      "xref",
      "--list-extra",
    ]);
    expect(expand("xref", "--", "--list")).toEqual(["xref", "--", "--list"]);
    // Unknown prefixes are left for commander to refuse.
    expect(expand("xref", "--nope")).toEqual(["xref", "--nope"]);
  });

  it("refuses an ambiguous prefix naming the candidates", async () => {
    const err = await failure(Promise.resolve().then(() => expand("push", "t", "--re")));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(
      "option '--re' is ambiguous: --retag-as-latest, --registry-project, --repo, --registry, --registry-username, --registry-password",
    );
    const deps = fakeDeps();
    expect(await runCli(["node", "gh-gitlab-sync", "daemon", "--he"], deps)).toBe(2);
    expect(deps.err()).toBe(
      "Error: option '--he' is ambiguous: --health-port, --help — type more of the option's name\n",
    );
  });
});

describe("confirmation prompts", () => {
  function terminal(answers: string) {
    const input = Object.assign(new PassThrough(), { isTTY: true });
    let shown = "";
    const output = new PassThrough();
    output.on("data", (d: Buffer) => (shown += d.toString()));
    input.end(answers);
    return { io: { input, output }, shown: () => shown };
  }

  it("without a terminal: a failure telling to pass --yes, never a quiet no", async () => {
    const input = new PassThrough();
    const err = await failure(
      confirmAtTerminal("push", new AbortController().signal, {
        input,
        output: new PassThrough(),
      })("Proceed? [y/N]: "),
    );
    expect(err.exitCode).toBe(1);
    expect(err.oneLine()).toMatch(/^no terminal to confirm on; pass --yes — push asks/);
  });

  it("at a terminal: an unrecognised answer asks again, as the original", async () => {
    const yes = terminal("maybe\nyes\n");
    expect(
      await confirmAtTerminal(
        "push",
        new AbortController().signal,
        yes.io,
      )("Proceed with upload? [y/N]: "),
    ).toBe(true);
    expect(yes.shown()).toBe(
      "Proceed with upload? [y/N]: Please respond with 'y' or 'n'.\nProceed with upload? [y/N]: ",
    );
    const no = terminal("\n");
    expect(
      await confirmAtTerminal("clean", new AbortController().signal, no.io)("Proceed? [y/N]: "),
    ).toBe(false);
  });

  it("a signal ends the prompt at once, nobody answering: the interruption, nothing done", async () => {
    const input = Object.assign(new PassThrough(), { isTTY: true });
    let shown = "";
    const output = new PassThrough();
    output.on("data", (d: Buffer) => (shown += d.toString()));
    const controller = new AbortController();
    const asked = confirmAtTerminal("push", controller.signal, { input, output })(
      "Proceed? [y/N]: ",
    );
    controller.abort(new InterruptedError("SIGTERM"));
    const err = await failure(asked);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(err.exitCode).toBe(143);
    expect(err.oneLine()).toBe("interrupted by SIGTERM — nothing was changed");
    expect(shown).toBe("Proceed? [y/N]: \n");
  });
});

describe("the command preview's quoting", () => {
  it("quotes as Python's shlex.quote", () => {
    expect(shellQuote("registry:5000/hercules/x86/presto:presto-a-")).toBe(
      "registry:5000/hercules/x86/presto:presto-a-",
    );
    expect(shellQuote("/dl dir/it's.tar.gz")).toBe(`'/dl dir/it'"'"'s.tar.gz'`);
    expect(shellQuote("")).toBe("''");
  });
});

describe("clean's targets", () => {
  it("takes the tag's directory and the downloads dir's entries named after the tag or the run, nothing else", async () => {
    const root = await tempDir("gh-gitlab-sync-clean-");
    const downloads = path.join(root, "downloads");
    const tag = "presto-main--velox-v1.2--linux-arm64";
    const outside = path.join(root, "precious.tar.gz");
    await writeFile(outside, "keep me");
    await mkdir(path.join(downloads, tag), { recursive: true });
    await writeFile(path.join(downloads, tag, "metadata.json"), JSON.stringify({ run_id: 123 }));
    await mkdir(path.join(downloads, "123"));
    await mkdir(path.join(downloads, "1234"));
    await mkdir(path.join(downloads, "presto-other-velox-x-linux-amd64"));
    for (const name of [
      `${tag}.zip`,
      "presto-images-123.zip",
      "presto-images-1234.zip",
      "presto-images-4567.zip",
      `presto-coordinator-${tag}.tar.gz`,
      "notes-123.txt",
    ]) {
      await writeFile(path.join(downloads, name), "x");
    }
    // A link named after the run: the link goes, what it points at stays.
    await symlink(outside, path.join(downloads, "run-123.tar.gz"));

    const targets = await findCleanTargets(downloads, tag, [4567]);
    expect(targets.map((t) => [path.basename(t.path), t.kind])).toEqual([
      [tag, "tag directory"],
      ["123", "run directory"],
      [`presto-coordinator-${tag}.tar.gz`, "artifact"],
      ["presto-images-123.zip", "artifact"],
      ["presto-images-4567.zip", "artifact"],
      [`${tag}.zip`, "artifact"],
      ["run-123.tar.gz", "link"],
    ]);
    await removeTargets(targets.map((t) => t.path));
    expect(await readFile(outside, "utf8")).toBe("keep me");
    expect((await readdir(downloads)).sort()).toEqual([
      "1234",
      "notes-123.txt",
      "presto-images-1234.zip",
      "presto-other-velox-x-linux-amd64",
    ]);
  });
});
