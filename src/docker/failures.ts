/**
 * Engine and registry failures turned into one-line SyncErrors that say what failed and what to
 * do next. The engine reports registry trouble as free text (an HTTP error body or a message in
 * the progress stream), so the kind of failure is read from the wording the engine uses.
 */
import { SyncError, describeError, errorCode } from "../errors.js";
import { oneLine } from "../util/text.js";

export const UNREACHABLE_HINT =
  "start dockerd, set DOCKER_HOST, or use --engine registry (needs no daemon)";

/** Error codes of a socket or TCP connection that never reached the engine. */
const CONNECTION_CODES = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "EACCES",
  "EPERM",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENOTSOCK",
]);

/** What dockerode's modem attaches to an error: the engine's HTTP answer. */
interface ModemErrorFields {
  statusCode?: unknown;
  json?: unknown;
  name?: unknown;
}

function fields(err: unknown): ModemErrorFields {
  return typeof err === "object" && err !== null ? err : {};
}

/** The errno code when the engine could not be reached at all; undefined for engine answers. */
export function connectionCode(err: unknown): string | undefined {
  const code = errorCode(err);
  if (code !== undefined && CONNECTION_CODES.has(code)) return code;
  if (fields(err).name === "TimeoutError") return "timed out";
  return undefined;
}

export function httpStatus(err: unknown): number | undefined {
  const { statusCode } = fields(err);
  return typeof statusCode === "number" ? statusCode : undefined;
}

/** The engine's own words: the `message` of its JSON error body, without dockerode's prefix. */
export function engineDetail(err: unknown): string {
  const { json } = fields(err);
  if (typeof json === "object" && json !== null && !Buffer.isBuffer(json)) {
    const message = (json as { message?: unknown }).message;
    if (typeof message === "string" && message) return oneLine(message);
  }
  if (Buffer.isBuffer(json) && json.length > 0) return oneLine(json.toString("utf8"));
  return oneLine(describeError(err).replace(/^\(HTTP code \d+\) [^-]*- /, ""));
}

export function unreachable(address: string, code: string, cause?: unknown): SyncError {
  const hint =
    code === "EACCES" || code === "EPERM"
      ? `no permission on the socket: run as root or a member of the docker group; or ${UNREACHABLE_HINT}`
      : UNREACHABLE_HINT;
  return new SyncError(`Docker engine not reachable at ${address} (${code})`, {
    hint,
    cause,
    setupFault: true,
  });
}

export type RegistryAction = "push" | "pull" | "log in to";

export interface RegistryFailureContext {
  action: RegistryAction;
  /** The image reference; absent for a login. */
  reference?: string;
  registry: string;
  username?: string;
}

type FailureKind =
  "credentials" | "denied" | "unreachable" | "missing-local" | "not-found" | "other";

export function classifyRegistryFailure(detail: string): FailureKind {
  const text = detail.toLowerCase();
  if (/does not exist locally|no such image/.test(text)) return "missing-local";
  if (
    /incorrect username or password|unauthorized|authentication required|status: 401|\b401 unauthorized/.test(
      text,
    )
  ) {
    return "credentials";
  }
  if (/denied|insufficient_scope|forbidden|status: 403/.test(text)) return "denied";
  if (
    /connection refused|no such host|i\/o timeout|dial tcp|server gave http response to https client|x509|tls:|connection reset|no route to host/.test(
      text,
    )
  ) {
    return "unreachable";
  }
  if (/manifest unknown|not found|name unknown|unknown blob/.test(text)) return "not-found";
  return "other";
}

const CREDENTIAL_FLAGS = "--registry-username and --registry-password";

/** A failed push, pull or login, worded for its cause. */
export function registryFailure(
  context: RegistryFailureContext,
  detail: string,
  cause?: unknown,
): SyncError {
  const { action, reference, registry, username } = context;
  const what = reference
    ? `Cannot ${action} ${reference}`
    : `Cannot ${action} registry ${registry}`;
  const user = username ? `user ${username}` : "anonymous access";
  const text = oneLine(detail);
  switch (classifyRegistryFailure(text)) {
    case "credentials":
      return new SyncError(
        `${what}: registry ${registry} refused the credentials of ${user} (${text})`,
        {
          hint: `check ${CREDENTIAL_FLAGS} (a GitLab deploy token or access token with the registry scopes)`,
          cause,
          setupFault: true,
        },
      );
    case "denied":
      return new SyncError(`${what}: registry ${registry} denied access to ${user} (${text})`, {
        hint:
          action === "pull"
            ? `check that the image exists and that ${CREDENTIAL_FLAGS} may read it`
            : `the user needs write access to the project's registry (read_registry and write_registry scopes); check ${CREDENTIAL_FLAGS} and the image path`,
        cause,
        setupFault: true,
      });
    case "unreachable":
      return new SyncError(
        `${what}: the Docker engine cannot reach registry ${registry} (${text})`,
        {
          hint: "check --registry and that the registry is up; a plain-http registry outside 127.0.0.0/8 must be in the engine's insecure-registries",
          cause,
          setupFault: true,
        },
      );
    case "missing-local":
      return new SyncError(`${what}: the Docker engine has no such image (${text})`, {
        hint: "load and tag the image first (push step), or push the tarball with --engine registry",
        cause,
      });
    case "not-found":
      return new SyncError(`${what}: not found in registry ${registry} (${text})`, {
        hint: "check the image path and tag (gitlab-list shows what the registry holds)",
        cause,
      });
    default:
      return new SyncError(`${what}: ${text}`, {
        hint: "see the Docker engine's log (journalctl -u docker), retry, or use --engine registry (needs no daemon)",
        cause,
      });
  }
}
