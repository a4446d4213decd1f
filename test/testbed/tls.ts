/**
 * TLS for the testbed, as an organisation runs GitLab: a CA of its own (made here with
 * `openssl`, trusted by the tool only through NODE_EXTRA_CA_CERTS) and a server certificate it
 * signed, served by an https front that passes each request on to a plain-http server behind
 * it with `X-Forwarded-Proto: https` — the way GitLab's nginx sits in front of GitLab and of
 * its container registry (the registry then writes https upload locations).
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";

export interface TestCa {
  /** The CA certificate (PEM): what NODE_EXTRA_CA_CERTS points at. */
  caPath: string;
  /** A server certificate the CA signed, for 127.0.0.1 and localhost, and its key. */
  cert: Buffer;
  key: Buffer;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A CA and a server certificate signed by it, valid for a day, in `dir`. */
export async function makeTestCa(dir: string): Promise<TestCa> {
  await mkdir(dir, { recursive: true });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=gh-gitlab-sync test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  openssl(
    ["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
    dir,
  );
  await writeFile(
    path.join(dir, "server.ext"),
    [
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "",
    ].join("\n"),
  );
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "1",
      "-extfile",
      "server.ext",
    ],
    dir,
  );
  return {
    caPath: path.join(dir, "ca.pem"),
    cert: await readFile(path.join(dir, "server.pem")),
    key: await readFile(path.join(dir, "server.key")),
  };
}

export interface HttpsFront {
  /** `127.0.0.1:<port>` */
  host: string;
  /** `https://127.0.0.1:<port>` */
  url: string;
  close(): Promise<void>;
}

/**
 * An https server on a free loopback port in front of the plain-http server at `target`: each
 * request goes on as it came (method, path, headers, streamed body) plus the X-Forwarded-*
 * headers, and the answer comes back streamed.
 */
export async function startHttpsFront(
  target: { port: number },
  identity: { cert: Buffer; key: Buffer },
): Promise<HttpsFront> {
  const server: Server = createServer({ cert: identity.cert, key: identity.key }, (req, res) => {
    const upstream = httpRequest(
      {
        host: "127.0.0.1",
        port: target.port,
        method: req.method,
        path: req.url,
        headers: {
          ...req.headers,
          "x-forwarded-proto": "https",
          "x-forwarded-host": req.headers.host ?? "",
        },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.on("error", () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    url: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
