import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { IncomingHttpHeaders } from "node:http";
import type { Socket } from "node:net";

/** A request as the front received it, body whole: what an interception rule looks at. */
export interface FrontRequest {
  method: string;
  /** Path and query, as the client sent them. */
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** The front's own answer to a request it does not forward. */
export interface FrontAnswer {
  status: number;
  headers?: Record<string, string>;
  /** A JSON body is sent as `application/json`. */
  body?: string | Record<string, unknown>;
}

/**
 * A request the front answers itself instead of forwarding it, as a real front or registry
 * misbehaves: a PATCH answered 404 (the session lost) or 416, a manifest refused, a body over a
 * size limit. Spent after `times` matches (default 1; `Infinity` for always).
 */
export interface Interception {
  match: (request: FrontRequest) => boolean;
  answer: FrontAnswer | ((request: FrontRequest) => FrontAnswer);
  times?: number;
}

/**
 * Matching requests held back, not forwarded, until `release` settles: a client stopped while
 * it waits (kill -9 between two writes), or two writers made to interleave in a given order.
 * `onHeld` is told of each request as it is held. Spent after `times` matches (default 1).
 */
export interface Hold {
  match: (request: FrontRequest) => boolean;
  release: Promise<unknown>;
  onHeld?: (request: FrontRequest) => void;
  times?: number;
}

/** The registry's error body, as Distribution words one. */
export function registryErrorBody(code: string, message: string, detail?: unknown) {
  return { errors: [{ code, message, ...(detail === undefined ? {} : { detail }) }] };
}

/**
 * An HTTP proxy in front of the registry as nginx sits in front of GitLab's: each request is
 * buffered whole before it is forwarded, so a request cut in transit never reaches the registry
 * (Distribution throws away an upload whose PATCH arrived in part; see BENCH.md). On demand it
 * cuts: once the request bodies it has received pass a given byte count, the connection that
 * carried them is closed mid-request, and the proxy may then refuse connections for a while, as
 * a link that drops and comes back. It counts what clients sent over the wire, cut requests
 * included: the figure B9 compares.
 */
export class CuttingProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Body bytes received from clients since the counts were reset. */
  bodyBytes = 0;
  /** Request bytes on the wire (headers and bodies, cut requests included). */
  private closedWireBytes = 0;
  private cuts: number[] = [];
  private failNext = 0;
  private failAfterCut = 0;
  private interceptions: Array<Interception & { remaining: number }> = [];
  private holds: Array<Hold & { remaining: number }> = [];
  private locationOrigin: string | undefined;
  /** Requests the front answered itself, in order. */
  readonly intercepted: FrontRequest[] = [];
  /** Requests cut so far. */
  cutCount = 0;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Bytes clients sent, headers and cut requests included. */
  get wireBytes(): number {
    let live = 0;
    for (const socket of this.sockets) live += socket.bytesRead;
    return this.closedWireBytes + live;
  }

  /**
   * Cuts the request in flight when the body bytes received (counted from now) pass each of
   * `points`; after each cut the next `thenFail` requests are cut as they arrive too, as a link
   * that stays down for a moment.
   */
  cutAt(points: number[], thenFail = 0): void {
    this.resetCounts();
    this.cuts = [...points].sort((a, b) => a - b);
    this.failAfterCut = thenFail;
    this.failNext = 0;
  }

  /** Answers matching requests itself from now on (see {@link Interception}). */
  intercept(rule: Interception): void {
    this.interceptions.push({ ...rule, remaining: rule.times ?? 1 });
  }

  /** Holds matching requests back from now on (see {@link Hold}). */
  hold(rule: Hold): void {
    this.holds.push({ ...rule, remaining: rule.times ?? 1 });
  }

  /**
   * Puts every upload `Location` the registry answers with on `origin` instead (a CDN or a
   * second front, as GitLab behind a CDN hands out); `undefined` stops it.
   */
  moveLocationsTo(origin: string | undefined): void {
    this.locationOrigin = origin;
  }

  resetCounts(): void {
    this.bodyBytes = 0;
    this.closedWireBytes = 0;
    for (const socket of this.sockets) this.closedWireBytes -= socket.bytesRead;
    this.cutCount = 0;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => {
        this.closedWireBytes += socket.bytesRead;
        this.sockets.delete(socket);
      });
    });
    server.requestTimeout = 0;
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", resolve));
    const address = server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    this.server = server;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.failNext > 0) {
      this.failNext -= 1;
      this.cutCount += 1;
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let cut = false;
    req.on("data", (chunk: Buffer) => {
      if (cut) return;
      this.bodyBytes += chunk.length;
      const next = this.cuts[0];
      if (next !== undefined && this.bodyBytes >= next) {
        this.cuts.shift();
        this.cutCount += 1;
        cut = true;
        this.failNext = this.failAfterCut;
        req.socket.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (cut) return;
      const body = Buffer.concat(chunks);
      const request: FrontRequest = {
        method: req.method ?? "GET",
        path: req.url ?? "/",
        headers: req.headers,
        body,
      };
      const held = takeRule(this.holds, request);
      if (held) {
        held.onHeld?.(request);
        // Settled either way: a rejected release lets the request go on as well.
        void held.release.then(
          () => this.answer(req, res, request),
          () => this.answer(req, res, request),
        );
        return;
      }
      this.answer(req, res, request);
    });
  }

  /** Answers a request it intercepts itself; forwards the rest. */
  private answer(req: IncomingMessage, res: ServerResponse, request: FrontRequest): void {
    const rule = takeRule(this.interceptions, request);
    if (rule) {
      this.intercepted.push(request);
      sendAnswer(res, typeof rule.answer === "function" ? rule.answer(request) : rule.answer);
      return;
    }
    const body = request.body;
    const headers = { ...req.headers };
    // The body is sent whole: its length is known now, however it came in.
    delete headers["transfer-encoding"];
    headers["content-length"] = String(body.length);
    const upstream = httpRequest(
      {
        host: this.target.host,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers,
      },
      (answer) => {
        const location = answer.headers.location;
        if (this.locationOrigin && location) {
          const moved = new URL(location, `http://${this.host}`);
          answer.headers.location = `${this.locationOrigin}${moved.pathname}${moved.search}`;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    upstream.end(body);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** The first rule matching `request`, counted; a rule whose count is spent leaves `rules`. */
function takeRule<R extends { match: (request: FrontRequest) => boolean; remaining: number }>(
  rules: R[],
  request: FrontRequest,
): R | undefined {
  const index = rules.findIndex((r) => r.match(request));
  const rule = rules[index];
  if (!rule) return undefined;
  rule.remaining -= 1;
  if (rule.remaining <= 0) rules.splice(index, 1);
  return rule;
}

function sendAnswer(res: ServerResponse, answer: FrontAnswer): void {
  const body = answer.body;
  const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  const type = typeof body === "string" ? "text/plain" : "application/json";
  res.writeHead(answer.status, {
    ...(body === undefined ? {} : { "content-type": type }),
    "content-length": String(Buffer.byteLength(text)),
    ...answer.headers,
  });
  res.end(text);
}

/** One request as it reached the CDN: which headers came with it. */
export interface CdnRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

/**
 * The "CDN" a front hands upload addresses out on: another origin, which logs which headers
 * reached it and forwards each request to the registry. A pre-signed address carries its own
 * authority, so the CDN authorises the forwarded request itself (`authorize` gives the header
 * for a path): the client must send it no credentials.
 */
export class CdnServer {
  private server: Server | undefined;
  readonly requests: CdnRequest[] = [];
  port = 0;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly authorize: (path: string) => string | undefined,
  ) {}

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const path = req.url ?? "/";
      this.requests.push({ method: req.method ?? "GET", path, headers: req.headers });
      const headers = { ...req.headers, host: `127.0.0.1:${this.port}` };
      delete headers.authorization;
      const authorization = this.authorize(path);
      if (authorization) headers.authorization = authorization;
      const upstream = httpRequest(
        { host: this.target.host, port: this.target.port, method: req.method, path, headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    server.requestTimeout = 0;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    server?.closeAllConnections();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
