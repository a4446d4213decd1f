/**
 * A real Docker engine for tests: Debian's `dockerd` (docker.io 20.10) run as root with every
 * file it writes under one temporary directory, so it never meets a system dockerd or its state.
 *
 * Isolation, flag by flag:
 * - `--data-root`, `--exec-root`, `--pidfile`, `--host`: images, runtime state, pid file and API
 *   socket in the temp dir (the defaults are /var/lib/docker, /var/run/docker, /var/run/docker.pid,
 *   /var/run/docker.sock — a system dockerd's own).
 * - `--config-file` with `deprecated-key-path`: keeps a system /etc/docker/daemon.json (which may
 *   set `hosts` and clash with `--host`) out, and the trust key out of /etc/docker/key.json.
 * - `--containerd`: dockerd 20.10 uses the system containerd whenever
 *   /run/containerd/containerd.sock exists and starts its own only otherwise; that one still puts
 *   its `opt` plugin in /opt/containerd. So the harness starts its own containerd with a config
 *   that keeps root, state, sockets and `opt` in the temp dir, and hands its socket to dockerd.
 * - `--storage-driver vfs --iptables=false --ip6tables=false --bridge=none`: no overlayfs, no
 *   firewall rules, no docker0 bridge — nothing on the host changes.
 * The one path dockerd still touches is /run/docker/plugins (plugin discovery, hard-coded): it
 * only creates the empty directory.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, closeSync, constants, openSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { findOnPath } from "./system.js";

export interface Dockerd {
  /** Path of the engine's API socket. */
  socket: string;
  /** `unix://<socket>`: what DOCKER_HOST (or `--docker-host`) should be. */
  dockerHost: string;
  /** The directory holding everything this engine wrote; removed by stop(). */
  dir: string;
  /** dockerd's own log (stderr), for diagnosing a failed test. */
  logFile: string;
  stop(): Promise<void>;
}

/** A Unix socket path must fit `sun_path` (108 bytes including the NUL). */
const MAX_SOCKET_PATH = 107;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export function dockerdBinary(): string {
  return (
    process.env.DOCKERD_BIN ??
    (isExecutable("/usr/sbin/dockerd")
      ? "/usr/sbin/dockerd"
      : (findOnPath("dockerd") ?? "/usr/sbin/dockerd"))
  );
}

export function containerdBinary(): string {
  return (
    process.env.CONTAINERD_BIN ??
    (isExecutable("/usr/bin/containerd")
      ? "/usr/bin/containerd"
      : (findOnPath("containerd") ?? "/usr/bin/containerd"))
  );
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let verdict: { ok: boolean; reason?: string } | undefined;

/**
 * Whether a real dockerd can run here: binaries present, running as root, and — because a
 * container sandbox can lack what dockerd needs in ways no file check shows — one actual start
 * and `/_ping`. The start happens in a child process so this stays synchronous (test files call
 * it while declaring their suites); the verdict is cached for the life of the process.
 */
export function dockerdAvailability(): { ok: boolean; reason?: string } {
  verdict ??= checkAvailability();
  return verdict;
}

function checkAvailability(): { ok: boolean; reason?: string } {
  if (process.platform !== "linux") {
    return { ok: false, reason: `dockerd testbed needs Linux (this is ${process.platform})` };
  }
  const missing: string[] = [];
  if (!isExecutable(dockerdBinary())) {
    missing.push(`${dockerdBinary()} (apt-get install docker.io, or set DOCKERD_BIN)`);
  }
  if (!isExecutable(containerdBinary())) {
    missing.push(`${containerdBinary()} (apt-get install containerd, or set CONTAINERD_BIN)`);
  }
  if (missing.length > 0) {
    return { ok: false, reason: `dockerd testbed unavailable: missing ${missing.join(" and ")}` };
  }
  if (process.getuid?.() !== 0) {
    return { ok: false, reason: "dockerd testbed unavailable: dockerd must run as root" };
  }
  return probe();
}

const PROBE_FLAG = "--probe-dockerd";

function probe(): { ok: boolean; reason?: string } {
  const self = fileURLToPath(import.meta.url);
  const projectRoot = path.resolve(path.dirname(self), "..", "..");
  // tsx runs this very file, so the probe starts dockerd exactly as the tests will.
  const result = spawnSync(process.execPath, ["--import", "tsx", self, PROBE_FLAG], {
    cwd: projectRoot,
    // tsx would otherwise keep a compile cache in the system's temporary directory.
    env: { ...process.env, TSX_DISABLE_CACHE: "1" },
    encoding: "utf8",
    timeout: START_TIMEOUT_MS + STOP_TIMEOUT_MS * 2 + 10_000,
  });
  const last = result.stdout.trim().split("\n").at(-1) ?? "";
  try {
    const parsed = JSON.parse(last) as { ok: boolean; reason?: string };
    return parsed.ok
      ? { ok: true }
      : { ok: false, reason: `dockerd cannot run here: ${parsed.reason}` };
  } catch {
    const why =
      result.error?.message ?? `${result.stderr.trim().split("\n").slice(-3).join(" | ")}`;
    return { ok: false, reason: `dockerd probe failed: ${why}` };
  }
}

function tail(file: string, lines = 12): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** The most telling line of a dockerd log: the last error or fatal message. */
function lastErrorLine(file: string): string {
  const lines = tail(file, 200).split("\n");
  const bad = lines.filter((l) => /level=(error|fatal)|failed to start/i.test(l)).at(-1);
  return (bad ?? lines.at(-1) ?? "").slice(0, 400);
}

function containerdConfig(dir: string): string {
  const q = (p: string): string => JSON.stringify(p);
  // Version 2 config; every path the defaults would put under /var/lib, /run or /opt moves here.
  return [
    "version = 2",
    `root = ${q(path.join(dir, "root"))}`,
    `state = ${q(path.join(dir, "state"))}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    "[grpc]",
    `  address = ${q(path.join(dir, "containerd.sock"))}`,
    "[ttrpc]",
    `  address = ${q(path.join(dir, "containerd.sock.ttrpc"))}`,
    "[debug]",
    `  address = ${q(path.join(dir, "debug.sock"))}`,
    '  level = "warn"',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(path.join(dir, "opt"))}`,
    '[plugins."io.containerd.runtime.v1.linux"]',
    `  runtime_root = ${q(path.join(dir, "runc"))}`,
    "",
  ].join("\n");
}

/** The dockerd command line for an engine rooted at `root`. */
export function dockerdArgs(root: string): string[] {
  return [
    "--config-file",
    path.join(root, "daemon.json"),
    "--data-root",
    path.join(root, "data"),
    "--exec-root",
    path.join(root, "exec"),
    "--pidfile",
    path.join(root, "docker.pid"),
    "--host",
    `unix://${path.join(root, "docker.sock")}`,
    "--containerd",
    path.join(root, "containerd", "containerd.sock"),
    "--storage-driver",
    "vfs",
    "--iptables=false",
    "--ip6tables=false",
    "--bridge=none",
  ];
}

function spawnLogged(binary: string, args: string[], logFile: string): ChildProcess {
  const log = openSync(logFile, "a");
  try {
    // A minimal environment: a DOCKER_HOST or proxy variable of the caller must not leak in.
    return spawn(binary, args, {
      stdio: ["ignore", log, log],
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
    });
  } finally {
    closeSync(log);
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    // A plain timer would keep the process alive for the whole timeout after a quick exit.
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function terminate(child: ChildProcess, ms: number): Promise<void> {
  if (exited(child)) return;
  child.kill("SIGTERM");
  if (await waitForExit(child, ms)) return;
  child.kill("SIGKILL");
  await waitForExit(child, 2_000);
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", timeout: 1_000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode === 200));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end();
  });
}

async function waitFor(
  what: string,
  socketPath: string,
  child: ChildProcess,
  logFile: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited(child)) {
      throw new Error(
        `${what} exited (${child.exitCode ?? child.signalCode}): ${lastErrorLine(logFile)}`,
      );
    }
    if (await ready()) return;
    await sleep(50);
  }
  throw new Error(
    `${what} did not come up on ${socketPath} within ${START_TIMEOUT_MS / 1000} s: ${lastErrorLine(logFile)}`,
  );
}

/** Mounts dockerd left under `root` when it was killed before it could undo them. */
function mountsUnder(root: string): string[] {
  try {
    return readFileSync("/proc/self/mounts", "utf8")
      .split("\n")
      .map((line) => (line.split(" ")[1] ?? "").replace(/\\040/g, " "))
      .filter((mountPoint) => mountPoint === root || mountPoint.startsWith(`${root}/`))
      .sort((a, b) => b.length - a.length);
  } catch {
    return [];
  }
}

async function removeRoot(root: string): Promise<void> {
  for (const mountPoint of mountsUnder(root)) {
    spawnSync("umount", ["-l", mountPoint], { stdio: "ignore" });
  }
  await rm(root, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Starts containerd and dockerd in a fresh directory under `dir` (default: the system temp dir)
 * and resolves once `/_ping` answers. stop() ends both — SIGTERM, SIGKILL after a timeout — and
 * removes the directory (vfs keeps a full copy of every layer, so it can be large). Both are
 * also killed if the test process exits without calling stop().
 */
export async function startDockerd(options: { dir?: string } = {}): Promise<Dockerd> {
  const parent = options.dir ?? tmpdir();
  await mkdir(parent, { recursive: true });
  const root = await mkdtemp(path.join(parent, "dockerd-"));
  const socket = path.join(root, "docker.sock");
  const containerdDir = path.join(root, "containerd");
  const longest = path.join(containerdDir, "containerd.sock.ttrpc");
  if (Buffer.byteLength(longest) > MAX_SOCKET_PATH) {
    await rm(root, { recursive: true, force: true });
    throw new Error(
      `dockerd testbed: ${root} is too long for Unix socket paths; pass a shorter dir`,
    );
  }
  await mkdir(containerdDir, { recursive: true });
  await writeFile(path.join(containerdDir, "config.toml"), containerdConfig(containerdDir));
  await writeFile(
    path.join(root, "daemon.json"),
    JSON.stringify({ "deprecated-key-path": path.join(root, "key.json") }),
  );
  const logFile = path.join(root, "dockerd.log");
  const containerdLog = path.join(root, "containerd.log");

  const children: ChildProcess[] = [];
  const killOnExit = (): void => {
    for (const child of children) if (!exited(child)) child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  const stop = async (): Promise<void> => {
    process.removeListener("exit", killOnExit);
    // dockerd first: it talks to containerd while shutting down.
    for (const child of [...children].reverse()) await terminate(child, STOP_TIMEOUT_MS);
    await removeRoot(root);
  };

  try {
    const containerd = spawnLogged(
      containerdBinary(),
      ["--config", path.join(containerdDir, "config.toml")],
      containerdLog,
    );
    children.push(containerd);
    const containerdSocket = path.join(containerdDir, "containerd.sock");
    // containerd creates its gRPC socket once it serves; a gRPC call would need a client library.
    await waitFor("containerd", containerdSocket, containerd, containerdLog, () =>
      Promise.resolve(socketExists(containerdSocket)),
    );
    const dockerd = spawnLogged(dockerdBinary(), dockerdArgs(root), logFile);
    children.push(dockerd);
    await waitFor("dockerd", socket, dockerd, logFile, () => ping(socket));
  } catch (err) {
    await stop();
    throw err;
  }
  return { socket, dockerHost: `unix://${socket}`, dir: root, logFile, stop };
}

function socketExists(socketPath: string): boolean {
  try {
    accessSync(socketPath);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether tests that need a real dockerd run. Under CI=true a missing binary is a failure (the
 * setup script installs docker.io); a machine whose sandbox cannot start dockerd at all skips
 * them with the reason in the summary, since no project file can change that.
 */
export function dockerdGate(): { skip: boolean; reason: string } {
  const availability = dockerdAvailability();
  if (availability.ok) return { skip: false, reason: "" };
  const reason = availability.reason ?? "dockerd unavailable";
  if (process.env.CI && /missing/.test(reason)) {
    throw new Error(`CI=true but ${reason} (run scripts/setup-system.sh)`);
  }
  return { skip: true, reason: `skipped: ${reason}` };
}

// `node --import tsx dockerd.ts --probe-dockerd`: the child process behind dockerdAvailability().
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes(PROBE_FLAG)) {
  try {
    const engine = await startDockerd();
    await engine.stop();
    process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    process.stdout.write(`${JSON.stringify({ ok: false, reason })}\n`);
  }
}
