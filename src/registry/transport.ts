import { Readable } from "node:stream";
import { API_BODY_LIMIT } from "../config/limits.js";
import { registryScheme } from "../domain/reference.js";
import { SyncError, errorCode } from "../errors.js";
import { discardBody, isCertificateCode, readBody, type FetchLike } from "../net/http.js";
import { retry, type RetryInfo, type RetryPolicy } from "../net/retry.js";
import type { Logger } from "../report/logger.js";
import {
  basicAuthorization,
  parseChallenge,
  parseTokenAnswer,
  realmUrl,
  scopeKey,
  type Challenge,
} from "./auth.js";
import {
  CREDENTIALS_HINT,
  GENERIC_RESUME_HINT,
  RegistryError,
  codeOf,
  isTransient,
  plainHttpAddressError,
  refusedError,
  statusError,
  unreachableError,
  type Asker,
} from "./registry-error.js";

/**
 * The registry's HTTP transport, after go-containerregistry's `remote/transport`: every request
 * to a registry goes through {@link RegistryTransport.send}, which answers the authentication
 * challenge (Bearer tokens from the realm, cached per set of scopes, or Basic), retries transient
 * failures through net/retry, and turns what cannot be retried into a one-line
 * {@link RegistryError} naming the registry, the repository and the operation. The distribution
 * API itself (blobs, uploads, manifests) lives in client.ts on top of it.
 */

export interface TransportOptions {
  /** `host[:port]`, as in an image reference. */
  registry: string;
  username?: string;
  password?: string;
  /** Plain http even for a remote host (loopback registries get http anyway). */
  insecure?: boolean;
  logger: Logger;
  /** Where requests go out: the command's HttpClient (proxies, timeouts, safe redirects). */
  fetch: FetchLike;
  retry?: Partial<RetryPolicy>;
}

export interface Call {
  method: "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";
  url: URL;
  repository: string;
  scopes: string[];
  /** For error messages: "uploading blob sha256:… of x86/presto-coordinator". */
  operation: string;
  headers?: Record<string, string>;
  /** Called per attempt, so that a retry sends the body again. */
  body?: () => Uint8Array | string | Readable;
  /** Overrides the policy, e.g. 1 inside a sequence that is retried as a whole. */
  attempts?: number;
  signal?: AbortSignal | undefined;
}

const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 500, maxDelayMs: 8000 };
/** What a token server may omit: the Docker token spec's default lifetime. */
const DEFAULT_TOKEN_SECONDS = 60;
const BROKEN_AUTH_HINT = "the registry's auth configuration looks broken; ask its administrator";

export interface TransientRetryOptions {
  policy: RetryPolicy;
  signal?: AbortSignal | undefined;
  onRetry?: (info: RetryInfo) => void;
  /** The caller starts a larger sequence over after a transient failure: keep it retryable. */
  handOver?: boolean;
}

/**
 * The one retry of the registry code, through net/retry: `operation` again after a transient
 * {@link RegistryError}, waiting what the registry asked for when it said (single requests,
 * the ping, the token fetch and multi-request sequences alike).
 */
export async function retryTransient<T>(
  operation: (attempt: number) => Promise<T>,
  options: TransientRetryOptions,
): Promise<T> {
  try {
    return await retry(operation, {
      policy: options.policy,
      signal: options.signal,
      retryable: (err) => isTransient(err) && (err.retryAfterMs ?? true),
      ...(options.onRetry ? { onRetry: options.onRetry } : {}),
    });
  } catch (err) {
    throw isTransient(err) && !options.handOver ? err.final() : err;
  }
}

interface CachedToken {
  scopes: Set<string>;
  token: string;
  expiresAt: number;
}

export class RegistryTransport {
  readonly registry: string;
  /** `https://host` or `http://host`; for a loopback registry decided by the first request. */
  private base: string;
  /**
   * A loopback registry is tried over https first and spoken to in plain http only when it
   * does not speak TLS — what Docker does for its insecure registries (127.0.0.0/8 among them),
   * so an https registry on loopback (a TLS front, an SSH tunnel to the real one) works as well.
   */
  private tlsUnsettled: boolean;
  readonly retryPolicy: RetryPolicy;
  private readonly asker: Asker;
  private readonly username: string | undefined;
  private readonly password: string | undefined;
  private readonly logger: Logger;
  private readonly fetch: FetchLike;
  private challenge: Challenge | undefined;
  private pinged: Promise<void> | undefined;
  private readonly tokens: CachedToken[] = [];
  private readonly pendingTokens = new Map<string, Promise<string>>();

  constructor(options: TransportOptions) {
    this.registry = options.registry;
    const scheme = registryScheme(options.registry, options.insecure);
    this.tlsUnsettled = scheme === "http" && !options.insecure;
    this.base = `${this.tlsUnsettled ? "https" : scheme}://${options.registry}`;
    this.username = options.username || undefined;
    this.password = options.password;
    this.asker = { registry: this.registry, username: this.username };
    this.logger = options.logger;
    this.fetch = options.fetch;
    this.retryPolicy = { ...DEFAULT_RETRY, ...options.retry };
  }

  get baseUrl(): string {
    return this.base;
  }

  url(path: string): URL {
    return new URL(path, this.base);
  }

  /** A URL made before the first request settled the scheme, moved to the scheme in use. */
  private settled(url: URL): URL {
    const base = new URL(this.base);
    if (url.host !== base.host || url.protocol === base.protocol) return url;
    const moved = new URL(url.href);
    moved.protocol = base.protocol;
    return moved;
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
    const operation = "logging in";
    const res = await this.send({
      method: "GET",
      url: this.url("/v2/"),
      repository: "",
      scopes: [],
      operation,
      signal,
    });
    await discardBody(res);
    if (res.status === 401 || res.status === 403) throw refusedError(this.asker, res.status);
    await this.expectStatus(res, "2xx", operation, "");
  }

  /**
   * One request with authentication and retries. Returns every HTTP answer except transport
   * failures and 5xx/429 after the last attempt, which become RegistryErrors; a 401 that
   * survives a fresh token is returned for the caller to word.
   */
  async send(original: Call): Promise<Response> {
    await this.ping(original.signal, original.operation);
    const call = { ...original, url: this.settled(original.url) };
    const attempts = call.attempts ?? this.retryPolicy.attempts;
    const scopes = [...call.scopes];
    let reauthorised = false;
    return retryTransient(
      async () => {
        let res = await this.request(call, scopes);
        // A 401 from another origin is its own affair: it never gets our credentials anyway.
        const own = call.url.origin === new URL(this.base).origin;
        if (res.status === 401 && own && !reauthorised && this.reauthorise(res, scopes)) {
          reauthorised = true;
          await discardBody(res);
          res = await this.request(call, scopes);
        }
        if (res.status >= 500 || res.status === 429) {
          throw await statusError(this.asker, res, call.operation, call.repository, true);
        }
        return res;
      },
      {
        policy: { ...this.retryPolicy, attempts },
        signal: call.signal,
        handOver: attempts < this.retryPolicy.attempts,
      },
    );
  }

  /**
   * `transport.CheckError`: throws the registry's error for `res` unless its status is one of
   * `expected` ("2xx": any success). The body is left to the caller when the status is right.
   */
  async expectStatus(
    res: Response,
    expected: readonly number[] | "2xx",
    operation: string,
    repository: string,
  ): Promise<void> {
    const ok = expected === "2xx" ? res.ok : expected.includes(res.status);
    if (!ok) throw await statusError(this.asker, res, operation, repository);
  }

  /**
   * One HTTP exchange: the place every request to the registry leaves from. Credentials go only
   * to the registry's own origin: an upload address on another (a CDN, pre-signed) gets none.
   */
  private async request(call: Call, scopes: string[]): Promise<Response> {
    const own = call.url.origin === new URL(this.base).origin;
    if (!own && call.url.protocol === "http:" && this.base.startsWith("https:")) {
      throw plainHttpAddressError(this.asker, call.url, call.operation);
    }
    const authorization = own ? await this.authorization(scopes, call.signal) : undefined;
    const started = Date.now();
    let res: Response;
    try {
      res = await this.fetch(call.url, this.init(call, authorization));
    } catch (err) {
      // The HTTP client's own refusals (a redirect to another scheme, a loop) are final.
      if (err instanceof SyncError) throw err;
      throw unreachableError(this.asker, call.operation, err, true);
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
    return res;
  }

  /**
   * After a 401 with a challenge: a token that no longer works (expired early, or too narrow)
   * is fetched afresh, with whatever scope the registry says it wants added to ours.
   */
  private reauthorise(res: Response, scopes: string[]): boolean {
    const challenge = parseChallenge(res.headers.get("www-authenticate"));
    if (!challenge) return false;
    this.challenge = challenge;
    this.forgetTokens(scopes);
    if (challenge.scope && !scopes.includes(challenge.scope)) scopes.push(challenge.scope);
    return true;
  }

  private init(call: Call, authorization: string | undefined): RequestInit {
    const headers: Record<string, string> = { ...call.headers };
    if (authorization) headers.authorization = authorization;
    const init: RequestInit = { method: call.method, headers, redirect: "follow" };
    if (call.signal) init.signal = call.signal;
    const body = call.body?.();
    if (body === undefined || typeof body === "string" || body instanceof Uint8Array) {
      // Only a stream's length is ours to state: fetch counts the bytes it holds (or none) itself,
      // and Node 20's fetch sends its count beside ours, a doubled header undici 7 refuses.
      delete headers["content-length"];
      if (body !== undefined) init.body = body;
    } else {
      init.body = body;
      init.duplex = "half";
    }
    return init;
  }

  /** Learns how the registry authenticates (GET /v2/, as docker does) once per client. */
  private ping(signal: AbortSignal | undefined, operation: string): Promise<void> {
    this.pinged ??= retryTransient(
      async (attempt) => {
        let res: Response;
        try {
          res = await this.pingOnce(signal);
        } catch (err) {
          if (err instanceof SyncError) throw err;
          throw unreachableError(this.asker, operation, err, true);
        }
        if (res.status === 401) {
          this.challenge = parseChallenge(res.headers.get("www-authenticate"));
        }
        // A registry still failing after the last try is left for the request itself to report.
        if (res.status >= 500 && attempt < this.retryPolicy.attempts) {
          throw await statusError(this.asker, res, operation, "", true);
        }
        await discardBody(res);
      },
      { policy: this.retryPolicy, signal },
    );
    // A failed ping is tried again by the next request rather than remembered.
    this.pinged.catch(() => {
      this.pinged = undefined;
    });
    return this.pinged;
  }

  /** GET /v2/; on a loopback registry, over https first and plain http if it does not speak TLS. */
  private async pingOnce(signal: AbortSignal | undefined): Promise<Response> {
    const get = () =>
      this.fetch(this.url("/v2/"), { method: "GET", ...(signal ? { signal } : {}) });
    if (!this.tlsUnsettled) return get();
    try {
      const res = await get();
      this.tlsUnsettled = false;
      return res;
    } catch (err) {
      // A certificate that is not trusted is TLS all the same: that is the error to report.
      if (signal?.aborted || isCertificateCode(errorCode(err))) throw err;
      this.tlsUnsettled = false;
      this.base = `http://${this.registry}`;
      this.logger.debug(
        { registry: this.registry, code: errorCode(err) },
        "loopback registry does not speak TLS; plain http, as Docker does",
      );
      return get();
    }
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
        hint: BROKEN_AUTH_HINT,
      });
    }
    const url = realmUrl(challenge.realm, this.registry, this.baseUrl.startsWith("http:"));
    if (challenge.service) url.searchParams.set("service", challenge.service);
    for (const scope of new Set(scopes)) url.searchParams.append("scope", scope);
    const headers: Record<string, string> = {};
    if (this.username !== undefined) {
      headers.authorization = basicAuthorization(this.username, this.password ?? "");
    }
    const operation = "getting a registry token";
    const res = await retryTransient(
      async () => {
        let res: Response;
        try {
          res = await this.fetch(url, { headers, ...(signal ? { signal } : {}) });
        } catch (err) {
          if (err instanceof SyncError) throw err;
          throw new RegistryError(
            `token service ${url.origin} of registry ${this.registry} unreachable (${codeOf(err)})`,
            { hint: GENERIC_RESUME_HINT, cause: err, retryable: true },
          );
        }
        if (res.status >= 500 || res.status === 429) {
          throw await statusError(this.asker, res, operation, "", true);
        }
        return res;
      },
      { policy: this.retryPolicy, signal },
    );
    if (res.status === 401 || res.status === 403) {
      await discardBody(res);
      throw refusedError(this.asker, res.status);
    }
    await this.expectStatus(res, "2xx", operation, "");
    const body = parseTokenAnswer(
      await readBody(res, API_BODY_LIMIT, `the answer of token service ${url.origin}`),
    );
    const token = typeof body.token === "string" ? body.token : body.access_token;
    if (typeof token !== "string" || token === "") {
      throw new RegistryError(`token service of registry ${this.registry} sent no token`, {
        hint: BROKEN_AUTH_HINT,
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
