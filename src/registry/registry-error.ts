import { ERROR_BODY_LIMIT } from "../config/limits.js";
import { SyncError, errorCode } from "../errors.js";
import { CERTIFICATE_HINT, isCertificateCode, networkReason, readTextPrefix } from "../net/http.js";
import { serverDelayMs } from "../net/retry.js";
import { oneLine, printable } from "../util/text.js";

/**
 * The registry's failures, worded once (go-containerregistry's `transport.Error`): what the
 * operator reads when a request fails, with the registry's own error code kept alongside.
 */

export const CREDENTIALS_HINT =
  "check --registry-username/--registry-password (or the env vars GITLAB_REGISTRY_USERNAME/" +
  "GITLAB_REGISTRY_PASSWORD, CI_REGISTRY_USER/CI_REGISTRY_PASSWORD); a GitLab token needs the " +
  "read_registry and write_registry scopes";
export const GENERIC_RESUME_HINT = "is it up? check --registry, then rerun";
const PUSH_RESUME_HINT = "is it up? rerun to resume; blobs already uploaded are skipped";

interface RegistryErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
  retryable?: boolean;
  status?: number | undefined;
  code?: string | undefined;
  retryAfterMs?: number | undefined;
  /** Not the image's fault (see SyncError.setupFault): credentials, permissions, no registry. */
  setupFault?: boolean;
}

/** A registry failure; `retryable` marks a transient one the client could not replay itself. */
export class RegistryError extends SyncError {
  readonly retryable: boolean;
  readonly status: number | undefined;
  /** The registry's own error code from its `{"errors":[{"code",…}]}` body, e.g. `BLOB_UNKNOWN`. */
  readonly code: string | undefined;
  /** How long the registry asked to be left alone before another try (`retry-after`). */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: RegistryErrorOptions) {
    super(message, {
      hint: options.hint,
      cause: options.cause,
      setupFault: options.setupFault ?? false,
    });
    this.name = "RegistryError";
    this.retryable = options.retryable ?? false;
    this.status = options.status;
    this.code = options.code;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The same failure with its retries spent: whoever catches it must not try again. */
  final(): RegistryError {
    const { hint, cause, status, code, setupFault } = this;
    return new RegistryError(this.message, { hint, cause, status, code, setupFault });
  }
}

/** A failure another attempt may cure: the network, a 5xx or a 429. */
export function isTransient(err: unknown): err is RegistryError {
  return err instanceof RegistryError && err.retryable;
}

/** Who was asking: the registry and the user the messages name. */
export interface Asker {
  registry: string;
  username: string | undefined;
}

/** The token service or the registry said no to the credentials themselves. */
export function refusedError(asker: Asker, status: number): RegistryError {
  const { registry, username } = asker;
  if (username === undefined) {
    return new RegistryError(`registry ${registry} requires credentials (${status})`, {
      hint: CREDENTIALS_HINT,
      status,
      setupFault: true,
    });
  }
  return new RegistryError(
    `registry ${registry} refused the credentials of user ${username} (${status})`,
    { hint: CREDENTIALS_HINT, status, setupFault: true },
  );
}

/** An https registry named a plain-http address (an upload `Location`) on another origin. */
export function plainHttpAddressError(asker: Asker, url: URL, operation: string): RegistryError {
  return new RegistryError(
    `registry ${asker.registry} is https but handed out a plain-http address (${url.origin}) while ${operation}; refused, nothing sent`,
    { hint: "its front or CDN is misconfigured; ask the registry's administrator" },
  );
}

/** The request never got an answer (refused, reset, timed out). */
export function unreachableError(
  asker: Asker,
  operation: string,
  err: unknown,
  retryable: boolean,
): RegistryError {
  const isUpload = /blob|layer/.test(operation);
  const code = errorCode(err);
  if (isCertificateCode(code)) {
    return new RegistryError(
      `registry ${asker.registry}: cannot verify its TLS certificate while ${operation} (${code})`,
      { hint: CERTIFICATE_HINT, cause: err, retryable: false, setupFault: true },
    );
  }
  return new RegistryError(
    `registry ${asker.registry} unreachable while ${operation} (${codeOf(err)})`,
    {
      hint: isUpload ? PUSH_RESUME_HINT : GENERIC_RESUME_HINT,
      cause: err,
      retryable,
      setupFault: true,
    },
  );
}

/** The error for an answer the caller did not expect; reads (and so consumes) its body. */
export async function statusError(
  asker: Asker,
  res: Response,
  operation: string,
  repository: string,
  retryable = false,
): Promise<RegistryError> {
  const { registry, username } = asker;
  const { code, detail } = await errorBody(res);
  const status = res.status;
  if (status === 401 || status === 403) {
    const who = username === undefined ? "anonymous access" : `user ${username}`;
    return new RegistryError(
      `registry ${registry} denied ${who} on ${repository || "the registry"} while ${operation} (${status}${detail ? `: ${detail}` : ""})`,
      {
        hint:
          username === undefined
            ? CREDENTIALS_HINT
            : "the user needs write access (Developer role, write_registry) to that project",
        status,
        code,
        setupFault: true,
      },
    );
  }
  const what = `registry ${registry} answered ${status}${detail ? ` (${detail})` : ""} while ${operation}`;
  if (status >= 500 || status === 429) {
    return new RegistryError(what, {
      hint: "the registry is failing; rerun later",
      status,
      code,
      retryable,
      retryAfterMs: serverDelayMs(res.headers),
    });
  }
  return new RegistryError(what, {
    hint: "unexpected answer from the registry; rerun with --log-level debug for the requests",
    status,
    code,
  });
}

/** `ECONNREFUSED`, `ECONNRESET`, a timeout in words: what an operator can act on, not "fetch failed". */
export function codeOf(err: unknown): string {
  return networkReason(err);
}

/**
 * The registry's own `{"errors":[{"code","message"}]}`, shortened to one printable line (it is
 * the server's text, shown to the operator). Only the start of a large body is read.
 */
async function errorBody(res: Response): Promise<{ code?: string; detail: string }> {
  let text = "";
  try {
    text = await readTextPrefix(res, ERROR_BODY_LIMIT);
  } catch {
    return { detail: "" };
  }
  try {
    const parsed = JSON.parse(text) as {
      errors?: Array<{ code?: unknown; message?: unknown; detail?: unknown }>;
    };
    const first = parsed.errors?.[0];
    if (first) {
      // The registry's own reason: GitLab puts a size limit's figures in `detail`, Distribution
      // the offending digest or field; an object there is shown as its JSON.
      const reason = typeof first.detail === "string" ? first.detail : JSON.stringify(first.detail);
      const parts = [first.code, first.message, reason].filter(
        (p) => typeof p === "string" && p !== "" && p !== "{}" && p !== "null",
      );
      const detail = printable(oneLine(parts.join(": "), 300));
      return typeof first.code === "string" ? { code: first.code, detail } : { detail };
    }
  } catch {
    // Not JSON: fall through to the raw text.
  }
  return { detail: printable(oneLine(text, 200)) };
}
