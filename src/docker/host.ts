/**
 * Where the Docker engine is, from a DOCKER_HOST-style address. Resolved here rather than left to
 * dockerode because dockerode always reads the DOCKER_HOST variable and lets it win over an
 * explicit socket path, and because error messages must name the address actually used.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import type Docker from "dockerode";
import { UsageError, describeError } from "../errors.js";

export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";

export interface ResolvedDockerHost {
  /** The address as the operator would recognise it: `unix:///…`, `tcp://host:port`, `ssh://…`. */
  address: string;
  /** What dockerode needs to connect there. */
  options: Docker.DockerOptions;
}

const HINT = "use unix:///path/to/docker.sock, tcp://host:port or ssh://user@host";

export function resolveDockerHost(
  dockerHost: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedDockerHost {
  const address = dockerHost?.trim() || env.DOCKER_HOST?.trim() || DEFAULT_DOCKER_HOST;
  if (address.startsWith("unix://")) {
    const socketPath = address.slice("unix://".length);
    if (!socketPath) throw new UsageError(`DOCKER_HOST ${address} names no socket`, HINT);
    // `host: undefined` overrides the tcp host dockerode would take from the environment.
    return { address, options: { socketPath, host: undefined, port: undefined } };
  }
  if (address.startsWith("/")) {
    return { address: `unix://${address}`, options: { socketPath: address, host: undefined } };
  }
  let url: URL;
  try {
    url = new URL(address.includes("://") ? address : `tcp://${address}`);
  } catch (err) {
    throw new UsageError(`DOCKER_HOST ${address} is not an address (${describeError(err)})`, HINT);
  }
  if (url.protocol === "ssh:") {
    return {
      address,
      options: {
        protocol: "ssh",
        host: url.hostname,
        port: url.port || 22,
        ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
        sshOptions: { agent: env.SSH_AUTH_SOCK },
      },
    };
  }
  if (url.protocol === "tcp:" || url.protocol === "http:" || url.protocol === "https:") {
    // The docker CLI's rules: TLS when asked for (DOCKER_TLS_VERIFY) or on the TLS port 2376.
    const tls = url.protocol === "https:" || env.DOCKER_TLS_VERIFY === "1" || url.port === "2376";
    const port = url.port || (tls ? "2376" : "2375");
    if (!tls) return { address, options: { protocol: "http", host: url.hostname, port } };
    return {
      address,
      options: { protocol: "https", host: url.hostname, port, ...tlsFiles(env, address) },
    };
  }
  throw new UsageError(`DOCKER_HOST ${address}: unsupported scheme ${url.protocol}`, HINT);
}

function tlsFiles(
  env: NodeJS.ProcessEnv,
  address: string,
): { ca: Buffer; cert: Buffer; key: Buffer } {
  const dir = env.DOCKER_CERT_PATH || path.join(homedir(), ".docker");
  try {
    return {
      ca: readFileSync(path.join(dir, "ca.pem")),
      cert: readFileSync(path.join(dir, "cert.pem")),
      key: readFileSync(path.join(dir, "key.pem")),
    };
  } catch (err) {
    throw new UsageError(
      `Docker engine at ${address} needs TLS, but the client certificates in ${dir} cannot be read (${describeError(err)})`,
      "set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem",
    );
  }
}
