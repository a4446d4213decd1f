/**
 * Small hostile HTTP servers for the tests of issue 13: each records what it was sent, and can
 * answer with a body that never ends. Closed by the test that started them.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { onTestFinished } from "vitest";

export interface HostileServer {
  url: string;
  /** The headers of every request this server received, in order. */
  seen: IncomingHttpHeaders[];
  /** The path and query of every request, in order. */
  paths: string[];
}

/** A server on a free loopback port, closed when the test ends. */
export async function hostileServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<HostileServer> {
  const seen: IncomingHttpHeaders[] = [];
  const paths: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    paths.push(req.url ?? "");
    // A client that hangs up on an endless body is what these servers expect.
    res.on("error", () => undefined);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, paths };
}

/** A body that never ends (chunked, no length): only the reader's own ceiling stops it. */
export function endlessBody(res: ServerResponse, contentType: string, prefix = ""): void {
  res.writeHead(200, { "content-type": contentType });
  if (prefix) res.write(prefix);
  const chunk = Buffer.alloc(256 * 1024, 0x41);
  const pump = (): void => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once("drain", pump);
  };
  pump();
}
