import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";

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
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      upstream.end(body);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
