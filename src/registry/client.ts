import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { setTimeout as sleep } from "node:timers/promises";
import { SyncError, describeError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import {
  basicAuthorization,
  parseChallenge,
  pullScope,
  pushScope,
  scopeKey,
  type Challenge,
} from "./auth.js";
import { ANY_MANIFEST, shortDigest } from "./media-types.js";

export interface RetryPolicy {
  /** Tries per request, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface RegistryClientOptions {
  /** `host[:port]`, as in an image reference. */
  registry: string;
  username?: string;
  password?: string;
  /** Plain http even for a remote host (loopback registries get http anyway). */
  insecure?: boolean;
  logger: Logger;
  fetchImpl?: typeof fetch;
  retry?: Partial<RetryPolicy>;
}

export interface ManifestResult {
  mediaType: string;
  /** `sha256:…` of `bytes`, computed here rather than trusted from a header. */
  digest: string;
  bytes: Buffer;
}

export interface StreamedBlob {
  digest: string;
  size: number;
}

export interface StreamUploadOptions {
  signal?: AbortSignal;
  /** What the bytes are, for error messages: "layer sha256:…" (the digest is not known yet). */
  description?: string;
  /** Runs once the source has ended and before the upload is committed; throwing cancels it. */
  beforeCommit?: (blob: StreamedBlob) => void | Promise<void>;
  /** Called with the running count of bytes sent. */
  onBytes?: (sent: number) => void;
}

const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 500, maxDelayMs: 8000 };
/** What a token server may omit: the Docker token spec's default lifetime. */
const DEFAULT_TOKEN_SECONDS = 60;
const CREDENTIALS_HINT =
  "check --registry-username/--registry-password (or the env vars GITLAB_REGISTRY_USERNAME/" +
  "GITLAB_REGISTRY_PASSWORD, CI_REGISTRY_USER/CI_REGISTRY_PASSWORD); a GitLab token needs the " +
  "read_registry and write_registry scopes";
const PUSH_RESUME_HINT = "is it up? rerun to resume; blobs already uploaded are skipped";
const GENERIC_RESUME_HINT = "is it up? check --registry, then rerun";

/** A registry failure; `retryable` marks a transient one the client could not replay itself. */
export class RegistryError extends SyncError {
  readonly retryable: boolean;
  readonly status: number | undefined;

  constructor(
    message: string,
    options: { hint?: string; cause?: unknown; retryable?: boolean; status?: number },
  ) {
    super(message, { hint: options.hint, cause: options.cause });
    this.name = "RegistryError";
    this.retryable = options.retryable ?? false;
    this.status = options.status;
  }
}

/**
 * https, except for loopback registries (which Docker itself treats as insecure, and which is
 * where the testbed runs) or when the operator asks for plain http.
 */
export function registryScheme(host: string, insecure = false): "http" | "https" {
  if (insecure) return "http";
  let name = host;
  if (name.startsWith("[")) name = name.slice(1, name.indexOf("]"));
  else if (name.split(":").length === 2) name = name.slice(0, name.indexOf(":"));
  if (name === "localhost" || name === "::1") return "http";
  if (isIP(name) === 4 && name.startsWith("127.")) return "http";
  return "https";
}

interface Call {
  method: "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";
  url: URL;
  repository: string;
  scopes: string[];
  /** For error messages: "uploading blob sha256:… of x86/presto-coordinator". */
  operation: string;
  headers?: Record<string, string>;
  /** Called per attempt, so that a retry sends the body again. */
  body?: () => Uint8Array | string | Readable;
  /** A body that can be sent only once (being produced as it goes): no retry after it started. */
  once?: AsyncIterable<Uint8Array>;
  /** Overrides the policy, e.g. 1 inside a sequence that is retried as a whole. */
  attempts?: number;
  signal?: AbortSignal | undefined;
}

interface CachedToken {
  scopes: Set<string>;
  token: string;
  expiresAt: number;
}

/**
 * A client of the OCI distribution API for one registry. It answers the registry's
 * authentication challenges itself (Bearer tokens from the realm, or Basic), caches tokens per
 * set of scopes, and retries transient failures with back-off. Every failure it raises is a
 * one-line {@link RegistryError} naming the registry, the repository and the operation.
 */
export class RegistryClient {
  readonly registry: string;
  readonly baseUrl: string;
  private readonly username: string | undefined;
  private readonly password: string | undefined;
  private readonly logger: Logger;
  private readonly fetchImpl: typeof fetch;
  readonly retryPolicy: RetryPolicy;
  private challenge: Challenge | undefined;
  private pinged: Promise<void> | undefined;
  private readonly tokens: CachedToken[] = [];
  private readonly pendingTokens = new Map<string, Promise<string>>();

  constructor(options: RegistryClientOptions) {
    this.registry = options.registry;
    this.baseUrl = `${registryScheme(options.registry, options.insecure)}://${options.registry}`;
    this.username = options.username || undefined;
    this.password = options.password;
    this.logger = options.logger;
    this.fetchImpl = options.fetchImpl ?? fetch;
    this.retryPolicy = { ...DEFAULT_RETRY, ...options.retry };
  }

  /**
   * Checks the credentials the way `docker login` does: a token request with no scope at all,
   * which the realm answers only for a valid user. Succeeds at once on a registry without auth.
   */
  async login(signal?: AbortSignal): Promise<void> {
    await this.ping(signal, "logging in");
    const challenge = this.challenge;
    if (!challenge) return;
    if (this.username === undefined) {
      throw new RegistryError(`registry ${this.registry} requires credentials`, {
        hint: CREDENTIALS_HINT,
      });
    }
    if (challenge.scheme === "bearer") {
      await this.fetchToken([], signal);
      return;
    }
    const res = await this.send({
      method: "GET",
      url: this.url("/v2/"),
      repository: "",
      scopes: [],
      operation: "logging in",
      signal,
    });
    await drain(res);
    if (res.status === 401 || res.status === 403) throw this.refused(res.status);
    if (!res.ok) throw await this.statusError(res, "logging in", "");
  }

  async blobExists(repository: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.blobSize(repository, digest, signal)) !== undefined;
  }

  /** The blob's size when the repository holds it (HEAD), else `undefined`. */
  async blobSize(
    repository: string,
    digest: string,
    signal?: AbortSignal,
  ): Promise<number | undefined> {
    const operation = `checking blob ${shortDigest(digest)} in ${repository}`;
    const res = await this.send({
      method: "HEAD",
      url: this.url(`/v2/${repository}/blobs/${digest}`),
      repository,
      scopes: [pushScope(repository)],
      operation,
      signal,
    });
    await drain(res);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.statusError(res, operation, repository);
    return Number(res.headers.get("content-length") ?? "0");
  }

  /**
   * Asks the registry to link a blob it holds for `fromRepository` into `repository`: no bytes
   * move. `false` when it could not (unknown there, or no pull access to the source); the upload
   * session a refused mount opens is cancelled so it does not linger.
   */
  async mountBlob(
    repository: string,
    digest: string,
    fromRepository: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const operation = `mounting blob ${shortDigest(digest)} into ${repository} from ${fromRepository}`;
    const url = this.url(`/v2/${repository}/blobs/uploads/`);
    url.searchParams.set("mount", digest);
    url.searchParams.set("from", fromRepository);
    const res = await this.send({
      method: "POST",
      url,
      repository,
      scopes: [pushScope(repository), pullScope(fromRepository)],
      operation,
      signal,
    });
    await drain(res);
    if (res.status === 201) return true;
    if (res.status === 202) {
      await this.cancelUpload(res, repository);
      return false;
    }
    // A token without pull on the source repository makes the registry refuse the whole request.
    if (res.status === 401 || res.status === 403) return false;
    throw await this.statusError(res, operation, repository);
  }

  /**
   * Uploads a blob whose digest and size are known: POST, then one PUT with the whole body.
   * `body` is called again for each attempt, so a failed attempt is retried from the start.
   */
  async uploadBlob(
    repository: string,
    digest: string,
    size: number,
    body: () => Readable | Uint8Array,
    signal?: AbortSignal,
  ): Promise<void> {
    const operation = `uploading blob ${shortDigest(digest)} of ${repository}`;
    await this.retrying(signal, async () => {
      const location = await this.startUpload(repository, operation, signal);
      location.searchParams.set("digest", digest);
      const res = await this.send({
        method: "PUT",
        url: location,
        repository,
        scopes: [pushScope(repository)],
        operation,
        headers: { "content-type": "application/octet-stream", "content-length": String(size) },
        body,
        attempts: 1,
        signal,
      });
      await this.expectCreated(res, operation, repository);
    });
  }

  /**
   * Uploads a blob as it is being produced, hashing it on the way: one streamed PATCH, then a
   * PUT naming the digest, which the distribution API allows to come last. The stream cannot be
   * replayed, so a transient failure is raised with `retryable` for the caller to start over.
   */
  async uploadBlobStream(
    repository: string,
    source: AsyncIterable<Uint8Array>,
    options: StreamUploadOptions = {},
  ): Promise<StreamedBlob> {
    const operation = `uploading ${options.description ?? "a blob"} of ${repository}`;
    const { signal } = options;
    const location = await this.retrying(signal, () =>
      this.startUpload(repository, operation, signal),
    );
    const hash = createHash("sha256");
    let size = 0;
    const counted = async function* (): AsyncGenerator<Uint8Array> {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        options.onBytes?.(size);
        yield chunk;
      }
    };
    try {
      const patched = await this.send({
        method: "PATCH",
        url: location,
        repository,
        scopes: [pushScope(repository)],
        operation,
        headers: { "content-type": "application/octet-stream" },
        once: counted(),
        signal,
      });
      if (patched.status !== 202) throw await this.statusError(patched, operation, repository);
      await drain(patched);
      const blob = { digest: `sha256:${hash.digest("hex")}`, size };
      await options.beforeCommit?.(blob);
      const commitOperation = `uploading blob ${shortDigest(blob.digest)} of ${repository}`;
      const commit = this.locationOf(patched, commitOperation);
      commit.searchParams.set("digest", blob.digest);
      const res = await this.send({
        method: "PUT",
        url: commit,
        repository,
        scopes: [pushScope(repository)],
        operation: commitOperation,
        headers: { "content-length": "0" },
        signal,
      });
      await this.expectCreated(res, commitOperation, repository);
      return blob;
    } catch (err) {
      await this.deleteQuietly(location, repository);
      throw err;
    }
  }

  /** The blob's bytes as a stream (used only when a blob cannot be mounted and must be copied). */
  async getBlob(repository: string, digest: string, signal?: AbortSignal): Promise<Readable> {
    const operation = `reading blob ${shortDigest(digest)} of ${repository}`;
    const res = await this.send({
      method: "GET",
      url: this.url(`/v2/${repository}/blobs/${digest}`),
      repository,
      scopes: [pullScope(repository)],
      operation,
      signal,
    });
    if (res.status !== 200 || !res.body) throw await this.statusError(res, operation, repository);
    return Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  }

  /** The manifest under a tag or digest, or `undefined` when the registry has none there. */
  async getManifest(
    repository: string,
    reference: string,
    accept: readonly string[] = ANY_MANIFEST,
    signal?: AbortSignal,
  ): Promise<ManifestResult | undefined> {
    const operation = `reading manifest ${repository}:${reference}`;
    const res = await this.send({
      method: "GET",
      url: this.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      scopes: [pullScope(repository)],
      operation,
      headers: { accept: accept.join(", ") },
      signal,
    });
    if (res.status === 404) {
      await drain(res);
      return undefined;
    }
    if (res.status !== 200) throw await this.statusError(res, operation, repository);
    const bytes = Buffer.from(await res.arrayBuffer());
    const mediaType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    return { mediaType, digest: sha256Digest(bytes), bytes };
  }

  /** Digest of the manifest under a tag or digest (HEAD, no body), or `undefined` if absent. */
  async manifestDigest(
    repository: string,
    reference: string,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const operation = `checking manifest ${repository}:${reference}`;
    const res = await this.send({
      method: "HEAD",
      url: this.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      scopes: [pullScope(repository)],
      operation,
      headers: { accept: ANY_MANIFEST.join(", ") },
      signal,
    });
    await drain(res);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.statusError(res, operation, repository);
    return res.headers.get("docker-content-digest") ?? undefined;
  }

  async tagExists(repository: string, tag: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.manifestDigest(repository, tag, signal)) !== undefined;
  }

  /** Stores a manifest under `reference` (a tag, or a digest for a list's children); returns its digest. */
  async putManifest(
    repository: string,
    reference: string,
    bytes: Uint8Array,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<string> {
    const operation = `writing manifest ${repository}:${reference}`;
    const res = await this.send({
      method: "PUT",
      url: this.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      scopes: [pushScope(repository)],
      operation,
      headers: { "content-type": mediaType },
      body: () => bytes,
      signal,
    });
    await this.expectCreated(res, operation, repository);
    return res.headers.get("docker-content-digest") ?? sha256Digest(bytes);
  }

  // ---------------------------------------------------------------------------------------------

  private url(path: string): URL {
    return new URL(path, this.baseUrl);
  }

  private async startUpload(
    repository: string,
    operation: string,
    signal: AbortSignal | undefined,
  ): Promise<URL> {
    const res = await this.send({
      method: "POST",
      url: this.url(`/v2/${repository}/blobs/uploads/`),
      repository,
      scopes: [pushScope(repository)],
      operation,
      attempts: 1,
      signal,
    });
    if (res.status !== 202) throw await this.statusError(res, operation, repository);
    await drain(res);
    return this.locationOf(res, operation);
  }

  private locationOf(res: Response, operation: string): URL {
    const location = res.headers.get("location");
    if (!location) {
      throw new RegistryError(
        `registry ${this.registry} gave no upload location while ${operation}`,
        {
          hint: "the registry does not speak the distribution API as expected",
          status: res.status,
        },
      );
    }
    return new URL(location, this.baseUrl);
  }

  private async cancelUpload(res: Response, repository: string): Promise<void> {
    const location = res.headers.get("location");
    if (location) await this.deleteQuietly(new URL(location, this.baseUrl), repository);
  }

  /** Best effort: an upload session left open is purged by the registry later anyway. */
  private async deleteQuietly(location: URL, repository: string): Promise<void> {
    try {
      const res = await this.send({
        method: "DELETE",
        url: location,
        repository,
        scopes: [pushScope(repository)],
        operation: `cancelling an upload to ${repository}`,
        attempts: 1,
      });
      await drain(res);
    } catch (err) {
      this.logger.debug({ repository, err: describeError(err) }, "could not cancel an upload");
    }
  }

  private async expectCreated(res: Response, operation: string, repository: string) {
    if (res.status !== 201) throw await this.statusError(res, operation, repository);
    await drain(res);
  }

  /** Runs a multi-request sequence again from its start after a transient failure. */
  private async retrying<T>(
    signal: AbortSignal | undefined,
    sequence: () => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await sequence();
      } catch (err) {
        signal?.throwIfAborted();
        const transient = err instanceof RegistryError && err.retryable;
        if (!transient || attempt >= this.retryPolicy.attempts) {
          throw transient ? finalError(err) : err;
        }
        await this.backoff(attempt, undefined, signal);
      }
    }
  }

  /**
   * One request with authentication and retries. Returns every HTTP answer except transport
   * failures and 5xx/429 after the last attempt, which become RegistryErrors; a 401 that
   * survives a fresh token is returned for the caller to word.
   */
  private async send(call: Call): Promise<Response> {
    await this.ping(call.signal, call.operation);
    const attempts = call.once ? 1 : (call.attempts ?? this.retryPolicy.attempts);
    const scopes = [...call.scopes];
    let reauthorised = false;
    for (let attempt = 1; ; attempt += 1) {
      call.signal?.throwIfAborted();
      const authorization = await this.authorization(scopes, call.signal);
      const started = Date.now();
      let res: Response;
      try {
        res = await this.fetchImpl(call.url, this.init(call, authorization));
      } catch (err) {
        call.signal?.throwIfAborted();
        if (attempt >= attempts) {
          throw this.unreachable(call.operation, err, attempts < this.retryPolicy.attempts);
        }
        await this.backoff(attempt, undefined, call.signal);
        continue;
      }
      this.logger.debug(
        {
          method: call.method,
          path: call.url.pathname,
          status: res.status,
          ms: Date.now() - started,
        },
        "registry request",
      );
      if (res.status === 401 && !reauthorised && !call.once) {
        const challenge = parseChallenge(res.headers.get("www-authenticate"));
        if (challenge) {
          await drain(res);
          this.challenge = challenge;
          // A token that no longer works (expired early, or too narrow) is fetched afresh, with
          // whatever scope the registry says it wants added to ours.
          this.forgetTokens(scopes);
          if (challenge.scope && !scopes.includes(challenge.scope)) scopes.push(challenge.scope);
          reauthorised = true;
          attempt -= 1;
          continue;
        }
      }
      if ((res.status >= 500 || res.status === 429) && attempt < attempts) {
        const retryAfter = res.headers.get("retry-after");
        await drain(res);
        await this.backoff(attempt, retryAfter, call.signal);
        continue;
      }
      if (res.status >= 500 || res.status === 429) {
        throw await this.statusError(
          res,
          call.operation,
          call.repository,
          attempts < this.retryPolicy.attempts,
        );
      }
      return res;
    }
  }

  private init(call: Call, authorization: string | undefined): RequestInit {
    const headers: Record<string, string> = { ...call.headers };
    if (authorization) headers.authorization = authorization;
    const init: RequestInit = { method: call.method, headers, redirect: "follow" };
    if (call.signal) init.signal = call.signal;
    if (call.once) {
      init.body = call.once;
      init.duplex = "half";
    } else if (call.body) {
      const body = call.body();
      if (body instanceof Readable) {
        init.body = body;
        init.duplex = "half";
      } else {
        init.body = body;
      }
    }
    return init;
  }

  /** Learns how the registry authenticates (GET /v2/, as docker does) once per client. */
  private ping(signal: AbortSignal | undefined, operation: string): Promise<void> {
    this.pinged ??= (async () => {
      const url = this.url("/v2/");
      for (let attempt = 1; ; attempt += 1) {
        try {
          const res = await this.fetchImpl(url, { method: "GET", ...(signal ? { signal } : {}) });
          await drain(res);
          if (res.status === 401)
            this.challenge = parseChallenge(res.headers.get("www-authenticate"));
          if (res.status >= 500 && attempt < this.retryPolicy.attempts) {
            await this.backoff(attempt, undefined, signal);
            continue;
          }
          return;
        } catch (err) {
          signal?.throwIfAborted();
          if (attempt >= this.retryPolicy.attempts) {
            throw this.unreachable(operation, err, false);
          }
          await this.backoff(attempt, undefined, signal);
        }
      }
    })();
    // A failed ping is tried again by the next request rather than remembered.
    this.pinged.catch(() => {
      this.pinged = undefined;
    });
    return this.pinged;
  }

  private async authorization(
    scopes: string[],
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === "basic") {
      return this.username !== undefined
        ? basicAuthorization(this.username, this.password ?? "")
        : undefined;
    }
    if (scopes.length === 0) return undefined;
    return `Bearer ${await this.token(scopes, signal)}`;
  }

  private async token(scopes: string[], signal: AbortSignal | undefined): Promise<string> {
    const now = Date.now();
    const cached = this.tokens.find(
      (t) => t.expiresAt > now && scopes.every((scope) => t.scopes.has(scope)),
    );
    if (cached) return cached.token;
    const key = scopeKey(scopes);
    let pending = this.pendingTokens.get(key);
    if (!pending) {
      pending = this.fetchToken(scopes, signal).finally(() => this.pendingTokens.delete(key));
      this.pendingTokens.set(key, pending);
    }
    return pending;
  }

  private forgetTokens(scopes: string[]): void {
    for (let i = this.tokens.length - 1; i >= 0; i -= 1) {
      const token = this.tokens[i];
      if (token && scopes.every((scope) => token.scopes.has(scope))) this.tokens.splice(i, 1);
    }
  }

  /** GET realm?service=…&scope=…&scope=… with Basic credentials, as GitLab's `/jwt/auth` expects. */
  private async fetchToken(scopes: string[], signal: AbortSignal | undefined): Promise<string> {
    const challenge = this.challenge;
    if (!challenge?.realm) {
      throw new RegistryError(`registry ${this.registry} asks for a token but names no realm`, {
        hint: "the registry's auth configuration looks broken; ask its administrator",
      });
    }
    const url = new URL(challenge.realm);
    if (challenge.service) url.searchParams.set("service", challenge.service);
    for (const scope of new Set(scopes)) url.searchParams.append("scope", scope);
    const headers: Record<string, string> = {};
    if (this.username !== undefined) {
      headers.authorization = basicAuthorization(this.username, this.password ?? "");
    }
    const operation = "getting a registry token";
    for (let attempt = 1; ; attempt += 1) {
      let res: Response;
      try {
        res = await this.fetchImpl(url, { headers, ...(signal ? { signal } : {}) });
      } catch (err) {
        signal?.throwIfAborted();
        if (attempt >= this.retryPolicy.attempts) {
          throw new RegistryError(
            `token service ${url.origin} of registry ${this.registry} unreachable (${transportCode(err)})`,
            { hint: GENERIC_RESUME_HINT, cause: err },
          );
        }
        await this.backoff(attempt, undefined, signal);
        continue;
      }
      if ((res.status >= 500 || res.status === 429) && attempt < this.retryPolicy.attempts) {
        await drain(res);
        await this.backoff(attempt, res.headers.get("retry-after"), signal);
        continue;
      }
      if (res.status === 401 || res.status === 403) {
        await drain(res);
        throw this.refused(res.status);
      }
      if (!res.ok) throw await this.statusError(res, operation, "");
      const body = (await res.json().catch(() => ({}))) as {
        token?: unknown;
        access_token?: unknown;
        expires_in?: unknown;
      };
      const token = typeof body.token === "string" ? body.token : body.access_token;
      if (typeof token !== "string" || token === "") {
        throw new RegistryError(`token service of registry ${this.registry} sent no token`, {
          hint: "the registry's auth configuration looks broken; ask its administrator",
        });
      }
      const seconds =
        typeof body.expires_in === "number" && body.expires_in > 0
          ? body.expires_in
          : DEFAULT_TOKEN_SECONDS;
      // Renew a little early so a token does not expire between fetching and using it.
      const margin = Math.min(30, seconds / 4);
      this.tokens.push({
        scopes: new Set(scopes),
        token,
        expiresAt: Date.now() + (seconds - margin) * 1000,
      });
      return token;
    }
  }

  private refused(status: number): RegistryError {
    if (this.username === undefined) {
      return new RegistryError(`registry ${this.registry} requires credentials (${status})`, {
        hint: CREDENTIALS_HINT,
        status,
      });
    }
    return new RegistryError(
      `registry ${this.registry} refused the credentials of user ${this.username} (${status})`,
      { hint: CREDENTIALS_HINT, status },
    );
  }

  private unreachable(operation: string, err: unknown, retryable: boolean): RegistryError {
    const isUpload = /blob|layer/.test(operation);
    return new RegistryError(
      `registry ${this.registry} unreachable while ${operation} (${transportCode(err)})`,
      { hint: isUpload ? PUSH_RESUME_HINT : GENERIC_RESUME_HINT, cause: err, retryable },
    );
  }

  private async statusError(
    res: Response,
    operation: string,
    repository: string,
    retryable = false,
  ): Promise<RegistryError> {
    const detail = await errorDetail(res);
    const status = res.status;
    const what = `registry ${this.registry} answered ${status}${detail ? ` (${detail})` : ""} while ${operation}`;
    if (status === 401 || status === 403) {
      const who = this.username === undefined ? "anonymous access" : `user ${this.username}`;
      return new RegistryError(
        `registry ${this.registry} denied ${who} on ${repository || "the registry"} while ${operation} (${status}${detail ? `: ${detail}` : ""})`,
        {
          hint:
            this.username === undefined
              ? CREDENTIALS_HINT
              : "the user needs write access (Developer role, write_registry) to that project",
          status,
        },
      );
    }
    if (status >= 500 || status === 429) {
      return new RegistryError(what, {
        hint: "the registry is failing; rerun later",
        status,
        retryable,
      });
    }
    return new RegistryError(what, {
      hint: "unexpected answer from the registry; rerun with --log-level debug for the requests",
      status,
    });
  }

  private async backoff(
    attempt: number,
    retryAfter: string | null | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const exponential = Math.min(
      this.retryPolicy.maxDelayMs,
      this.retryPolicy.baseDelayMs * 2 ** (attempt - 1),
    );
    const asked = retryAfter ? Number(retryAfter) * 1000 : NaN;
    const delay = Number.isFinite(asked)
      ? Math.min(asked, 60_000)
      : exponential * (0.75 + Math.random() / 2);
    await sleep(delay, undefined, signal ? { signal } : undefined);
  }
}

/** A transient error that ran out of retries is final: the caller must not retry it again. */
function finalError(err: RegistryError): RegistryError {
  return new RegistryError(err.message, { hint: err.hint, cause: err.cause, status: err.status });
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

async function drain(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // Nothing left to read is fine.
  }
}

/** `ECONNREFUSED`, `ECONNRESET`, …: what an operator searches for, rather than "fetch failed". */
function transportCode(err: unknown): string {
  let current: unknown = err;
  for (let depth = 0; current && depth < 4; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return describeError(err);
}

/** The registry's own `{"errors":[{"code","message"}]}`, shortened to one line. */
async function errorDetail(res: Response): Promise<string> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    return "";
  }
  try {
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = parsed.errors?.[0];
    if (first) return [first.code, first.message].filter((p) => typeof p === "string").join(": ");
  } catch {
    // Not JSON: fall through to the raw text.
  }
  return text.replace(/\s+/g, " ").trim().slice(0, 200);
}
