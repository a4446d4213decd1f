/**
 * The registry behind a front that behaves as real ones do (issue 21): upload addresses handed
 * out on another origin (a CDN, a second front), which must never see the registry's
 * credentials; upload chunks answered 404 (the session gone) or 416 (the offset disputed).
 * Library-level, against the real registry of the testbed.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/report/logger.js";
import { RegistryClient, sha256Digest, type UploadSession } from "../../src/registry/client.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { pushTarball } from "../testbed/push-tarball.js";
import { RegistryError } from "../../src/registry/registry-error.js";
import {
  CdnServer,
  CuttingProxy,
  registryErrorBody,
  type FrontRequest,
} from "../testbed/cutting-proxy.js";
import { FlakyProxy } from "../testbed/flaky-proxy.js";
import { pseudoRandom, writeDockerSaveTarball } from "../testbed/image-fixtures.js";
import {
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  startTestbed,
  testbedRegistryClient,
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

/** The `n`th chunk (from 1) of an upload to `repository`, by its `Content-Range` start. */
function nthPatch(repository: string, n: number, chunk: number) {
  return (r: FrontRequest) =>
    r.method === "PATCH" &&
    r.path.startsWith(`/v2/${repository}/blobs/uploads/`) &&
    r.headers["content-range"] === `${(n - 1) * chunk}-${n * chunk - 1}`;
}

describe.skipIf(gate.skip)(`a registry front on the real registry ${gate.reason}`, () => {
  let tb: Testbed;
  let front: CuttingProxy;
  let cdn: CdnServer;
  let dir: string;

  const frontClient = (logger = createLogger({ level: "silent" })) =>
    testbedRegistryClient(tb, { registry: front.host, logger, retry: FAST_RETRY });

  beforeAll(async () => {
    tb = await startTestbed();
    dir = await mkdtemp(path.join(tmpdir(), "registry-front-test-"));
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
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("sends an upload whose Location names another origin there without the registry's credentials", async () => {
    const log = capturingLogger();
    const client = testbedRegistryClient(tb, {
      registry: front.host,
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

  it("goes on after a chunk answered 416, from the offset the upload's address gives", async () => {
    const repository = `${PROJECT_PATH}/x86/presto-416`;
    const chunk = 64 << 10;
    const blob = Buffer.alloc(5 * chunk + 1000, 3);
    front.intercept({
      match: nthPatch(repository, 3, chunk),
      answer: {
        status: 416,
        body: registryErrorBody("BLOB_UPLOAD_INVALID", "blob upload invalid", "bad range"),
      },
    });
    const mark = tb.gitlab.registry.accessLog().length;
    front.resetCounts();
    const streamed = await frontClient().uploadBlobStream(repository, Readable.from([blob]), {
      chunkSize: chunk,
    });
    expect(streamed.digest).toBe(sha256Digest(blob));
    expect(front.intercepted.filter((r) => r.method === "PATCH")).toHaveLength(1);
    const log = tb.gitlab.registry.accessLog().slice(mark);
    // One session throughout: its offset was asked for (GET → 204), and only the refused chunk
    // went again.
    expect(log.filter((e) => e.method === "POST")).toHaveLength(1);
    expect(log.filter((e) => e.method === "GET" && e.status === 204)).toHaveLength(1);
    expect(front.bodyBytes).toBe(blob.length + chunk);
    expect(await frontClient().blobSize(repository, streamed.digest)).toBe(blob.length);
  });

  it("starts a layer again at once when a chunk is answered 404 (the upload gone), and publishes the image", async () => {
    const repository = `${PROJECT_PATH}/x86/presto-404`;
    const chunk = 256 << 10;
    const image = await writeDockerSaveTarball(path.join(dir, "lost.tar.gz"), {
      repoTag: "lost:nightly",
      layout: "legacy",
      gzip: true,
      layers: [{ sizeBytes: 1 << 20, seed: 21 }],
    });
    front.intercept({
      match: nthPatch(repository, 2, chunk),
      answer: {
        status: 404,
        body: registryErrorBody("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
      },
    });
    const mark = tb.gitlab.registry.accessLog().length;
    const pushed = await pushTarball({
      client: frontClient(),
      tarball: image.file,
      repository,
      tag: "v1",
      cache: LayerCache.inMemory(),
      logger: createLogger({ level: "silent" }),
      chunkSize: chunk,
    });
    expect(
      front.intercepted.filter((r) => r.method === "PATCH" && r.path.includes(repository)),
    ).toHaveLength(1);
    const uploads = tb.gitlab.registry
      .accessLog()
      .slice(mark)
      .filter((e) => e.method === "POST" && e.path.startsWith(`/v2/${repository}/blobs/uploads/`));
    // The layer's upload twice (the lost one, then the new one), the config's once.
    expect(uploads).toHaveLength(3);
    const manifest = await frontClient().getManifest(repository, "v1");
    expect(manifest?.digest).toBe(pushed.manifestDigest);
  });
});

describe.skipIf(gate.skip)(`an upload stopped mid-chunk on a slow link ${gate.reason}`, () => {
  let tb: Testbed;
  let link: FlakyProxy;

  beforeAll(async () => {
    tb = await startTestbed();
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    link = new FlakyProxy({ host, port: Number(port) });
    await link.start();
  });
  afterAll(async () => {
    await link?.stop();
    await tb?.stop();
  });

  it("ends the chunk in flight early and whole: the registry keeps what arrived, and the next upload sends only the rest", async () => {
    const first = capturingLogger();
    const client = testbedRegistryClient(tb, {
      registry: link.host,
      logger: first.logger,
      retry: FAST_RETRY,
    });
    const repository = `${PROJECT_PATH}/x86/presto-stopped`;
    const chunk = 16 << 20;
    const blob = Buffer.concat(await pseudoRandom(40 << 20, 5).toArray());
    // Slow enough that the second chunk is still on its way when the stop comes, and fast
    // enough that what the sockets buffer of it arrives within the stop's grace.
    link.throttle(8 << 20);
    link.resetCounts();
    const stop = new AbortController();
    let session: UploadSession | undefined;
    const watch = setInterval(() => {
      if (link.bytesUp > chunk + (2 << 20)) stop.abort(new Error("stopped"));
    }, 5);
    const stopped = await client
      .uploadBlobStream(repository, Readable.from([blob]), {
        chunkSize: chunk,
        signal: stop.signal,
        // Kept up to date chunk by chunk, as the layer cache records it.
        onSession: (s) => (session = s),
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      )
      .finally(() => clearInterval(watch));
    expect(stopped).toBe(stop.signal.reason);
    expect(session).toBeDefined();

    // The upload is there, holding more than the first chunk and less than two: the second
    // ended early rather than cut (a cut would have lost the whole upload).
    link.throttle(Infinity);
    link.resetCounts();
    const log = capturingLogger();
    const resumed = testbedRegistryClient(tb, {
      registry: link.host,
      logger: log.logger,
      retry: FAST_RETRY,
    });
    const streamed = await resumed.uploadBlobStream(repository, Readable.from([blob]), {
      chunkSize: chunk,
      session,
    });
    expect(streamed.digest).toBe(sha256Digest(blob));
    const at = /resuming an upload to \S+ at byte (\d+)/.exec(log.lines.join("\n"))?.[1];
    const held = Number(at);
    expect(held).toBeGreaterThan(chunk);
    expect(held).toBeLessThan(2 * chunk);
    // Only the rest went again, plus the requests' headers.
    expect(link.bytesUp).toBeLessThan(blob.length - held + (64 << 10));
    expect(await resumed.blobSize(repository, streamed.digest)).toBe(blob.length);
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
