/**
 * Issue 13, the servers: each client (GitHub API, blob hosts, GitLab API, registry, token realm)
 * against a small hostile server of its own — redirects to another origin, to other schemes,
 * answers without end, pagers that loop, control characters in error text. Credentials must stay
 * with their origin and every answer must have a ceiling.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { readdir } from "node:fs/promises";
import { describe, expect, it, onTestFinished } from "vitest";
import { SyncError } from "../../src/errors.js";
import { artifactUrlResolver, listRunArtifacts } from "../../src/github/artifacts.js";
import { createGithubClient } from "../../src/github/client.js";
import { listWorkflowRuns } from "../../src/github/runs.js";
import { GitlabRegistryClient } from "../../src/gitlab/client.js";
import { HttpClient, type FetchLike } from "../../src/net/http.js";
import { silentLogger } from "../../src/report/logger.js";
import { RegistryClient } from "../../src/registry/client.js";
import { downloadFile } from "../../src/workspace/download.js";
import { endlessBody, hostileServer, type HostileServer } from "../testbed/hostile-http.js";
import { failure, tempDir } from "./helpers.js";

const logger = silentLogger();
const GH_TOKEN = "ghp_hostile_secret";
const GL_TOKEN = "glpat-hostile-secret";

/** The HttpClient a command builds; one per call here, closed when the test ends. */
function client(): HttpClient {
  const http = new HttpClient({ env: {} });
  onTestFinished(() => http.close());
  return http;
}

function json(res: ServerResponse, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { "content-type": "application/json", ...headers });
  res.end(text);
}

function github(baseUrl: string) {
  const http = client();
  return createGithubClient({ baseUrl, token: GH_TOKEN, logger, fetch: http.fetch, get: http.get });
}

const RUNS_PATH = "/repos/o/r/actions/workflows/w.yml/runs";
const run = (id: number) => ({
  id,
  name: "Build",
  display_title: "Build",
  run_number: id,
  event: "workflow_dispatch",
  status: "completed",
  conclusion: "success",
  head_branch: "main",
  head_sha: "abc",
  html_url: `https://github.com/o/r/actions/runs/${id}`,
  created_at: "2025-10-01T00:00:00Z",
  updated_at: "2025-10-01T00:00:00Z",
  run_started_at: "2025-10-01T00:00:00Z",
  run_attempt: 1,
});

describe("GitHub API client", () => {
  it("sends no token to another origin an API answer redirects to", async () => {
    const other = await hostileServer((_req, res) =>
      json(res, { total_count: 1, workflow_runs: [run(1)] }),
    );
    const api = await hostileServer((req, res) =>
      res.writeHead(302, { location: `${other.url}${req.url ?? ""}` }).end(),
    );
    const runs = await listWorkflowRuns(github(api.url), {
      repo: "o/r",
      workflow: "w.yml",
      limit: 5,
    });
    expect(runs.map((r) => r.id)).toEqual([1]);
    expect(api.seen[0]?.authorization).toBe(`token ${GH_TOKEN}`);
    expect(other.seen).toHaveLength(1);
    expect(other.seen[0]?.authorization).toBeUndefined();
  });

  it("refuses a next-page link to another host rather than sending it the token", async () => {
    const other = await hostileServer((_req, res) =>
      json(res, { total_count: 0, workflow_runs: [] }),
    );
    const api = await hostileServer((_req, res) =>
      json(
        res,
        { total_count: 2, workflow_runs: [run(1)] },
        { link: `<${other.url}${RUNS_PATH}?per_page=1&page=2>; rel="next"` },
      ),
    );
    const error = await failure(
      listWorkflowRuns(github(api.url), { repo: "o/r", workflow: "w.yml", limit: 2 }),
    );
    expect(error.message).toMatch(
      /^refused to send the GitHub token to http:\/\/127\.0\.0\.1:\d+$/,
    );
    expect(other.seen).toHaveLength(0);
    expect(api.seen).toHaveLength(1);
  });

  it("stops an answer past 16 MiB at once, without retrying it", async () => {
    const api = await hostileServer((_req, res) =>
      endlessBody(res, "application/json", '{"workflow_runs":['),
    );
    const error = await failure(
      listWorkflowRuns(github(api.url), { repo: "o/r", workflow: "w.yml", limit: 5 }),
    );
    expect(error.message).toMatch(
      /GitHub's answer for runs of workflow w\.yml in o\/r is larger than 16\.0 MiB; refused/,
    );
    expect(api.seen).toHaveLength(1);
  });

  it("stops a pager that goes back to a page it has read", async () => {
    const api = await hostileServer((req, res) => {
      const page = new URL(req.url ?? "/", "http://x").searchParams.get("page") ?? "1";
      const next = page === "1" ? 2 : 1;
      json(
        res,
        { total_count: 9, artifacts: [] },
        {
          link: `<http://${req.headers.host}/repos/o/r/actions/runs/7/artifacts?per_page=100&page=${next}>; rel="next"`,
        },
      );
    });
    const error = await failure(listRunArtifacts(github(api.url), { repo: "o/r", runId: 7 }));
    expect(error.message).toMatch(/after page 2 the server names page 1 as the next; stopped/);
    expect(api.seen).toHaveLength(2);
  });
});

describe("blob hosts (artifact downloads)", () => {
  it("never sees the GitHub token, nor does a host the blob host redirects to", async () => {
    const body = Buffer.from("zip bytes ".repeat(100));
    const final = await hostileServer((_req, res) => res.end(body));
    const blob = await hostileServer((req, res) =>
      res.writeHead(307, { location: `${final.url}${req.url ?? ""}` }).end(),
    );
    const api = await hostileServer((_req, res) =>
      res.writeHead(302, { location: `${blob.url}/artifact.zip?sig=signed` }).end(),
    );
    const gh = github(api.url);
    const dest = path.join(await tempDir("hostile-blob-"), "a.zip");
    const result = await downloadFile({
      resolveUrl: artifactUrlResolver(gh, { repo: "o/r", artifactId: 5, runId: 1 }),
      get: gh.blobs.get,
      dest,
      expectedSize: body.length,
      logger,
      freeBytes: async () => 1 << 30,
    });
    expect(result.size).toBe(body.length);
    expect(api.seen[0]?.authorization).toBe(`token ${GH_TOKEN}`);
    expect(blob.seen[0]?.authorization).toBeUndefined();
    expect(final.seen[0]?.authorization).toBeUndefined();
  });

  it.each([
    "data:application/zip;base64,UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==",
    "file:///etc/passwd",
    "javascript:alert(1)",
  ])("refuses an artifact redirect to %s at once, with no retries", async (location) => {
    const api = await hostileServer((_req, res) => res.writeHead(302, { location }).end());
    const gh = github(api.url);
    const dir = await tempDir("hostile-scheme-");
    const error = await failure(
      downloadFile({
        resolveUrl: artifactUrlResolver(gh, { repo: "o/r", artifactId: 5, runId: 1 }),
        get: gh.blobs.get,
        dest: path.join(dir, "a.zip"),
        expectedSize: 22,
        logger,
        retryDelayMs: 1,
        freeBytes: async () => 1 << 30,
      }),
    );
    const scheme = location.slice(0, location.indexOf(":") + 1);
    expect(error.message).toBe(
      `GitHub redirected artifact 5 of o/r to a ${scheme} address; refused`,
    );
    expect(api.seen).toHaveLength(1);
    expect(await readdir(dir)).toEqual([]);
  });

  it("refuses a signed address that itself redirects to another scheme", async () => {
    const blob = await hostileServer((_req, res) =>
      res.writeHead(302, { location: "data:application/zip,PK" }).end(),
    );
    const error = await failure(
      downloadFile({
        resolveUrl: async () => `${blob.url}/a.zip`,
        get: client().get,
        dest: path.join(await tempDir("hostile-scheme-"), "a.zip"),
        expectedSize: 2,
        logger,
        retryDelayMs: 1,
        freeBytes: async () => 1 << 30,
      }),
    );
    expect(error.message).toMatch(/redirected to a data: address; refused/);
    expect(blob.seen).toHaveLength(1);
  });
});

describe("GitLab API client", () => {
  function gitlab(host: string): GitlabRegistryClient {
    return new GitlabRegistryClient({
      host,
      token: GL_TOKEN,
      logger,
      fetch: client().fetch,
      retry: { baseDelayMs: 1, maxDelayMs: 5 },
    });
  }

  it("sends no PRIVATE-TOKEN to another origin an answer redirects to (issue 13, failure 1)", async () => {
    const other = await hostileServer((_req, res) => json(res, []));
    const api = await hostileServer((req, res) =>
      res.writeHead(302, { location: `${other.url}${req.url ?? ""}` }).end(),
    );
    expect(await gitlab(api.url).listRepositories("g/p")).toEqual([]);
    expect(api.seen[0]?.["private-token"]).toBe(GL_TOKEN);
    expect(other.seen).toHaveLength(1);
    expect(other.seen[0]?.["private-token"]).toBeUndefined();
  });

  it("drops JOB-TOKEN, Authorization and cookies on a change of origin too", async () => {
    const other = await hostileServer((_req, res) => res.end("ok"));
    const home = await hostileServer((_req, res) =>
      res.writeHead(301, { location: other.url }).end(),
    );
    await client().fetch(home.url, {
      headers: { "job-token": "ci-job-secret", authorization: "Bearer x", cookie: "s=1" },
    });
    expect(home.seen[0]?.["job-token"]).toBe("ci-job-secret");
    expect(other.seen[0]?.["job-token"]).toBeUndefined();
    expect(other.seen[0]?.authorization).toBeUndefined();
    expect(other.seen[0]?.cookie).toBeUndefined();
  });

  it("stops a pager that names the same page again, after one request", async () => {
    const api = await hostileServer((req, res) =>
      json(res, [], {
        link: `<http://${req.headers.host}/api/v4/projects/g%2Fp/registry/repositories?page=1&per_page=100>; rel="next"`,
        "x-next-page": "1",
      }),
    );
    const error = await failure(gitlab(api.url).listRepositories("g/p"));
    expect(error.message).toMatch(/after page 1 the server names page 1 as the next; stopped/);
    expect(api.seen).toHaveLength(1);
  });

  it("refuses a page past 16 MiB without retrying it", async () => {
    const api = await hostileServer((_req, res) => endlessBody(res, "application/json", "["));
    const error = await failure(gitlab(api.url).listRepositories("g/p"));
    expect(error.message).toMatch(
      /GitLab's answer for \/api\/v4\/projects\/g%2Fp\/registry\/repositories is larger than 16\.0 MiB; refused/,
    );
    expect(api.seen).toHaveLength(1);
  });
});

/** A registry with GitLab-style token auth on loopback (plain http, as Docker allows there). */
async function tokenRegistry(
  handler: (req: IncomingMessage, res: ServerResponse) => boolean,
  realm?: string,
): Promise<HostileServer> {
  let self = "";
  const registry = await hostileServer((req, res) => {
    const url = req.url ?? "/";
    if (url.startsWith("/token")) return json(res, { token: "registry-jwt" });
    if (req.headers.authorization !== "Bearer registry-jwt") {
      res
        .writeHead(401, {
          "www-authenticate": `Bearer realm="${realm ?? `${self}/token`}",service="container_registry"`,
        })
        .end();
      return;
    }
    if (!handler(req, res)) res.writeHead(404).end();
  });
  self = registry.url;
  return registry;
}

function registryClient(url: string, fetch: FetchLike = client().fetch): RegistryClient {
  return new RegistryClient({
    registry: new URL(url).host,
    username: "ci-bot",
    password: "registry-password",
    logger,
    fetch,
    retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
  });
}

const MANIFEST = JSON.stringify({
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
});

describe("registry client", () => {
  it("sends no Bearer token to another origin a manifest or blob read redirects to", async () => {
    const storage = await hostileServer((req, res) => {
      if (req.url?.includes("manifest")) {
        res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" });
        res.end(MANIFEST);
      } else res.end("blob bytes");
    });
    const registry = await tokenRegistry((req, res) => {
      const where = req.url?.includes("/manifests/") ? "manifest" : "blob";
      res.writeHead(307, { location: `${storage.url}/${where}?X-Amz-Signature=s` }).end();
      return true;
    });
    const reg = registryClient(registry.url);
    const manifest = await reg.getManifest("g/p/x86/c", "t");
    expect(manifest?.bytes.toString()).toBe(MANIFEST);
    const blob = await reg.getBlob("g/p/x86/c", `sha256:${"a".repeat(64)}`);
    let read = "";
    for await (const chunk of blob) read += String(chunk);
    expect(read).toBe("blob bytes");
    expect(registry.seen.some((h) => h.authorization === "Bearer registry-jwt")).toBe(true);
    expect(storage.seen).toHaveLength(2);
    for (const headers of storage.seen) expect(headers.authorization).toBeUndefined();
  });

  it("refuses a manifest past 4 MiB", async () => {
    const registry = await tokenRegistry((_req, res) => {
      endlessBody(res, "application/vnd.oci.image.manifest.v1+json", "{");
      return true;
    });
    const error = await failure(registryClient(registry.url).getManifest("g/p/c", "t"));
    expect(error.message).toBe("manifest g/p/c:t is larger than 4.0 MiB; refused");
  });

  it("shows the registry's error text printable, control sequences escaped", async () => {
    const registry = await tokenRegistry((req, res) => {
      if (req.method !== "PUT") return false;
      res.writeHead(400, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          errors: [{ code: "MANIFEST_INVALID", message: "bad\u001b]0;pwned\u0007 \u0000x" }],
        }),
      );
      return true;
    });
    const error = await failure(
      registryClient(registry.url).putManifest(
        "g/p/c",
        "t",
        Buffer.from(MANIFEST),
        "application/json",
      ),
    );
    expect(error.message).toContain("MANIFEST_INVALID: bad\\x1b]0;pwned\\x07 \\x00x");
    // eslint-disable-next-line no-control-regex -- no raw control character may be left
    expect(error.message).not.toMatch(/[\u0000-\u001f]/);
  });

  it("does not retry a redirect it refuses (another scheme)", async () => {
    const registry = await tokenRegistry((_req, res) => {
      res.writeHead(302, { location: "file:///etc/shadow" }).end();
      return true;
    });
    const before = registry.seen.length;
    const error = await failure(registryClient(registry.url).getManifest("g/p/c", "t"));
    expect(error.message).toMatch(/redirected to a file: address; refused/);
    // The ping, the token's 401 and the request itself: no retries of the refusal.
    expect(registry.seen.length - before).toBeLessThanOrEqual(3);
  });
});

describe("token realm", () => {
  it("sends the registry credentials to the realm the registry names, and no further", async () => {
    const elsewhere = await hostileServer((_req, res) => json(res, { token: "registry-jwt" }));
    const realm = await hostileServer((req, res) =>
      res.writeHead(302, { location: `${elsewhere.url}${req.url ?? ""}` }).end(),
    );
    const registry = await tokenRegistry(() => false, `${realm.url}/jwt/auth`);
    await registryClient(registry.url).login();
    expect(realm.seen[0]?.authorization).toMatch(/^Basic /);
    expect(elsewhere.seen).toHaveLength(1);
    expect(elsewhere.seen[0]?.authorization).toBeUndefined();
  });

  it("refuses a plain-http realm named by an https registry, before sending anything there", async () => {
    const asked: string[] = [];
    const fake: FetchLike = async (input) => {
      const url = new URL(input instanceof Request ? input.url : input.toString());
      asked.push(url.href);
      return new Response(null, {
        status: 401,
        headers: {
          "www-authenticate":
            'Bearer realm="http://gitlab.example.com/jwt/auth",service="container_registry"',
        },
      });
    };
    const error = await failure(
      new RegistryClient({
        registry: "registry.example.com:5005",
        username: "ci-bot",
        password: "registry-password",
        logger,
        fetch: fake,
      }).login(),
    );
    expect(error).toBeInstanceOf(SyncError);
    expect(error.message).toBe(
      "registry registry.example.com:5005 is https but names a plain-http token service (http://gitlab.example.com); refused to send the credentials there",
    );
    expect(asked).toEqual(["https://registry.example.com:5005/v2/"]);
  });

  it("allows a plain-http realm for a registry spoken to over plain http", async () => {
    const registry = await tokenRegistry(() => false);
    await expect(registryClient(registry.url).login()).resolves.toBeUndefined();
    expect(registry.paths).toContain("/token?service=container_registry");
  });
});

describe("answers that never end", () => {
  it("a token realm's answer is read up to 16 MiB only", async () => {
    const realm = await hostileServer((_req, res) =>
      endlessBody(res, "application/json", '{"token":"'),
    );
    const registry = await tokenRegistry(() => false, `${realm.url}/jwt/auth`);
    const error = await failure(registryClient(registry.url).login());
    expect(error.message).toMatch(
      /the answer of token service http:\/\/127\.0\.0\.1:\d+ is larger than 16\.0 MiB/,
    );
  });
});
