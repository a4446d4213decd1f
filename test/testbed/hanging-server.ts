import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { sendJson } from "./http-util.js";

/**
 * A server that accepts connections and never answers: the VPN link that went quiet, the proxy
 * that holds a request forever. Some paths can be given real answers (a registry's `/v2/` that
 * points at a token realm which then hangs), or answered after a delay, so a client gets as far
 * as the step under test and no further. Every request is recorded; `close()` drops every
 * connection still held.
 */
export type HangingRoute = (req: IncomingMessage, res: ServerResponse, url: string) => void;

export interface HangingServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, for a registry address. */
  host: string;
  /** Requests seen so far, as `METHOD /path?query`. */
  requests: string[];
  /** Paths whose requests are answered: the first route whose prefix matches wins. */
  answer(method: string, pathPrefix: string, route: HangingRoute): void;
  /** Requests seen that are held unanswered right now. */
  hanging(): number;
  close(): Promise<void>;
}

export async function startHangingServer(): Promise<HangingServer> {
  const routes: Array<{ method: string; prefix: string; route: HangingRoute }> = [];
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  let held = 0;
  const server: Server = createServer((req, res) => {
    const url = req.url ?? "/";
    requests.push(`${req.method ?? "GET"} ${url}`);
    const found = routes.find(
      (r) => (r.method === "*" || r.method === req.method) && url.startsWith(r.prefix),
    );
    if (found) {
      found.route(req, res, url);
      return;
    }
    // Read the request (a client streaming a body must not block on a full window) and say nothing.
    held += 1;
    req.resume();
    res.on("close", () => (held -= 1));
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  // No timeout of Node's own may end a held request: hanging is the whole point.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    answer(method, pathPrefix, route) {
      routes.push({ method, prefix: pathPrefix, route });
    },
    hanging: () => held,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A route that answers JSON. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    sendJson(res, status, body, headers);
  };
}
