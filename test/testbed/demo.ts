/**
 * `npm run demo`: the first thing a newcomer runs. Brings up the testbed (GitHub and GitLab
 * stand-ins, a real registry with GitLab-style token auth, a real dockerd when this machine can
 * run one), makes one synced and two missing builds, runs the main job — `daemon --once` — with
 * the built binary, then `xref` to show that nothing is missing any more, and cleans up.
 *
 * It says what it starts before each slow step; the tool's own output (progress bars on a
 * terminal) reaches the screen as it happens; no token or password is printed, only the names
 * of the variables that carry them; and each measure is given once — the tool's summary line
 * has the bytes, the demo adds only what the tool cannot see (the requests GitHub answered).
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { BIN } from "../e2e/run-cli.js";
import { seedDemo } from "./demo-data.js";
import { dockerdAvailability, startDockerd, type Dockerd } from "./dockerd.js";
import { startTestbed, testbedExports, testbedGate } from "./index.js";

const gate = testbedGate();
if (gate.skip) {
  process.stderr.write(`demo: ${gate.reason}\n`);
  process.exit(1);
}

const say = (text: string) => process.stdout.write(`${text}\n`);
/** Variables whose values are secrets: shown by name only. */
const SECRET = /TOKEN|PASSWORD/;

/** The built binary with the terminal handed over, so its bars and colours show as they would. */
function runTool(args: string[], env: Record<string, string>, cwd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: cwd, ...env },
      stdio: ["ignore", "inherit", "inherit"],
    });
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? 1));
  });
}

say(
  "gh-gitlab-sync demo: a GitHub workflow's images mirrored into a GitLab registry, on loopback.",
);
say(
  "\nStarting the GitHub and GitLab stand-ins and a real Docker registry with GitLab's token auth ...",
);
const work = await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-demo-"));
const tb = await startTestbed({ dir: path.join(work, "testbed") });
let dockerd: Dockerd | undefined;
let failed = false;
try {
  const docker = dockerdAvailability();
  if (docker.ok) {
    say(
      "Starting a Docker engine (dockerd) in a scratch directory, for the docker push engine ...",
    );
    dockerd = await startDockerd({ dir: work });
  } else {
    say(`(No Docker engine here: ${docker.reason}; pushing with --engine registry.)`);
  }
  const engine = dockerd ? "docker" : "registry";
  say("Making three builds' artifacts: one GitLab already has, two it lacks (x86 and arm) ...");
  await seedDemo(tb);

  const env: Record<string, string> = {
    ...testbedExports(tb),
    ...(dockerd ? { DOCKER_HOST: dockerd.dockerHost } : {}),
  };
  say("\nThe tool reads where everything is, and the credentials, from the environment:");
  for (const [name, value] of Object.entries(env)) {
    say(`  ${name}=${SECRET.test(name) ? "(set; not shown)" : value}`);
  }
  const downloads = ["--downloads-dir", path.join(work, "downloads")];
  const steps: Array<[string, string[]]> = [
    ["What GitHub built that GitLab lacks", ["xref", ...downloads]],
    [
      `The main job: one daemon cycle (the artifact streamed from GitHub, verified and pushed with the ${engine} engine, then cleaned)`,
      ["daemon", "--once", "--engine", engine, ...downloads],
    ],
    [
      "Nothing is missing any more (metadata from the cache: no log downloaded)",
      ["xref", ...downloads],
    ],
  ];
  for (const [title, args] of steps) {
    say(`\n=== ${title}\n$ gh-gitlab-sync ${args.join(" ")}`);
    tb.github.resetRequests();
    const code = await runTool([...args, "--log-format", "pretty"], env, work);
    const api = tb.github.requests.filter((r) => r.host === "api").length;
    say(`(exit ${code}; GitHub answered ${api} API request${api === 1 ? "" : "s"})`);
    if (code !== 0) failed = true;
  }
  say(
    failed
      ? "\nDemo FAILED: see the output above."
      : "\nDemo complete: every image is in the registry.",
  );
} finally {
  say("Stopping the testbed and removing its files ...");
  await dockerd?.stop();
  await tb.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
