import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { registryBinary } from "./system.js";

export const REGISTRY_SERVICE = "container_registry";

/** One line of the registry's access log (Apache combined format, written by the registry itself). */
export interface AccessLogEntry {
  /** The client's address. */
  remote: string;
  method: string;
  /** Path with query, as the client sent it. */
  path: string;
  status: number;
  /** Response body bytes; 0 when the log shows `-`. */
  bytes: number;
  userAgent: string;
}

export interface RegistryProcess {
  /** `127.0.0.1:<port>`: what goes into image references. */
  host: string;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Where the registry keeps its blobs and manifests. */
  storageDir: string;
  stop(): Promise<void>;
  accessLog(): AccessLogEntry[];
}

export interface StartRegistryOptions {
  /** A directory of its own: config, storage and logs go here. */
  dir: string;
  /** The token endpoint clients are sent to, e.g. `http://127.0.0.1:<gitlab port>/jwt/auth`. */
  realm: string;
  issuer: string;
  /** PEM certificate whose key signs the tokens (the `rootcertbundle`). */
  certPath: string;
}

/** A port nobody listens on right now; the registry binds it a moment later. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function registryConfig(options: StartRegistryOptions, port: number, storageDir: string): string {
  // JSON is YAML, and the registry's yaml.v2 parser reads it; no YAML writer needed.
  const config = {
    version: "0.1",
    log: { level: "info", formatter: "text", accesslog: { disabled: false } },
    storage: {
      filesystem: { rootdirectory: storageDir },
      delete: { enabled: true },
      cache: { blobdescriptor: "inmemory" },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString("hex") },
    auth: {
      token: {
        realm: options.realm,
        service: REGISTRY_SERVICE,
        issuer: options.issuer,
        rootcertbundle: options.certPath,
      },
    },
  };
  return JSON.stringify(config, null, 2);
}

// 127.0.0.1 - - [02/Jan/2026:10:00:00 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "curl/8.5.0"
const ACCESS_LINE =
  /^(\S+) \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"/;

export function parseAccessLog(text: string): AccessLogEntry[] {
  const entries: AccessLogEntry[] = [];
  for (const line of text.split("\n")) {
    const m = ACCESS_LINE.exec(line);
    if (!m) continue;
    entries.push({
      remote: m[1] ?? "",
      method: m[2] ?? "",
      path: m[3] ?? "",
      status: Number(m[4]),
      bytes: m[5] === "-" ? 0 : Number(m[5]),
      userAgent: m[6] ?? "",
    });
  }
  return entries;
}

function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

export async function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return Promise.race([
    new Promise<boolean>((resolve) => child.once("exit", () => resolve(true))),
    sleep(ms).then(() => false),
  ]);
}

async function waitUntilServing(url: string, child: ChildProcess, errorLog: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`docker-registry exited with ${child.exitCode}:\n${tail(errorLog)}`);
    }
    try {
      // Any HTTP answer (401 without a token) means the listener is up.
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`docker-registry did not answer on ${url} within 15 s:\n${tail(errorLog)}`);
}

/** Ends a child the harness started: SIGTERM, then SIGKILL if it is still there after `ms`. */
export async function terminate(child: ChildProcess, ms = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  if (!(await waitForExit(child, ms))) {
    child.kill("SIGKILL");
    await waitForExit(child, 2000);
  }
}

/**
 * Spawns a real Distribution registry (`docker-registry serve`) on a free loopback port with
 * GitLab's token auth. The registry writes its access log to stdout, kept in `access.log` so
 * tests can count what went over the wire; everything else goes to `registry.log`.
 */
export async function startRegistry(options: StartRegistryOptions): Promise<RegistryProcess> {
  const storageDir = join(options.dir, "storage");
  await mkdir(storageDir, { recursive: true });
  const accessLogPath = join(options.dir, "access.log");
  const errorLogPath = join(options.dir, "registry.log");
  const configPath = join(options.dir, "config.yml");

  let lastError: unknown;
  // Another process can grab the probed port before the registry binds it; try a few ports.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    await writeFile(configPath, registryConfig(options, port, storageDir));
    const out = openSync(accessLogPath, "a");
    const err = openSync(errorLogPath, "a");
    const child = spawn(registryBinary(), ["serve", configPath], {
      stdio: ["ignore", out, err],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    closeSync(out);
    closeSync(err);
    const host = `127.0.0.1:${port}`;
    const url = `http://${host}`;
    try {
      await waitUntilServing(url, child, errorLogPath);
    } catch (error) {
      lastError = error;
      child.kill("SIGKILL");
      await waitForExit(child, 2000);
      continue;
    }
    // A test run that ends without calling stop() (a crash, a timeout) must not leave a registry behind.
    const killOnExit = (): void => {
      child.kill("SIGKILL");
    };
    process.once("exit", killOnExit);
    return {
      host,
      url,
      storageDir,
      accessLog: () => parseAccessLog(readFileSync(accessLogPath, "utf8")),
      async stop() {
        process.removeListener("exit", killOnExit);
        await terminate(child);
      },
    };
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}
