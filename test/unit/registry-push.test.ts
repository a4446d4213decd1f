import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Logger } from "../../src/report/logger.js";
import { RegistryClient } from "../../src/registry/client.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { DOCKER_MANIFEST } from "../../src/registry/media-types.js";
import { pushTarball, type PushResult } from "../testbed/push-tarball.js";
import {
  PROJECT_PATH,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  startTestbed,
  testbedGate,
  type Testbed,
} from "../testbed/index.js";
import { writeDockerSaveTarball, type WrittenImage } from "../testbed/image-fixtures.js";
import type { AccessLogEntry } from "../testbed/registry.js";
import { CuttingProxy } from "../testbed/cutting-proxy.js";
import { FlakyProxy } from "../testbed/flaky-proxy.js";
import { capturingLogger, failure } from "./helpers.js";

const gate = testbedGate();
const FAST_RETRY = { attempts: 3, baseDelayMs: 20, maxDelayMs: 100 };
const BASE_FILES = { "etc/os-release": "ID=fixture\n", "usr/lib/base.txt": "base ".repeat(40_000) };

const repo = (name: string): string => `${PROJECT_PATH}/${name}`;

/** Blob uploads that carried bytes: the PUT that commits a blob names it in `?digest=`. */
function blobCommits(entries: AccessLogEntry[], digest: string): AccessLogEntry[] {
  return entries.filter(
    (e) => e.method === "PUT" && decodeURIComponent(e.path).includes(`digest=${digest}`),
  );
}

describe.skipIf(gate.skip)(`registry push engine on the real registry ${gate.reason}`, () => {
  let tb: Testbed;
  let dir: string;
  let log: { logger: Logger; lines: string[] };
  let client: RegistryClient;
  const images: Record<string, WrittenImage> = {};

  const newClient = (options: { password?: string; registry?: string } = {}): RegistryClient =>
    new RegistryClient({
      fetch: globalThis.fetch,
      registry: options.registry ?? tb.gitlab.registryHost,
      username: REGISTRY_USER,
      password: options.password ?? REGISTRY_PASSWORD,
      logger: log.logger,
      retry: FAST_RETRY,
    });

  /** Pulls the image back and checks it is exactly what the tarball holds. */
  async function expectPulled(
    repository: string,
    tag: string,
    image: WrittenImage,
    pushed: PushResult,
  ) {
    const manifest = await client.getManifest(repository, tag);
    expect(manifest?.mediaType).toBe(DOCKER_MANIFEST);
    expect(manifest?.digest).toBe(pushed.manifestDigest);
    const parsed = JSON.parse(manifest?.bytes.toString() ?? "{}") as {
      config: { digest: string };
      layers: Array<{ digest: string; size: number }>;
    };
    expect(parsed.config.digest).toBe(image.configDigest);
    expect(parsed.layers).toHaveLength(image.diffIds.length);
    const config = await readAll(await client.getBlob(repository, image.configDigest));
    expect(sha256(config)).toBe(image.configDigest);
    for (const [i, layer] of parsed.layers.entries()) {
      const gz = await readAll(await client.getBlob(repository, layer.digest));
      expect(gz.length).toBe(layer.size);
      expect(sha256(gunzipSync(gz))).toBe(image.diffIds[i]);
    }
  }

  beforeAll(async () => {
    tb = await startTestbed();
    dir = await mkdtemp(path.join(tmpdir(), "registry-push-test-"));
    log = capturingLogger();
    client = newClient();
    const write = async (name: string, layout: "legacy" | "oci", own: Record<string, string>) => {
      images[name] = await writeDockerSaveTarball(path.join(dir, `${name}.tar.gz`), {
        repoTag: `${name}:nightly`,
        layout,
        gzip: true,
        layers: [{ files: BASE_FILES }, { files: own }],
      });
    };
    await write("presto-coordinator", "legacy", { "opt/coordinator": "c".repeat(50_000) });
    await write("presto-java-worker", "oci", { "opt/java-worker": "j".repeat(60_000) });
    await write("presto-native-worker-cpu", "legacy", { "opt/native": "n".repeat(70_000) });
    images.big = await writeDockerSaveTarball(path.join(dir, "big.tar.gz"), {
      repoTag: "big:nightly",
      layout: "legacy",
      gzip: true,
      layers: [{ files: BASE_FILES }, { sizeBytes: 3 << 20, seed: 7 }],
    });
  });
  afterAll(async () => {
    await tb?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("pushes a legacy and an OCI layout tarball that pull back intact", async () => {
    const cache = LayerCache.inMemory();
    for (const name of ["presto-coordinator", "presto-java-worker"]) {
      const image = images[name] as WrittenImage;
      const target = repo(`layouts/${name}`);
      const pushed = await pushTarball({
        client,
        tarball: image.file,
        repository: target,
        tag: "v1",
        cache,
        logger: log.logger,
      });
      expect(pushed.configDigest).toBe(image.configDigest);
      await expectPulled(target, "v1", image, pushed);
    }
  });

  it("uploads a base layer shared by three images once, mounts it after, then skips everything", async () => {
    const statePath = path.join(dir, "state", "registry-layers.json");
    const cache = await LayerCache.open(statePath);
    const names = ["presto-coordinator", "presto-java-worker", "presto-native-worker-cpu"];
    const before = tb.gitlab.registry.accessLog().length;
    const results: PushResult[] = [];
    for (const name of names) {
      results.push(
        await pushTarball({
          client,
          tarball: (images[name] as WrittenImage).file,
          repository: repo(`x86/${name}`),
          tag: "presto-1-velox-1",
          cache,
          logger: log.logger,
          siblings: names.map((n) => repo(`x86/${n}`)),
        }),
      );
    }
    const baseDigest = results[0]?.layers[0]?.digest as string;
    expect(results.map((r) => r.layers[0]?.action)).toEqual(["uploaded", "mounted", "mounted"]);
    expect(results.every((r) => r.layers[0]?.digest === baseDigest)).toBe(true);
    expect(results.map((r) => r.layers[1]?.action)).toEqual(["uploaded", "uploaded", "uploaded"]);
    const log1 = tb.gitlab.registry.accessLog().slice(before);
    expect(blobCommits(log1, baseDigest)).toHaveLength(1);
    const mounts = log1.filter(
      (e) => e.method === "POST" && e.path.includes("mount=") && e.status === 201,
    );
    expect(mounts).toHaveLength(2);
    for (const [i, name] of names.entries()) {
      await expectPulled(
        repo(`x86/${name}`),
        "presto-1-velox-1",
        images[name] as WrittenImage,
        results[i] as PushResult,
      );
    }

    // The cache survives the process: a fresh one read from the file skips every blob.
    const reread = await LayerCache.open(statePath);
    const mark = tb.gitlab.registry.accessLog().length;
    for (const [i, name] of names.entries()) {
      const again = await pushTarball({
        client,
        tarball: (images[name] as WrittenImage).file,
        repository: repo(`x86/${name}`),
        tag: "presto-1-velox-1",
        cache: reread,
        logger: log.logger,
      });
      expect(again.layers.map((l) => l.action)).toEqual(["exists", "exists"]);
      expect(again.bytesUploaded).toBe(0);
      expect(again.manifestDigest).toBe(results[i]?.manifestDigest);
    }
    const log2 = tb.gitlab.registry.accessLog().slice(mark);
    expect(
      log2.filter(
        (e) => e.method === "PATCH" || (e.method === "PUT" && e.path.includes("/blobs/")),
      ),
    ).toEqual([]);
    expect(log2.filter((e) => e.path.includes("/blobs/uploads"))).toEqual([]);
  });

  it("compresses the same layer to the same digest every time", async () => {
    const first = await pushTarball({
      client,
      tarball: (images.big as WrittenImage).file,
      repository: repo("determinism/a"),
      tag: "t",
      cache: LayerCache.inMemory(),
      logger: log.logger,
    });
    const second = await pushTarball({
      client,
      tarball: (images.big as WrittenImage).file,
      repository: repo("determinism/b"),
      tag: "t",
      cache: LayerCache.inMemory(),
      logger: log.logger,
    });
    expect(second.layers.map((l) => l.digest)).toEqual(first.layers.map((l) => l.digest));
    expect(second.manifestDigest).toBe(first.manifestDigest);
    expect(second.layers.map((l) => l.action)).toEqual(["uploaded", "uploaded"]);
  });

  it("refuses a wrong password with a clear error and pushes nothing", async () => {
    const bad = newClient({ password: "not-the-password" });
    const mark = tb.gitlab.registry.accessLog().length;
    const loginError = await failure(bad.login());
    expect(loginError.message).toBe(
      `registry ${tb.gitlab.registryHost} refused the credentials of user ${REGISTRY_USER} (401)`,
    );
    expect(loginError.hint).toMatch(/--registry-username\/--registry-password/);
    expect(loginError.hint).toMatch(/GITLAB_REGISTRY_PASSWORD/);
    expect(loginError.hint).toMatch(/CI_REGISTRY_PASSWORD/);
    const pushError = await failure(
      pushTarball({
        client: bad,
        tarball: (images["presto-coordinator"] as WrittenImage).file,
        repository: repo("x86/refused"),
        tag: "v1",
        cache: LayerCache.inMemory(),
        logger: log.logger,
      }),
    );
    expect(pushError.message).toMatch(/refused the credentials of user ci-bot \(401\)/);
    const touched = tb.gitlab.registry
      .accessLog()
      .slice(mark)
      .filter((e) => e.path !== "/v2/");
    expect(touched).toEqual([]);
  });

  it("names the registry and what it was doing when it dies mid-push; a rerun resumes", async () => {
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const proxy = new FlakyProxy({ host, port: Number(port) });
    await proxy.start();
    try {
      const flaky = newClient({ registry: proxy.host });
      const statePath = path.join(dir, "state-cut", "registry-layers.json");
      const cache = await LayerCache.open(statePath);
      const image = images.big as WrittenImage;
      const target = repo("x86/presto-cut");
      // Past the small base layer, well inside the 3 MiB one.
      proxy.cutAfterBytes(1 << 20);
      const error = await failure(
        pushTarball({
          client: flaky,
          tarball: image.file,
          repository: target,
          tag: "v1",
          cache,
          logger: log.logger,
        }),
      );
      expect(error.message).toMatch(
        new RegExp(
          `^registry ${proxy.host} unreachable while uploading layer sha256:[0-9a-f]{12}… of ${target} \\(ECONNREFUSED\\)$`,
        ),
      );
      expect(error.hint).toBe("is it up? rerun to resume; blobs already uploaded are skipped");
      expect(await client.manifestDigest(target, "v1")).toBeUndefined();

      await proxy.start();
      const rerun = await pushTarball({
        client: flaky,
        tarball: image.file,
        repository: target,
        tag: "v1",
        cache: await LayerCache.open(statePath),
        logger: log.logger,
      });
      // The big layer was cut, so it goes up again; the small base layer, uploaded in parallel,
      // is skipped if its upload finished before the cut (a matter of timing).
      expect(rerun.layers.at(-1)?.action).toBe("uploaded");
      expect(["exists", "uploaded"]).toContain(rerun.layers[0]?.action);
      await expectPulled(target, "v1", image, rerun);
    } finally {
      await proxy.stop();
    }
  });

  it("retries a layer upload cut once, within the same push", async () => {
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const proxy = new FlakyProxy({ host, port: Number(port) });
    await proxy.start();
    try {
      const flaky = newClient({ registry: proxy.host });
      const image = images.big as WrittenImage;
      const target = repo("x86/presto-blip");
      proxy.cutAfterBytes(1 << 20, 30);
      const pushed = await pushTarball({
        client: flaky,
        tarball: image.file,
        repository: target,
        tag: "v1",
        cache: LayerCache.inMemory(),
        logger: log.logger,
      });
      expect(pushed.layers.map((l) => l.action)).toEqual(["uploaded", "uploaded"]);
      const warned = log.lines.filter((l) => l.includes("layer upload interrupted"));
      expect(warned.some((l) => l.includes(target))).toBe(true);
      // Nothing buffers in front of the registry here, so the cut PATCH reached it in part and
      // it threw the upload away: the layer starts again rather than resuming at a wrong offset.
      expect(warned.some((l) => l.includes(`lost the upload to ${target}`))).toBe(true);
      await expectPulled(target, "v1", image, pushed);
    } finally {
      await proxy.stop();
    }
  });

  /** Layer uploads (PATCHes) that reached the registry, and the upload sessions opened (POSTs). */
  function uploadRequests(entries: AccessLogEntry[], target: string) {
    const uploads = entries.filter((e) => e.path.startsWith(`/v2/${target}/blobs/uploads/`));
    return {
      opened: uploads.filter((e) => e.method === "POST" && e.status === 202).length,
      patched: uploads.filter((e) => e.method === "PATCH" && e.status === 202).length,
    };
  }

  it("resumes a layer upload cut three times from what the registry holds, through a buffering proxy", async () => {
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const proxy = new CuttingProxy({ host, port: Number(port) });
    await proxy.start();
    try {
      const image = images.big as WrittenImage;
      const target = repo("x86/presto-resume");
      const chunk = 256 << 10;
      const push = (tag: string, repository: string) =>
        pushTarball({
          client: newClient({ registry: proxy.host }),
          tarball: image.file,
          repository,
          tag,
          cache: LayerCache.inMemory(),
          logger: log.logger,
          chunkSize: chunk,
        });
      // The same push uncut, for the bytes it takes.
      proxy.resetCounts();
      await push("uncut", repo("x86/presto-resume-uncut"));
      const uncut = proxy.bodyBytes;

      const layer = 3 << 20;
      proxy.cutAt([0.3, 0.6, 0.9].map((share) => Math.round(share * layer)));
      const mark = tb.gitlab.registry.accessLog().length;
      const pushed = await push("v1", target);
      expect(proxy.cutCount).toBe(3);
      // Each cut cost at most the chunk in flight: the layer never started over.
      expect(proxy.bodyBytes).toBeLessThanOrEqual(uncut + 3 * chunk);
      const requests = uploadRequests(tb.gitlab.registry.accessLog().slice(mark), target);
      expect(requests.opened).toBe(3); // base layer, big layer, config: one session each
      const interrupted = log.lines.filter((l) => l.includes("chunk upload interrupted"));
      expect(interrupted.filter((l) => l.includes(target))).toHaveLength(3);
      await expectPulled(target, "v1", image, pushed);
    } finally {
      await proxy.stop();
    }
  });

  it("takes up an upload a failed pass left, regenerating the layer and sending only the rest", async () => {
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const proxy = new CuttingProxy({ host, port: Number(port) });
    await proxy.start();
    try {
      const image = images.big as WrittenImage;
      const target = repo("x86/presto-takeup");
      // A cut, then the link stays down for longer than one chunk's retries (3 attempts here):
      // the pass over the tarball fails and the next one resumes the upload the registry holds.
      proxy.cutAt([2 << 20], 2);
      const mark = tb.gitlab.registry.accessLog().length;
      const pushed = await pushTarball({
        client: newClient({ registry: proxy.host }),
        tarball: image.file,
        repository: target,
        tag: "v1",
        cache: LayerCache.inMemory(),
        logger: log.logger,
        chunkSize: 256 << 10,
      });
      const requests = uploadRequests(tb.gitlab.registry.accessLog().slice(mark), target);
      expect(requests.opened).toBe(3);
      const resumed = log.lines.filter(
        (l) => l.includes(`resuming an upload to ${target} at byte`) && !l.includes("at byte 0"),
      );
      expect(resumed).toHaveLength(1);
      expect(log.lines.some((l) => l.includes("reading the tarball again"))).toBe(true);
      expect(proxy.bodyBytes).toBeLessThan((3 << 20) + 2 * (256 << 10));
      await expectPulled(target, "v1", image, pushed);
    } finally {
      await proxy.stop();
    }
  });

  it("a push that failed for good leaves its upload for the next push, which resumes it", async () => {
    const [host, port] = tb.gitlab.registryHost.split(":") as [string, string];
    const proxy = new CuttingProxy({ host, port: Number(port) });
    await proxy.start();
    try {
      const image = images.big as WrittenImage;
      const target = repo("x86/presto-next-push");
      const statePath = path.join(dir, "state-next-push", "registry-layers.json");
      const push = async () =>
        pushTarball({
          client: newClient({ registry: proxy.host }),
          tarball: image.file,
          repository: target,
          tag: "v1",
          cache: await LayerCache.open(statePath),
          logger: log.logger,
          chunkSize: 256 << 10,
        });
      // Cut at 2 MiB, then the link stays down past every retry: the push fails.
      proxy.cutAt([2 << 20], 1000);
      await failure(push());
      const saved = JSON.parse(await readFile(statePath, "utf8")) as {
        uploads: Record<string, { location: string }>;
      };
      expect(Object.keys(saved.uploads)).toEqual([
        `${proxy.host}/${target}@${image.diffIds.at(-1) ?? ""}`,
      ]);

      // The link is back: the next push (a new process) sends only what the registry lacks.
      proxy.cutAt([]);
      const pushed = await push();
      const resumed = log.lines.filter(
        (l) => l.includes(`resuming an upload to ${target} at byte`) && !l.includes("at byte 0"),
      );
      expect(resumed).toHaveLength(1);
      expect(proxy.bodyBytes).toBeLessThan((3 << 20) - (1 << 20));
      await expectPulled(target, "v1", image, pushed);
      const after = JSON.parse(await readFile(statePath, "utf8")) as { uploads: object };
      expect(after.uploads).toEqual({});
    } finally {
      await proxy.stop();
    }
  });

  it("never logs the password or a token", async () => {
    const text = log.lines.join("\n");
    expect(log.lines.length).toBeGreaterThan(10);
    expect(text).not.toContain(REGISTRY_PASSWORD);
    expect(text).not.toMatch(/eyJ[\w-]+\.eyJ/);
    expect(text).not.toMatch(/Basic [A-Za-z0-9+/=]{8,}/);
  });
});

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
