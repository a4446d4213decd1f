/**
 * `npm run demo`: the first thing a newcomer runs. Brings up the testbed, seeds GitHub runs and a
 * registry, and runs the tool's main job on it with the built binary, then cleans up.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runBinary } from "../e2e/run-cli.js";
import { seedDemo } from "./demo-data.js";
import { startTestbed, testbedGate } from "./index.js";

const gate = testbedGate();
if (gate.skip) {
  process.stderr.write(`demo: ${gate.reason}\n`);
  process.exit(1);
}

const tb = await startTestbed();
const work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-demo-"));
let failed = false;
try {
  await seedDemo(tb);
  const common = [...tb.githubArgs, "--state-dir", path.join(work, "state")];
  const steps: Array<[string, string[]]> = [
    ["Recent successful runs and their build metadata", ["gh-list", ...common]],
    ["What the GitLab registry holds", ["gitlab-list", ...tb.gitlabArgs]],
    ["What GitHub built that GitLab lacks", ["xref", ...common, ...tb.gitlabArgs]],
    [
      "Again: metadata now comes from the cache, no log is downloaded",
      ["xref", ...common, ...tb.gitlabArgs, "--json"],
    ],
  ];
  for (const [title, args] of steps) {
    process.stdout.write(`\n=== ${title}\n$ gh-gitlab-sync ${args.join(" ")}\n`);
    tb.github.resetRequests();
    const result = await runBinary([...args, "--log-format", "pretty", "--log-level", "warn"], {
      env: tb.env,
      cwd: work,
    });
    process.stdout.write(result.stdout);
    if (result.stderr.trim()) process.stdout.write(result.stderr);
    const logs = tb.github.requests
      .filter((r) => r.host === "blob")
      .reduce((n, r) => n + r.bytesSent, 0);
    process.stdout.write(
      `(GitHub requests: ${tb.github.requests.length}, log bytes: ${logs}; exit ${result.code})\n`,
    );
    if (result.code !== 0) failed = true;
  }
} finally {
  await tb.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
