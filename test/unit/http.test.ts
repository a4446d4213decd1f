import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { describeError, errorCode } from "../../src/errors.js";
import { HttpClient, networkReason, readBody } from "../../src/net/http.js";

const servers: Server[] = [];
const clients: HttpClient[] = [];

async function serve(
  handler: Parameters<typeof createServer>[1],
): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function client(settings: ConstructorParameters<typeof HttpClient>[0] = {}): HttpClient {
  const http = new HttpClient({ env: {}, ...settings });
  clients.push(http);
  return http;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

describe("HttpClient", () => {
  it("drops credentials on a redirect to another origin, keeps them on the same one", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const other = await serve((req, res) => {
      seen.push(req.headers);
      res.end("elsewhere");
    });
    const home = await serve((req, res) => {
      seen.push(req.headers);
      if (req.url === "/start") res.writeHead(302, { location: "/same" }).end();
      else res.writeHead(302, { location: `${other.url}/x` }).end();
    });
    const response = await client().fetch(`${home.url}/start`, {
      headers: { authorization: "Bearer secret", "private-token": "glpat-secret", "x-keep": "1" },
    });
    expect(await response.text()).toBe("elsewhere");
    expect(seen).toHaveLength(3);
    expect(seen[1]?.["private-token"]).toBe("glpat-secret");
    expect(seen[2]?.authorization).toBeUndefined();
    expect(seen[2]?.["private-token"]).toBeUndefined();
    expect(seen[2]?.["x-keep"]).toBe("1");
  });

  it("hands a redirect back as it is when asked to", async () => {
    const home = await serve((_req, res) => res.writeHead(302, { location: "/there" }).end());
    const response = await client().fetch(home.url, { redirect: "manual" });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("/there");
  });

  it("refuses redirects to other schemes and endless ones", async () => {
    const data = await serve((_req, res) =>
      res.writeHead(302, { location: "data:text/plain,hello" }).end(),
    );
    await expect(client().fetch(data.url)).rejects.toThrow(/data: address; refused/);
    const file = await serve((_req, res) =>
      res.writeHead(307, { location: "file:///etc/passwd" }).end(),
    );
    await expect(client().fetch(file.url)).rejects.toThrow(/file: address; refused/);
    let hops = 0;
    const loop = await serve((_req, res) => {
      hops += 1;
      res.writeHead(302, { location: `/hop${hops}` }).end();
    });
    await expect(client({ maxRedirects: 3 }).fetch(loop.url)).rejects.toThrow(
      /redirected more than 3 times/,
    );
    expect(hops).toBe(4);
  });

  it("gives up on a server that accepts and never answers", async () => {
    const hang = await serve(() => undefined);
    const started = Date.now();
    const error = await client({ idleTimeoutMs: 300 })
      .fetch(hang.url)
      .catch((err: unknown) => err);
    expect(errorCode(error)).toBe("UND_ERR_HEADERS_TIMEOUT");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("gives up on a body that stops flowing", async () => {
    const trickle = await serve((_req, res) => {
      res.writeHead(200, { "content-length": "100" });
      res.write("x");
    });
    const response = await client({ idleTimeoutMs: 300 }).fetch(trickle.url);
    const error = await response.text().catch((err: unknown) => err);
    expect(errorCode(error)).toBe("UND_ERR_BODY_TIMEOUT");
  });

  it("stops reading a body at its limit", async () => {
    const endless = await serve((_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 1);
      const pump = (): void => {
        while (res.write(chunk));
        res.once("drain", pump);
      };
      pump();
    });
    const response = await client().fetch(endless.url);
    await expect(readBody(response, 1024 * 1024, "the answer")).rejects.toThrow(
      /the answer is larger than 1.0 MiB/,
    );
    const declared = await serve((_req, res) =>
      res.writeHead(200, { "content-length": String(10 * 1024 * 1024) }).end(),
    );
    await expect(readBody(await client().fetch(declared.url), 1024, "the page")).rejects.toThrow(
      /larger than/,
    );
  });

  it("aborts with the caller's signal", async () => {
    const hang = await serve(() => undefined);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("interrupted")), 50);
    await expect(client().fetch(hang.url, { signal: controller.signal })).rejects.toThrow(
      "interrupted",
    );
  });
});

describe("the proxy variables, as curl and Go read them", () => {
  /** A proxy that counts what it is asked (a request, or a CONNECT for https) and answers 502. */
  async function countingProxy() {
    const asked: string[] = [];
    const proxy = await serve((req, res) => {
      asked.push(`${req.method} ${req.url}`);
      res.writeHead(502).end();
    });
    proxy.server.on("connect", (req, socket: import("node:net").Socket) => {
      asked.push(`CONNECT ${req.url}`);
      socket.end("HTTP/1.1 502 Bad Gateway\r\n\r\n");
    });
    return { url: proxy.url, asked };
  }
  /** An https address whose server counts the connections made straight to it (no TLS). */
  async function httpsTarget() {
    let direct = 0;
    const target = await serve(() => undefined);
    target.server.on("connection", (socket: import("node:net").Socket) => {
      direct += 1;
      socket.destroy();
    });
    return { url: target.url.replace("http:", "https:"), direct: () => direct };
  }

  it("only HTTP_PROXY: plain http goes through it, https straight to the server", async () => {
    const proxy = await countingProxy();
    const target = await httpsTarget();
    const http = client({ env: { HTTP_PROXY: proxy.url } });
    await expect(http.fetch(`${target.url}/v2/`)).rejects.toThrow();
    expect(target.direct()).toBe(1);
    expect(proxy.asked).toEqual([]);
    const plain = await serve((_req, res) => res.end("direct"));
    expect((await http.fetch(`${plain.url}/x`)).status).toBe(502);
    expect(proxy.asked).toEqual([`GET ${plain.url}/x`]);
  });

  it("HTTPS_PROXY: https goes through it; NO_PROXY keeps a host off both", async () => {
    const proxy = await countingProxy();
    const target = await httpsTarget();
    const host = new URL(target.url).host;
    await expect(
      client({ env: { https_proxy: proxy.url } }).fetch(`${target.url}/v2/`),
    ).rejects.toThrow();
    expect(proxy.asked).toEqual([`CONNECT ${host}`]);
    expect(target.direct()).toBe(0);
    await expect(
      client({
        env: { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url, NO_PROXY: host },
      }).fetch(`${target.url}/v2/`),
    ).rejects.toThrow();
    expect(proxy.asked).toHaveLength(1);
    expect(target.direct()).toBe(1);
  });
});

describe("a refused connection says why", () => {
  it("names ECONNREFUSED, not only undici's 'fetch failed'", async () => {
    const closed = await serve(() => undefined);
    const url = closed.url;
    await new Promise((resolve) => closed.server.close(resolve));
    servers.splice(servers.indexOf(closed.server), 1);
    const err = await client()
      .fetch(`${url}/v2/`)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(describeError(err)).toMatch(/^fetch failed: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
    expect(networkReason(err)).toBe("ECONNREFUSED");
    // No code at all (a port fetch refuses to use): the reason in words.
    const badPort = await client()
      .fetch("http://127.0.0.1:1/")
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(networkReason(badPort)).toBe("fetch failed: bad port");
  });
});
