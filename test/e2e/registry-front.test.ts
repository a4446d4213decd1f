/**
 * The registry behind a front that behaves as real ones do (issue 21): upload addresses handed
 * out on another origin (a CDN, a second front), which must never see the registry's
 * credentials. Library-level, against the real registry of the testbed.
 */
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/report/logger.js";
import { RegistryClient, sha256Digest } from "../../src/registry/client.js";
import { RegistryError } from "../../src/registry/registry-error.js";
import { CdnServer, CuttingProxy } from "../testbed/cutting-proxy.js";
import {
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  startTestbed,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import { capturingLogger, failure } from "../unit/helpers.js";

const gate = testbedGate();
const FAST_RETRY = { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 };

/** `/v2/<name>/blobs/uploads/…` → `<name>`: the repository a pre-signed address is for. */
function repositoryOf(path: string): string {
  return /^\/v2\/(.+)\/blobs\//.exec(path)?.[1] ?? "";
}

describe.skipIf(gate.skip)(`a registry front on the real registry ${gate.reason}`, () => {
  let tb: Testbed;
  let front: CuttingProxy;
  let cdn: CdnServer;

  beforeAll(async () => {
    tb = await startTestbed();
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const target = { host, port: Number(port) };
    front = new CuttingProxy(target);
    await front.start();
    // The CDN's addresses are pre-signed: it brings its own authority to the registry.
    cdn = new CdnServer(
      target,
      (path) =>
        `Bearer ${tb.gitlab.mintRegistryToken([
          { type: "repository", name: repositoryOf(path), actions: ["pull", "push"] },
        ])}`,
    );
    await cdn.start();
  });
  afterAll(async () => {
    await cdn?.stop();
    await front?.stop();
    await tb?.stop();
  });

  it("sends an upload whose Location names another origin there without the registry's credentials", async () => {
    const log = capturingLogger();
    const client = new RegistryClient({
      fetch: globalThis.fetch,
      registry: front.host,
      username: REGISTRY_USER,
      password: REGISTRY_PASSWORD,
      logger: log.logger,
      retry: FAST_RETRY,
    });
    front.moveLocationsTo(cdn.origin);
    try {
      const repository = `${PROJECT_PATH}/x86/presto-cdn`;
      // A blob sent whole (POST, PUT) and one in chunks (POST, PATCH…, PUT): both go to the CDN.
      const whole = Buffer.from("a blob sent in one PUT\n".repeat(100));
      await client.uploadBlob(repository, sha256Digest(whole), whole.length, () => whole);
      const chunked = Buffer.alloc(300_000, 7);
      const streamed = await client.uploadBlobStream(repository, Readable.from([chunked]), {
        chunkSize: 64 << 10,
      });
      expect(streamed.digest).toBe(sha256Digest(chunked));

      expect(cdn.requests.map((r) => r.method)).toEqual(expect.arrayContaining(["PUT", "PATCH"]));
      for (const request of cdn.requests) {
        expect(request.headers.authorization, `${request.method} ${request.path}`).toBeUndefined();
      }
      // The blobs are there all the same: the pre-signed addresses did their job.
      front.moveLocationsTo(undefined);
      expect(await client.blobSize(repository, sha256Digest(whole))).toBe(whole.length);
      expect(await client.blobSize(repository, streamed.digest)).toBe(chunked.length);
      expect(log.lines.join("\n")).not.toContain(REGISTRY_PASSWORD);
    } finally {
      front.moveLocationsTo(undefined);
    }
  });
});

describe("an https registry whose upload Location is plain http", () => {
  it("is refused in one line, and nothing is sent to the http address", async () => {
    const sent: string[] = [];
    const fetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const url = new URL(input instanceof Request ? input.url : input);
      sent.push(`${init?.method ?? "GET"} ${url.href}`);
      if (url.pathname === "/v2/") return Promise.resolve(new Response(null, { status: 200 }));
      return Promise.resolve(
        new Response(null, {
          status: 202,
          headers: { location: "http://cdn.example.test/v2/p/blobs/uploads/abc?_state=x" },
        }),
      );
    };
    const client = new RegistryClient({
      fetch,
      registry: "registry.example.test:5005",
      username: "ci-bot",
      password: "secret",
      logger: createLogger({ level: "silent" }),
      retry: FAST_RETRY,
    });
    const blob = Buffer.from("bytes");
    const error = await failure(
      client.uploadBlob("p", sha256Digest(blob), blob.length, () => blob),
    );
    expect(error.message).toContain("http://cdn.example.test");
    expect(error.message).not.toContain("\n");
    expect(error).toBeInstanceOf(RegistryError);
    expect((error as RegistryError).retryable).toBe(false);
    expect(sent.filter((s) => s.includes("cdn.example.test"))).toEqual([]);
  });
});
