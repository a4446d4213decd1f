import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Where the Debian package `docker-registry` puts the Distribution binary; overridable for other installs. */
export function registryBinary(): string {
  return process.env.DOCKER_REGISTRY_BIN ?? "/usr/bin/docker-registry";
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable called `name` on PATH, like `command -v`. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Whether this machine can run the real registry with token auth. Tests call it to skip with
 * the reason shown in the summary; the lead decides whether CI turns a skip into a failure.
 */
export function registryAvailability(): { ok: boolean; reason?: string } {
  const missing: string[] = [];
  if (!isExecutable(registryBinary())) {
    missing.push(
      `${registryBinary()} (apt-get install docker-registry, or set DOCKER_REGISTRY_BIN)`,
    );
  }
  if (!findOnPath("openssl")) missing.push("openssl (apt-get install openssl)");
  if (missing.length === 0) return { ok: true };
  return { ok: false, reason: `registry testbed unavailable: missing ${missing.join(" and ")}` };
}
