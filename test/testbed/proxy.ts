/**
 * A real HTTP proxy for the tests: Debian's `tinyproxy`, run in the foreground (`-d`) with a
 * config of its own (loopback only, a free port, its own log file at `LogLevel Info`). Its log
 * names every request it was asked to carry — `GET http://host:port/…` for plain http, `CONNECT
 * host:port` for https — which is how a test proves that a request went through the proxy, or
 * (NO_PROXY) that it did not.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort, terminate, waitForExit } from "./registry.js";
import { findOnPath } from "./system.js";

export interface ProxyRequest {
  method: string;
  /** `host:port` the proxy was asked to reach. */
  host: string;
  /** The request target as logged: an absolute URL, or `host:port` for CONNECT. */
  target: string;
}

/** Where the proxy's connections to servers come from (still loopback, but not 127.0.0.1). */
export const PROXY_OUTGOING_ADDRESS = "127.0.0.2";

export interface TinyProxy {
  /** `http://127.0.0.1:<port>`: what HTTPS_PROXY and HTTP_PROXY take. */
  url: string;
  logFile: string;
  /** Every request in the log, oldest first (from `since`, a value of mark()). */
  requests(since?: number): ProxyRequest[];
  /** The distinct `host:port`s reached (from `since`). */
  hosts(since?: number): string[];
  /** A position in the log: requests(mark()) later shows only what came after. */
  mark(): number;
  stop(): Promise<void>;
}

export function tinyproxyBinary(): string | undefined {
  return process.env.TINYPROXY_BIN ?? findOnPath("tinyproxy") ?? undefined;
}

/** Whether the tests that need a proxy can run; under CI=true a missing proxy is a failure. */
export function proxyGate(): { skip: boolean; reason: string } {
  if (tinyproxyBinary()) return { skip: false, reason: "" };
  const reason = "tinyproxy is missing (apt-get install tinyproxy, or npm run setup:system)";
  if (process.env.CI) throw new Error(`CI=true but ${reason}`);
  return { skip: true, reason: `skipped: ${reason}` };
}

// CONNECT   Dec 01 08:57:12.786 [1460]: Request (file descriptor 5): GET http://127.0.0.1:45407/ HTTP/1.1
const REQUEST_LINE = /: Request \(file descriptor \d+\): (\S+) (\S+) HTTP\/[\d.]+$/;

function hostOf(method: string, target: string): string {
  if (method === "CONNECT") return target;
  try {
    const url = new URL(target);
    return url.port ? url.host : `${url.hostname}:${url.protocol === "https:" ? 443 : 80}`;
  } catch {
    return target;
  }
}

export function parseProxyLog(text: string): ProxyRequest[] {
  const requests: ProxyRequest[] = [];
  for (const line of text.split("\n")) {
    const m = REQUEST_LINE.exec(line.trimEnd());
    if (!m?.[1] || !m[2]) continue;
    requests.push({ method: m[1], target: m[2], host: hostOf(m[1], m[2]) });
  }
  return requests;
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Starts tinyproxy on a free loopback port with its files under `dir`; resolves once it accepts. */
export async function startTinyproxy(options: { dir: string }): Promise<TinyProxy> {
  const binary = tinyproxyBinary();
  if (!binary) throw new Error("tinyproxy is not installed (apt-get install tinyproxy)");
  await mkdir(options.dir, { recursive: true });
  const logFile = path.join(options.dir, "tinyproxy.log");
  const configFile = path.join(options.dir, "tinyproxy.conf");
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    await writeFile(
      configFile,
      [
        "Listen 127.0.0.1",
        `Port ${port}`,
        "Allow 127.0.0.1",
        // Its own outgoing address, so a server can tell a request the proxy carried from one
        // that went around it.
        `Bind ${PROXY_OUTGOING_ADDRESS}`,
        `LogFile "${logFile}"`,
        "LogLevel Info",
        "Timeout 120",
        "MaxClients 64",
        "",
      ].join("\n"),
    );
    const child = spawn(binary, ["-d", "-c", configFile], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null && !(await listening(port))) {
      await sleep(25);
    }
    if (child.exitCode !== null || !(await listening(port))) {
      lastError = `tinyproxy did not start on port ${port}: ${stderr.trim() || `exit ${child.exitCode}`}`;
      child.kill("SIGKILL");
      await waitForExit(child, 2000);
      continue;
    }
    const killOnExit = (): void => void child.kill("SIGKILL");
    process.once("exit", killOnExit);
    const read = (since = 0) => {
      try {
        return readFileSync(logFile, "utf8").slice(since);
      } catch {
        return "";
      }
    };
    return {
      url: `http://127.0.0.1:${port}`,
      logFile,
      requests: (since) => parseProxyLog(read(since)),
      hosts: (since) => [...new Set(parseProxyLog(read(since)).map((r) => r.host))],
      mark: () => read().length,
      async stop() {
        process.removeListener("exit", killOnExit);
        await terminate(child);
      },
    };
  }
  throw new Error(lastError);
}
