import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGitlabStandIn, type GitlabStandIn } from "./gitlab-standin.js";
import { registryAvailability } from "./system.js";

const availability = registryAvailability();
const TOKEN = "glpat-registry-test-token";
const MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json";

interface Credentials {
  user: string;
  password: string;
}

function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function claimsOf(token: string): { access: unknown[]; sub: string; aud: string; iss: string } {
  const payload = token.split(".")[1] ?? "";
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as {
    access: unknown[];
    sub: string;
    aud: string;
    iss: string;
  };
}

/** `Bearer realm="…",service="…",scope="…"` → its parameters. */
function parseChallenge(header: string | null): Record<string, string> {
  const params: Record<string, string> = {};
  for (const m of (header ?? "").matchAll(/(\w+)="([^"]*)"/g)) params[m[1] ?? ""] = m[2] ?? "";
  return params;
}

/**
 * A registry client the way docker does it: try, read the challenge, get a token from the realm
 * with Basic credentials, try again with it. Proves the stand-in's realm satisfies the real registry.
 */
class ChallengeClient {
  private token: string | undefined;
  constructor(
    private readonly registryUrl: string,
    private readonly credentials: Credentials,
  ) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const url = new URL(path, this.registryUrl);
    const send = (): Promise<Response> =>
      fetch(url, {
        ...init,
        headers: {
          ...(init.headers as Record<string, string>),
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        },
      });
    const first = await send();
    if (first.status !== 401) return first;
    await first.arrayBuffer();
    const challenge = parseChallenge(first.headers.get("www-authenticate"));
    const realm = new URL(challenge.realm ?? "");
    realm.searchParams.set("service", challenge.service ?? "");
    if (challenge.scope) realm.searchParams.set("scope", challenge.scope);
    const basic = Buffer.from(`${this.credentials.user}:${this.credentials.password}`).toString(
      "base64",
    );
    const auth = await fetch(realm, { headers: { authorization: `Basic ${basic}` } });
    if (!auth.ok) throw new Error(`realm refused: ${auth.status} ${await auth.text()}`);
    this.token = ((await auth.json()) as { token: string }).token;
    return send();
  }

  async pushBlob(repository: string, data: Buffer): Promise<string> {
    const digest = sha256(data);
    const head = await this.fetch(`/v2/${repository}/blobs/${digest}`, { method: "HEAD" });
    if (head.ok) return digest;
    const start = await this.fetch(`/v2/${repository}/blobs/uploads/`, { method: "POST" });
    expect(start.status).toBe(202);
    const target = new URL(start.headers.get("location") ?? "", this.registryUrl);
    target.searchParams.set("digest", digest);
    const put = await this.fetch(`${target.pathname}${target.search}`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: data,
    });
    expect(put.status).toBe(201);
    return digest;
  }
}

describe.skipIf(!availability.ok)(
  `real registry behind the stand-in's token realm${availability.ok ? "" : ` (skipped: ${availability.reason})`}`,
  () => {
    let dir: string;
    let gitlab: GitlabStandIn;
    const repository = "hercules/veloxtesting/x86/presto-coordinator";

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "registry-test-"));
      gitlab = await startGitlabStandIn({
        token: TOKEN,
        registryUsers: { deployer: "deploy-pw" },
        dir,
      });
    });

    afterAll(async () => {
      await gitlab?.close();
      await rm(dir, { recursive: true, force: true });
    });

    it("challenges an anonymous client with the stand-in's realm", async () => {
      const res = await fetch(`${gitlab.registry.url}/v2/${repository}/tags/list`);
      expect(res.status).toBe(401);
      expect(parseChallenge(res.headers.get("www-authenticate"))).toEqual({
        realm: `${gitlab.url}/jwt/auth`,
        service: "container_registry",
        scope: `repository:${repository}:pull`,
      });
    });

    it("accepts a push made with a token from the realm, and logs each upload once", async () => {
      const client = new ChallengeClient(gitlab.registry.url, {
        user: "deployer",
        password: "deploy-pw",
      });
      const layer = Buffer.from("layer bytes for the push test");
      const config = Buffer.from(
        JSON.stringify({
          architecture: "amd64",
          os: "linux",
          rootfs: { type: "layers", diff_ids: [] },
        }),
      );
      const layerDigest = await client.pushBlob(repository, layer);
      const configDigest = await client.pushBlob(repository, config);
      // A second push of the same layer finds it with HEAD and uploads nothing.
      await client.pushBlob(repository, layer);
      const manifest = JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST_TYPE,
        config: {
          mediaType: "application/vnd.docker.container.image.v1+json",
          size: config.length,
          digest: configDigest,
        },
        layers: [
          {
            mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
            size: layer.length,
            digest: layerDigest,
          },
        ],
      });
      const put = await client.fetch(`/v2/${repository}/manifests/push-test`, {
        method: "PUT",
        headers: { "content-type": MANIFEST_TYPE },
        body: manifest,
      });
      expect(put.status).toBe(201);
      expect(put.headers.get("docker-content-digest")).toBe(sha256(manifest));

      const got = await client.fetch(`/v2/${repository}/manifests/push-test`, {
        headers: { accept: MANIFEST_TYPE },
      });
      expect(got.status).toBe(200);
      expect(await got.text()).toBe(manifest);

      const uploads = gitlab.registry
        .accessLog()
        .filter(
          (e) => e.method === "PUT" && e.path.includes(`digest=${encodeURIComponent(layerDigest)}`),
        );
      expect(uploads).toHaveLength(1);
      expect(uploads[0]?.status).toBe(201);
      expect(gitlab.registry.accessLog().some((e) => e.method === "HEAD" && e.status === 200)).toBe(
        true,
      );
    });

    it("takes the GitLab token as a registry password under any user name", async () => {
      const client = new ChallengeClient(gitlab.registry.url, {
        user: "gitlab-ci-token",
        password: TOKEN,
      });
      const res = await client.fetch(`/v2/${repository}/tags/list`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { tags: string[] }).tags).toContain("push-test");
    });

    it("refuses a wrong password at the realm", async () => {
      const basic = Buffer.from("deployer:wrong").toString("base64");
      const res = await fetch(
        `${gitlab.url}/jwt/auth?service=container_registry&scope=repository:${repository}:pull`,
        {
          headers: { authorization: `Basic ${basic}` },
        },
      );
      expect(res.status).toBe(401);
      const body = (await res.json()) as { errors: Array<{ code: string }>; token?: string };
      expect(body.errors[0]?.code).toBe("UNAUTHORIZED");
      expect(body.token).toBeUndefined();
    });

    it("answers a login without scope (docker login) with a token that opens nothing", async () => {
      const basic = Buffer.from(`someone:${TOKEN}`).toString("base64");
      const res = await fetch(`${gitlab.url}/jwt/auth?service=container_registry`, {
        headers: { authorization: `Basic ${basic}` },
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        token: string;
        access_token: string;
        expires_in: number;
        issued_at: string;
      };
      expect(body.access_token).toBe(body.token);
      expect(body.expires_in).toBeGreaterThan(0);
      expect(Number.isNaN(Date.parse(body.issued_at))).toBe(false);
      const claims = claimsOf(body.token);
      expect(claims).toMatchObject({ sub: "someone", aud: "container_registry", access: [] });
    });

    it("grants nothing outside the project, so the registry refuses with insufficient scope", async () => {
      const basic = Buffer.from("deployer:deploy-pw").toString("base64");
      const scopes = new URLSearchParams([
        ["service", "container_registry"],
        ["scope", "repository:other/project/image:push,pull"],
        ["scope", `repository:${repository}:pull,push,delete,unknown`],
      ]);
      const res = await fetch(`${gitlab.url}/jwt/auth?${scopes.toString()}`, {
        headers: { authorization: `Basic ${basic}` },
      });
      const { token } = (await res.json()) as { token: string };
      expect(claimsOf(token).access).toEqual([
        { type: "repository", name: repository, actions: ["pull", "push", "delete"] },
      ]);
      const denied = await fetch(`${gitlab.registry.url}/v2/other/project/image/blobs/uploads/`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      expect(denied.status).toBe(401);
      expect(denied.headers.get("www-authenticate")).toContain("insufficient_scope");
    });
  },
);
