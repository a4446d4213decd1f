import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type * as Undici from "undici";
import type { Dispatcher } from "undici";
import {
  DEFAULT_CONNECT_TIMEOUT_SECONDS,
  DEFAULT_HTTP_TIMEOUT_SECONDS,
} from "../config/defaults.js";
import { SyncError, describeError, errorCode } from "../errors.js";
import { lazyRequire } from "../lazy.js";
import { formatBytes } from "../util/bytes.js";

/**
 * The one way out to HTTP for everything but the Docker socket: the GitHub API and its blob
 * hosts, the GitLab API, the registry and its token realm all go through {@link HttpClient}.
 * Set up once, it gives every request:
 *   - the proxy the environment names, as curl and Go read it: HTTPS_PROXY for https, HTTP_PROXY
 *     for plain http only, NO_PROXY for both (and their lowercase forms);
 *   - a connect timeout and an idle timeout (no byte for that long), so a server that accepts
 *     and never answers cannot stall a caller;
 *   - redirects followed only to http(s), a bounded number of times, and credentials
 *     (Authorization, PRIVATE-TOKEN, JOB-TOKEN, cookies) dropped when a redirect changes origin.
 * TLS trusts Node's CA store, which NODE_EXTRA_CA_CERTS extends with an in-house CA.
 *
 * Everything goes through undici's own `fetch`, never the global one: loading undici makes its
 * agent the global dispatcher, and Node 20's built-in fetch then mis-sends bodies through it (a
 * doubled content-length). undici loads only when a client is built, so the helpers below can be
 * imported freely.
 */
const undici = lazyRequire<typeof Undici>("undici");

export type Env = Readonly<Record<string, string | undefined>>;

export interface HttpSettings {
  /** Time to establish a connection (TCP and TLS); default 30 s. */
  connectTimeoutMs?: number;
  /** Longest silence while waiting for headers or between body bytes; default 120 s. */
  idleTimeoutMs?: number;
  /** Redirects followed per request; default 5. */
  maxRedirects?: number;
  /** Where the proxy variables are read; the process environment by default. */
  env?: Env;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = DEFAULT_CONNECT_TIMEOUT_SECONDS * 1000;
export const DEFAULT_IDLE_TIMEOUT_MS = DEFAULT_HTTP_TIMEOUT_SECONDS * 1000;
const DEFAULT_MAX_REDIRECTS = 5;
const CREDENTIAL_HEADERS = ["authorization", "private-token", "job-token", "cookie"];

export type HttpInit = RequestInit;
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** A GET answer whose body is a Node stream: no web-stream layer on a multi-GiB download. */
export interface StreamedResponse {
  status: number;
  headers: { get(name: string): string | null };
  /** Destroy it to drop the rest (the connection is not reused then). */
  body: Readable;
}

/**
 * A GET for bulk bytes, under the same rules as {@link HttpClient.fetch} (proxy, timeouts,
 * redirects), its body a Node Readable: undici's own request API, about a quarter faster than
 * `fetch` + `Readable.fromWeb` on a loopback artifact download.
 */
export type StreamGet = (
  url: string | URL,
  init?: { headers?: Record<string, string>; signal?: AbortSignal | undefined },
) => Promise<StreamedResponse>;

/** A {@link StreamGet} over a plain fetch, for callers that were handed only one. */
export function streamGetOf(fetch: FetchLike): StreamGet {
  return async (url, init = {}) => {
    const response = await fetch(url, {
      headers: init.headers ?? {},
      redirect: "follow",
      ...(init.signal ? { signal: init.signal } : {}),
    });
    const body = response.body
      ? Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)
      : Readable.from([]);
    return { status: response.status, headers: response.headers, body };
  };
}

function proxyVariable(env: Env, name: string): string {
  return env[name.toLowerCase()] ?? env[name] ?? "";
}

export class HttpClient {
  readonly dispatcher: Dispatcher;
  /** https's own way out when only HTTP_PROXY is set (see the constructor). */
  private readonly direct: Dispatcher | undefined;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  private readonly maxRedirects: number;

  constructor(settings: HttpSettings = {}) {
    const env = settings.env ?? process.env;
    this.connectTimeoutMs = settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.idleTimeoutMs = settings.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.maxRedirects = settings.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    const httpProxy = proxyVariable(env, "HTTP_PROXY");
    const httpsProxy = proxyVariable(env, "HTTPS_PROXY");
    const agentOptions = {
      connect: { timeout: this.connectTimeoutMs },
      headersTimeout: this.idleTimeoutMs,
      bodyTimeout: this.idleTimeoutMs,
    };
    const proxied = new (undici().EnvHttpProxyAgent)({
      httpProxy,
      httpsProxy,
      noProxy: proxyVariable(env, "NO_PROXY"),
      proxyTunnel: false,
      ...agentOptions,
    });
    if (httpProxy && !httpsProxy) {
      // undici sends https through HTTP_PROXY when HTTPS_PROXY is unset; curl and Go (and the
      // README) do not: HTTP_PROXY is for plain http, so https goes straight to the server.
      const direct = new (undici().Agent)(agentOptions);
      this.direct = direct;
      this.dispatcher = proxied.compose(
        (dispatch) => (options, handler) =>
          String(options.origin).startsWith("https:")
            ? direct.dispatch(options, handler)
            : dispatch(options, handler),
      );
    } else {
      this.dispatcher = proxied;
    }
  }

  /**
   * `fetch`, through the proxy and timeouts above. With `redirect: "manual"` a 3xx comes back as
   * it is (the caller wants the address, not the content); otherwise redirects are followed here
   * under the rules above.
   */
  readonly fetch: FetchLike = async (input, init = {}) => {
    const request = input instanceof Request ? input : undefined;
    let url = new URL(request ? request.url : input instanceof URL ? input.href : input);
    let method = (init.method ?? request?.method ?? "GET").toUpperCase();
    let headers = new Headers(init.headers ?? request?.headers);
    let body = init.body ?? (request ? await bodyOf(request) : undefined);
    const signal = init.signal ?? request?.signal ?? undefined;
    const manual = init.redirect === "manual";
    refuseUnlessHttp(url);
    for (let redirects = 0; ; redirects += 1) {
      const response = await this.send(url, {
        ...(init as object),
        method,
        headers,
        body,
        signal,
        redirect: "manual",
        dispatcher: this.dispatcher,
      } as Parameters<typeof Undici.fetch>[1]);
      const location = response.headers.get("location");
      if (manual || !isRedirect(response.status) || !location) return response;
      await response.body?.cancel().catch(() => undefined);
      const next = this.nextHop(url, location, redirects);
      if (next.origin !== url.origin) headers = withoutCredentials(headers);
      // 303, and 301/302 after a POST, turn into a GET without a body (what browsers and curl do).
      if (
        response.status === 303 ||
        ((response.status === 301 || response.status === 302) && method === "POST")
      ) {
        method = "GET";
        body = undefined;
        headers.delete("content-type");
        headers.delete("content-length");
      } else if (body !== undefined && body !== null && !replayable(body)) {
        throw new SyncError(`${url.origin} redirected a streamed upload (${response.status})`, {
          hint: "point the tool at the final address of the server instead",
        });
      }
      url = next;
    }
  };

  /** See {@link StreamGet}. */
  readonly get: StreamGet = async (input, init = {}) => {
    let url = new URL(input);
    refuseUnlessHttp(url);
    let headers = new Headers(init.headers);
    for (let redirects = 0; ; redirects += 1) {
      const answer = await this.timed(() =>
        this.dispatcher.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: "GET",
          headers: Object.fromEntries(headers),
          signal: init.signal ?? null,
          highWaterMark: STREAM_HIGH_WATER_MARK,
        }),
      );
      // A body dropped with `destroy()` errors with "aborted"; whoever reads it still sees that.
      answer.body.on("error", () => undefined);
      const response: StreamedResponse = {
        status: answer.statusCode,
        headers: headersOf(answer.headers),
        body: answer.body,
      };
      const location = response.headers.get("location");
      if (!isRedirect(response.status) || !location) return response;
      answer.body.destroy();
      const next = this.nextHop(url, location, redirects);
      if (next.origin !== url.origin) headers = withoutCredentials(headers);
      url = next;
    }
  };

  /** Where a redirect leads, refused past the redirect limit or to anything but http(s). */
  private nextHop(url: URL, location: string, redirects: number): URL {
    if (redirects >= this.maxRedirects) {
      throw new SyncError(`${url.origin} redirected more than ${this.maxRedirects} times`, {
        hint: "the server is misconfigured (a redirect loop); report it to its administrator",
      });
    }
    const next = new URL(location, url);
    if (!isHttp(next)) {
      throw new SyncError(`${url.origin} redirected to a ${next.protocol} address; refused`, {
        hint: "only http and https redirects are followed; check the server or its proxy",
      });
    }
    return next;
  }

  /** One exchange; a timeout comes out as an {@link HttpTimeoutError} saying how long it waited. */
  private send(url: URL, init: Parameters<typeof Undici.fetch>[1]): Promise<Response> {
    return this.timed(() => undici().fetch(url, init));
  }

  private async timed<T>(exchange: () => Promise<T>): Promise<T> {
    try {
      return await exchange();
    } catch (err) {
      const code = errorCode(err);
      const waited = describeTimeout(code, this);
      if (code && waited) throw new HttpTimeoutError(waited, code, err);
      throw err;
    }
  }

  /** Ends the client's connections; anything still in flight fails. */
  async close(): Promise<void> {
    await Promise.all([this.dispatcher.destroy(), this.direct?.destroy()]);
  }
}

/** Whether `url` is an address this client goes to: http or https, nothing else. */
export function isHttp(url: URL): boolean {
  return url.protocol === "http:" || url.protocol === "https:";
}

/**
 * Refuses an address that is not http(s) before anything is sent: undici would read a `data:`
 * address itself and fail a `file:` one as "fetch failed", which callers retry — neither is
 * anything a server should hand out.
 */
function refuseUnlessHttp(url: URL): void {
  if (isHttp(url)) return;
  throw new SyncError(`refused to fetch a ${url.protocol} address`, {
    hint: "only http and https addresses are followed; check the server that named it",
  });
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/** Body chunks buffered ahead of the reader: undici's 64 KiB default means more wake-ups. */
const STREAM_HIGH_WATER_MARK = 1 << 20;

/** undici's raw header record (lowercase names, repeated ones as arrays) as a `get`-able. */
function headersOf(
  raw: Record<string, string | string[] | undefined>,
): StreamedResponse["headers"] {
  return {
    get: (name) => {
      const value = raw[name.toLowerCase()];
      return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

function replayable(body: unknown): boolean {
  return typeof body === "string" || body instanceof Uint8Array || body instanceof ArrayBuffer;
}

async function bodyOf(request: Request): Promise<ArrayBuffer | undefined> {
  if (request.body === null) return undefined;
  return request.arrayBuffer();
}

function withoutCredentials(headers: Headers): Headers {
  const copy = new Headers(headers);
  for (const name of CREDENTIAL_HEADERS) copy.delete(name);
  return copy;
}

/** An answer body larger than the caller allows (a hostile or broken server). */
export class BodyTooLargeError extends SyncError {
  constructor(what: string, limit: number) {
    super(`${what} is larger than ${formatBytes(limit)}; refused`, {
      hint: "the server sent far more than such an answer can hold; check the server",
    });
    this.name = "BodyTooLargeError";
  }
}

/** Reads a whole body, refusing one past `limit` bytes (stopping as soon as it goes past). */
export async function readBody(response: Response, limit: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared > limit) {
    await discardBody(response);
    throw new BodyTooLargeError(what, limit);
  }
  const { bytes, cut } = await collect(response, limit);
  if (cut) throw new BodyTooLargeError(what, limit);
  return bytes;
}

/**
 * The first `limit` bytes of a body as text, the rest dropped: for an error answer, whose
 * message is all that is wanted of it however much a server sends.
 */
export async function readTextPrefix(response: Response, limit: number): Promise<string> {
  return (await collect(response, limit)).bytes.toString("utf8");
}

/** Up to `limit` bytes of a body; `cut` when there was more (the rest is cancelled). */
async function collect(
  response: Response,
  limit: number,
): Promise<{ bytes: Buffer; cut: boolean }> {
  if (!response.body) return { bytes: Buffer.alloc(0), cut: false };
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { bytes: Buffer.concat(chunks, size), cut: false };
    const room = limit - size;
    const piece = Buffer.from(value.buffer, value.byteOffset, Math.min(room, value.byteLength));
    chunks.push(piece);
    size += piece.length;
    if (value.byteLength > room) {
      await reader.cancel().catch(() => undefined);
      return { bytes: Buffer.concat(chunks, size), cut: true };
    }
  }
}

export async function readText(response: Response, limit: number, what: string): Promise<string> {
  return (await readBody(response, limit, what)).toString("utf8");
}

/** Discards a body the caller does not need, so the connection can be reused. */
export async function discardBody(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // Nothing left to read is fine.
  }
}

/**
 * Network failures worth another attempt: a reset or cut connection, a timeout, a name lookup
 * that failed for now. A refused connection is left out: nothing listens there.
 */
const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "ECONNABORTED",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

export function isTransientCode(code: string | undefined): boolean {
  return code !== undefined && TRANSIENT_CODES.has(code);
}

/** The words for a timeout code, for messages: "no answer for 120 s". */
export function describeTimeout(
  code: string | undefined,
  client: Pick<HttpClient, "connectTimeoutMs" | "idleTimeoutMs">,
): string | undefined {
  if (code === "UND_ERR_CONNECT_TIMEOUT")
    return `no connection within ${client.connectTimeoutMs / 1000} s (--http-timeout)`;
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
    return `no answer for ${client.idleTimeoutMs / 1000} s (--http-timeout)`;
  }
  return undefined;
}

/** Codes of a TLS certificate that is not trusted, not valid now, or not for the host asked. */
const CERTIFICATE_CODE =
  /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS_CERT_ALTNAME_INVALID/;

export function isCertificateCode(code: string | undefined): boolean {
  return code !== undefined && CERTIFICATE_CODE.test(code);
}

/** What to do when a server's certificate is not trusted: the one place it is said. */
export const CERTIFICATE_HINT =
  "its TLS certificate is not trusted here: point NODE_EXTRA_CA_CERTS at your organisation's CA certificate (PEM), or check the address";

/**
 * A request that hit the connect or idle timeout. It keeps undici's code, so every retry rule
 * that retries a timeout still does; its message says how long was waited, and where.
 */
export class HttpTimeoutError extends Error {
  constructor(
    message: string,
    readonly code: string,
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = "HttpTimeoutError";
  }
}

/**
 * Why a request got no answer, for a message: the timeout in words, else the system's code
 * (`ECONNREFUSED`, what an operator searches for), else the error's own text.
 */
export function networkReason(err: unknown): string {
  let current: unknown = err;
  for (let depth = 0; current instanceof Error && depth < 6; depth += 1) {
    if (current instanceof HttpTimeoutError) return current.message;
    current = current.cause;
  }
  const code = errorCode(err);
  if (code === "UND_ERR_BODY_TIMEOUT")
    return "the answer stopped coming (idle timeout, --http-timeout)";
  return code ?? describeError(err);
}
