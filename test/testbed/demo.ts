/**
 * `npm run demo`: the first thing a newcomer runs. Brings up the testbed (GitHub and GitLab
 * stand-ins, a real registry with GitLab-style token auth, a real dockerd when this machine can
 * run one), seeds one synced and two missing builds, runs the main job — `daemon --once` — with
 * the built binary, then `xref` to show that nothing is missing any more, and cleans up.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runBinary } from "../e2e/run-cli.js";
import { seedDemo } from "./demo-data.js";
import { dockerdAvailability, startDockerd, type Dockerd } from "./dockerd.js";
import { startTestbed, testbedGate } from "./index.js";

const gate = testbedGate();
if (gate.skip) {
  process.stderr.write(`demo: ${gate.reason}\n`);
  process.exit(1);
}

const say = (text: string) => process.stdout.write(`${text}\n`);
const work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-demo-"));
const tb = await startTestbed({ dir: path.join(work, "testbed") });
let dockerd: Dockerd | undefined;
let failed = false;
try {
  const docker = dockerdAvailability();
  if (docker.ok) dockerd = await startDockerd({ dir: work });
  else say(`(no Docker engine here: ${docker.reason}; the demo pushes with --engine registry)`);
  const engine = dockerd ? "docker" : "registry";
  await seedDemo(tb);
  const common = [
    ...tb.githubArgs,
    ...tb.gitlabArgs,
    "--downloads-dir",
    path.join(work, "downloads"),
  ];
  const steps: Array<[string, string[]]> = [
    ["What GitHub built that GitLab lacks", ["xref", ...common]],
    [
      `The main job: one daemon cycle (download → prepare → push with the ${engine} engine → clean)`,
      ["daemon", "--once", ...common, ...tb.registryArgs, "--engine", engine],
    ],
    [
      "Nothing is missing any more (metadata from the cache: no log downloaded)",
      ["xref", ...common],
    ],
  ];
  for (const [title, args] of steps) {
    say(`\n=== ${title}\n$ gh-gitlab-sync ${args.join(" ")}`);
    tb.github.resetRequests();
    const result = await runBinary([...args, "--log-format", "pretty"], {
      env: { ...tb.env, ...(dockerd ? { DOCKER_HOST: dockerd.dockerHost } : {}) },
      cwd: work,
      timeoutMs: 600_000,
    });
    process.stdout.write(result.stdout);
    if (result.stderr.trim()) process.stdout.write(result.stderr);
    const logBytes = tb.github.requests
      .filter((r) => r.host === "blob" && !r.path.includes("/artifacts/"))
      .reduce((n, r) => n + r.bytesSent, 0);
    say(
      `(GitHub requests: ${tb.github.requests.length}, log bytes: ${logBytes}; exit ${result.code})`,
    );
    if (result.code !== 0) failed = true;
  }
  say(
    failed
      ? "\nDemo FAILED: see the output above."
      : "\nDemo complete: every image is in the registry.",
  );
} finally {
  await dockerd?.stop();
  await tb.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
