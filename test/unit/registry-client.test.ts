import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registryScheme } from "../../src/domain/reference.js";
import type { FetchLike } from "../../src/net/http.js";
import { silentLogger } from "../../src/report/logger.js";
import { parseChallenge, scopeKey } from "../../src/registry/auth.js";
import { RegistryClient, sha256Digest } from "../../src/registry/client.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { RegistryError } from "../../src/registry/registry-error.js";
import {
  GITLAB_TOKEN,
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  startTestbed,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import { freePort } from "../testbed/registry.js";
import { failure } from "./helpers.js";

const gate = testbedGate();
const FAST_RETRY = { attempts: 3, baseDelayMs: 10, maxDelayMs: 40 };
const digestA = `sha256:${"a".repeat(64)}`;
const digestB = `sha256:${"b".repeat(64)}`;

describe("registryScheme", () => {
  it("uses http for loopback registries and when asked, https otherwise", () => {
    expect(registryScheme("127.0.0.1:5000")).toBe("http");
    expect(registryScheme("127.3.4.5")).toBe("http");
    expect(registryScheme("localhost:5000")).toBe("http");
    expect(registryScheme("[::1]:5000")).toBe("http");
    expect(registryScheme("::1")).toBe("http");
    expect(registryScheme("gitlab-master.nvidia.com:5005")).toBe("https");
    expect(registryScheme("128.0.0.1:5000")).toBe("https");
    expect(registryScheme("localhost.example.com")).toBe("https");
    expect(registryScheme("registry.internal:5000", true)).toBe("http");
  });
});

describe("parseChallenge", () => {
  it("reads GitLab's Bearer challenge, commas inside quotes included", () => {
    expect(
      parseChallenge(
        'Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",scope="repository:a/b:pull,push",error="insufficient_scope"',
      ),
    ).toEqual({
      scheme: "bearer",
      realm: "https://gitlab.example.com/jwt/auth",
      service: "container_registry",
      scope: "repository:a/b:pull,push",
      error: "insufficient_scope",
    });
  });

  it("reads Basic challenges and refuses what is neither", () => {
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({
      scheme: "basic",
      realm: "Registry Realm",
    });
    expect(parseChallenge("Negotiate abc")).toBeUndefined();
    expect(parseChallenge(null)).toBeUndefined();
  });

  it("keys scope sets regardless of order and repetition", () => {
    expect(scopeKey(["b", "a", "b"])).toBe(scopeKey(["a", "b"]));
  });
});

describe("LayerCache", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "layer-cache-test-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("remembers digests and repositories across processes, most recent first", async () => {
    const file = path.join(dir, "state", "layers.json");
    const cache = await LayerCache.open(file);
    const layer = { digest: digestA, size: 10, mediaType: "m" };
    cache.record("sha256:d1", layer, "reg:5000", "p/x86/a");
    cache.record("sha256:d1", layer, "reg:5000", "p/x86/b");
    cache.record("sha256:d1", layer, "other:5005", "p/x86/a");
    await cache.save();
    const reread = await LayerCache.open(file);
    expect(reread.get("sha256:d1")).toEqual(layer);
    expect(reread.repositoriesWith("sha256:d1", "reg:5000")).toEqual(["p/x86/b", "p/x86/a"]);
    reread.forget("sha256:d1", "reg:5000", "p/x86/b");
    expect(reread.repositoriesWith("sha256:d1", "reg:5000")).toEqual(["p/x86/a"]);
    // Compressed afresh to another digest: the old repositories hold the old blob only.
    reread.record("sha256:d1", { ...layer, digest: digestB }, "reg:5000", "p/x86/c");
    expect(reread.repositoriesWith("sha256:d1", "reg:5000")).toEqual(["p/x86/c"]);
    expect(reread.repositoriesWith("sha256:d1", "other:5005")).toEqual([]);
  });

  it("starts empty from a damaged file, and replaces it on save", async () => {
    const file = path.join(dir, "damaged.json");
    await writeFile(file, "{not json");
    const cache = await LayerCache.open(file, silentLogger());
    expect(cache.get("sha256:d1")).toBeUndefined();
    cache.record("sha256:d1", { digest: digestA, size: 1, mediaType: "m" }, "r", "x");
    await Promise.all([cache.save(), cache.save()]);
    expect(JSON.parse(await readFile(file, "utf8"))).toMatchObject({ version: 1 });
  });
});

/** A registry that wants Basic auth (no token service), as some self-hosted ones do. */
async function basicRegistry(): Promise<{
  server: Server;
  host: string;
  authorizations: string[];
}> {
  const authorizations: string[] = [];
  const expected = `Basic ${Buffer.from("user:pw").toString("base64")}`;
  const server = createServer((req, res) => {
    authorizations.push(req.headers.authorization ?? "");
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="Registry"' }).end();
      return;
    }
    res.writeHead(req.url === "/v2/" ? 200 : 404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { server, host: `127.0.0.1:${port}`, authorizations };
}

describe("RegistryClient with Basic auth", () => {
  it("sends Basic credentials and reports a refusal clearly", async () => {
    const { server, host, authorizations } = await basicRegistry();
    try {
      const good = new RegistryClient({
        fetch: globalThis.fetch,
        registry: host,
        username: "user",
        password: "pw",
        logger: silentLogger(),
      });
      await good.login();
      expect(await good.blobExists("p/x", digestA)).toBe(false);
      expect(authorizations.at(-1)).toMatch(/^Basic /);
      const bad = new RegistryClient({
        fetch: globalThis.fetch,
        registry: host,
        username: "user",
        password: "nope",
        logger: silentLogger(),
      });
      const error = await failure(bad.login());
      expect(error.message).toBe(`registry ${host} refused the credentials of user user (401)`);
    } finally {
      server.close();
    }
  });
});

describe.skipIf(gate.skip)(`RegistryClient on the real registry ${gate.reason}`, () => {
  let tb: Testbed;
  const repo = (name: string): string => `${PROJECT_PATH}/${name}`;

  beforeAll(async () => {
    tb = await startTestbed();
  });
  afterAll(async () => tb?.stop());

  const client = (options: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}) =>
    new RegistryClient({
      fetch: globalThis.fetch,
      registry: tb.gitlab.registryHost,
      username: REGISTRY_USER,
      password: REGISTRY_PASSWORD,
      logger: silentLogger(),
      retry: FAST_RETRY,
      ...options,
    });

  it("logs in with a token request carrying no scope, like docker login", async () => {
    tb.gitlab.resetRequests();
    await client().login();
    const auth = tb.gitlab.requests.filter((r) => r.path.startsWith("/jwt/auth"));
    expect(auth).toHaveLength(1);
    expect(auth[0]?.path).not.toContain("scope=");
    expect(auth[0]?.status).toBe(200);
    // The GitLab token is accepted as a registry password too, as on GitLab.
    await client({ username: "someone", password: GITLAB_TOKEN }).login();
  });

  it("asks for no credentials when given none, and says so when the registry wants them", async () => {
    const error = await failure(client({ username: undefined, password: undefined }).login());
    expect(error.message).toBe(`registry ${tb.gitlab.registryHost} requires credentials`);
  });

  it("fetches one token per set of scopes and reuses it", async () => {
    const c = client();
    tb.gitlab.resetRequests();
    const blob = Buffer.from("hello blob");
    const digest = sha256Digest(blob);
    await c.uploadBlob(repo("x86/a"), digest, blob.length, () => blob);
    expect(await c.blobExists(repo("x86/a"), digest)).toBe(true);
    expect(await c.blobExists(repo("x86/a"), digestA)).toBe(false);
    expect(await c.mountBlob(repo("x86/b"), digest, repo("x86/a"))).toBe(true);
    // The push+pull token for b and pull for a covers a later check in b.
    expect(await c.blobExists(repo("x86/b"), digest)).toBe(true);
    const auth = tb.gitlab.requests.filter((r) => r.path.startsWith("/jwt/auth"));
    expect(auth.map((r) => decodeURIComponent(r.path).match(/scope=[^&]*/g))).toEqual([
      [`scope=repository:${repo("x86/a")}:pull,push`],
      [`scope=repository:${repo("x86/b")}:pull,push`, `scope=repository:${repo("x86/a")}:pull`],
    ]);
  });

  it("reports a refused mount as not mounted and cancels the upload it opened", async () => {
    const c = client();
    const mark = tb.gitlab.registry.accessLog().length;
    expect(await c.mountBlob(repo("x86/c"), digestB, repo("x86/a"))).toBe(false);
    const log = tb.gitlab.registry.accessLog().slice(mark);
    expect(log.some((e) => e.method === "POST" && e.status === 202)).toBe(true);
    expect(log.some((e) => e.method === "DELETE" && e.status === 204)).toBe(true);
  });

  it("retries 5xx answers and connection failures, then names registry, repository and operation", async () => {
    let calls = 0;
    const flaky: FetchLike = async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.includes("/manifests/") && calls++ < 2) return new Response("busy", { status: 503 });
      return fetch(input, init);
    };
    expect(await client({ fetch: flaky }).getManifest(repo("x86/a"), "missing")).toBeUndefined();
    expect(calls).toBe(3);

    const closed = `127.0.0.1:${await freePort()}`;
    const error = await failure(client({ registry: closed }).blobExists(repo("x86/a"), digestA));
    expect(error.message).toBe(
      `registry ${closed} unreachable while checking blob sha256:aaaaaaaaaaaa… in ${repo("x86/a")} (ECONNREFUSED)`,
    );
    expect(error.hint).toBe("is it up? rerun to resume; blobs already uploaded are skipped");
    const always503: FetchLike = async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.includes("/manifests/"))
        return new Response(
          '{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}',
          { status: 503 },
        );
      return fetch(input, init);
    };
    const busy = await failure(
      client({ fetch: always503 }).putManifest(
        repo("x86/a"),
        "t",
        Buffer.from("{}"),
        "application/json",
      ),
    );
    expect(busy.message).toBe(
      `registry ${tb.gitlab.registryHost} answered 503 (UNAVAILABLE: down for maintenance) while writing manifest ${repo("x86/a")}:t`,
    );
    // The registry's own code stays on the error, and its retries are spent.
    expect(busy).toBeInstanceOf(RegistryError);
    expect((busy as RegistryError).code).toBe("UNAVAILABLE");
    expect((busy as RegistryError).status).toBe(503);
    expect((busy as RegistryError).retryable).toBe(false);
  });

  it("words a repository the user may not push to", async () => {
    const error = await failure(client().blobExists("elsewhere/project/x86/a", digestA));
    expect(error.message).toMatch(
      new RegExp(
        `^registry ${tb.gitlab.registryHost} denied user ${REGISTRY_USER} on elsewhere/project/x86/a while checking blob`,
      ),
    );
  });
});
