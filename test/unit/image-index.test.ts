import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FetchLike } from "../../src/net/http.js";
import { silentLogger } from "../../src/report/logger.js";
import { RegistryClient } from "../../src/registry/client.js";
import { unlistedSources, writeImageIndex } from "../../src/registry/image-index.js";
import { LayerCache } from "../../src/registry/layer-cache.js";
import { OCI_INDEX, OCI_MANIFEST } from "../../src/registry/media-types.js";
import { pushTarball, type PushResult } from "../testbed/push-tarball.js";
import * as testbed from "../testbed/index.js";
import type { Testbed } from "../testbed/index.js";
import { writeDockerSaveTarball } from "../testbed/image-fixtures.js";
import { failure } from "./helpers.js";

const gate = testbed.testbedGate();
const repo = (name: string): string => `${testbed.PROJECT_PATH}/${name}`;
const INDEX_REPO = repo("presto-coordinator");
const SOURCES = [
  { repository: repo("x86/presto-coordinator") },
  { repository: repo("arm/presto-coordinator") },
];

interface Index {
  manifests: Array<{
    digest: string;
    mediaType: string;
    platform?: { architecture: string; os: string };
    annotations?: Record<string, string>;
  }>;
  annotations?: Record<string, string>;
}

describe.skipIf(gate.skip)(
  `the multi-arch index writer against a real registry ${gate.reason}`,
  () => {
    let tb: Testbed;
    let dir: string;
    const logger = silentLogger();
    const cache = LayerCache.inMemory();
    /**
     * Every request the client sends, a hook run after each (a second writer, in one test), and
     * one run before each that may answer in the registry's place (as it answers under a race).
     */
    const sent: Array<{ method: string; url: string }> = [];
    let after: ((method: string, url: string) => Promise<void>) | undefined;
    let before: ((method: string, url: string) => Promise<Response | undefined>) | undefined;
    const fetch: FetchLike = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      const method = init?.method ?? "GET";
      const instead = await before?.(method, url);
      if (instead) {
        sent.push({ method, url });
        return instead;
      }
      const res = await globalThis.fetch(input, init);
      sent.push({ method, url });
      await after?.(method, url);
      return res;
    };
    let client: RegistryClient;

    const image = async (
      architecture: string,
      repository: string,
      tag: string,
      annotations?: Record<string, string>,
    ): Promise<PushResult> => {
      const written = await writeDockerSaveTarball(
        path.join(dir, `${architecture}-${tag}.tar.gz`),
        {
          repoTag: `presto-coordinator:${tag}`,
          layout: "legacy",
          gzip: true,
          architecture,
          layers: [
            { files: { "etc/os-release": "ID=fixture\n" } },
            { files: { [`opt/${architecture}`]: architecture } },
          ],
        },
      );
      return pushTarball({
        client,
        tarball: written.file,
        repository,
        tag,
        cache,
        logger,
        ...(annotations ? { annotations } : {}),
      });
    };
    const read = async (reference: string, repository = INDEX_REPO): Promise<Index> => {
      const got = await client.getManifest(repository, reference);
      expect(got?.mediaType).toBe(OCI_INDEX);
      return JSON.parse(got?.bytes.toString("utf8") ?? "{}") as Index;
    };
    const platforms = (index: Index) =>
      index.manifests.map((m) =>
        m.platform ? `${m.platform.os}/${m.platform.architecture}` : "-",
      );

    beforeAll(async () => {
      tb = await testbed.startTestbed();
      dir = await mkdtemp(path.join(tmpdir(), "image-index-test-"));
      client = testbed.testbedRegistryClient(tb, {
        fetch,
        logger,
        retry: { attempts: 2, baseDelayMs: 20, maxDelayMs: 50 },
      });
    });
    afterAll(async () => {
      await tb?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("one platform, then both; an unchanged index is not written again", async () => {
      const x86 = await image("amd64", repo("x86/presto-coordinator"), "t1", { a: "x86" });
      const one = await writeImageIndex({
        client,
        repository: INDEX_REPO,
        tag: "t1",
        sources: SOURCES,
        logger,
      });
      expect(one).toMatchObject({
        written: true,
        entries: [{ platform: "linux/amd64", digest: x86.manifestDigest }],
      });
      const arm = await image("arm64", repo("arm/presto-coordinator"), "t1", { a: "arm" });
      const mark = tb.gitlab.registry.accessLog().length;
      const both = await writeImageIndex({
        client,
        repository: INDEX_REPO,
        tag: "t1",
        sources: SOURCES,
        logger,
      });
      expect(both.entries.map((e) => [e.platform, e.digest])).toEqual([
        ["linux/amd64", x86.manifestDigest],
        ["linux/arm64", arm.manifestDigest],
      ]);
      // No layer byte moved: blobs were mounted; only the configs were read (for the platform).
      const moved = tb.gitlab.registry.accessLog().slice(mark);
      const configs = [x86.configDigest, arm.configDigest];
      expect(
        moved.filter(
          (e) => e.method === "PATCH" || (e.method === "PUT" && e.path.includes("/blobs/")),
        ),
      ).toEqual([]);
      const reads = moved.filter(
        (e) => e.method === "GET" && e.path.includes("/blobs/") && e.status === 200,
      );
      expect(reads.length).toBeGreaterThan(0);
      expect(reads.every((e) => configs.some((c) => e.path.endsWith(c)))).toBe(true);
      expect(moved.some((e) => e.method === "POST" && e.path.includes("mount="))).toBe(true);
      const index = await read("t1");
      // Each entry keeps its image's own annotations; the index those they share (none here).
      expect(index.manifests.map((m) => m.annotations)).toEqual([{ a: "x86" }, { a: "arm" }]);
      expect(index.annotations).toBeUndefined();
      // The children are in the index's repository, by digest.
      for (const digest of [x86.manifestDigest, arm.manifestDigest]) {
        expect((await client.getManifest(INDEX_REPO, digest))?.mediaType).toBe(OCI_MANIFEST);
      }

      sent.length = 0;
      const again = await writeImageIndex({
        client,
        repository: INDEX_REPO,
        tag: "t1",
        sources: SOURCES,
        logger,
      });
      expect(again).toMatchObject({ written: false, digest: both.digest });
      expect(sent.filter((r) => r.method === "PUT")).toEqual([]);
    });

    it("keeps entries of other platforms, replaces its own platform's, and takes a plain image at the tag as an entry", async () => {
      const x86 = await image("amd64", repo("x86/presto-coordinator"), "t2");
      // Someone put a ppc64le image at the tag itself: it stays, as an entry.
      const ppc = await image("ppc64le", INDEX_REPO, "t2");
      const first = await writeImageIndex({
        client,
        repository: INDEX_REPO,
        tag: "t2",
        sources: SOURCES,
        logger,
      });
      expect(first.entries.map((e) => e.platform)).toEqual(["linux/amd64", "linux/ppc64le"]);
      expect(first.entries[1]?.digest).toBe(ppc.manifestDigest);

      // The x86 build is pushed again (another manifest): its entry is replaced, ppc64le kept.
      const rebuilt = await image("amd64", repo("x86/presto-coordinator"), "t2", {
        rebuilt: "yes",
      });
      expect(rebuilt.manifestDigest).not.toBe(x86.manifestDigest);
      const second = await writeImageIndex({
        client,
        repository: INDEX_REPO,
        tag: "t2",
        sources: SOURCES,
        logger,
      });
      expect(second.entries.map((e) => [e.platform, e.digest])).toEqual([
        ["linux/amd64", rebuilt.manifestDigest],
        ["linux/ppc64le", ppc.manifestDigest],
      ]);
    });

    it("another writer between our write and our check is merged with, not overwritten", async () => {
      const x86 = await image("amd64", repo("x86/presto-coordinator"), "t3");
      const arm = await image("arm64", repo("arm/presto-coordinator"), "t3");
      // The other platform's daemon, which read the index before we wrote it and writes it after
      // us: its index holds only its own entry.
      const other = testbed.testbedRegistryClient(tb, { logger });
      const armManifest = await other.getManifest(repo("arm/presto-coordinator"), "t3");
      const theirs = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [
            {
              mediaType: OCI_MANIFEST,
              digest: arm.manifestDigest,
              size: armManifest?.bytes.length,
              platform: { architecture: "arm64", os: "linux" },
            },
          ],
        }),
      );
      const ours = (method: string, url: string) =>
        method === "PUT" && url.endsWith(`/${INDEX_REPO}/manifests/t3`);
      let interloped = false;
      after = async (method, url) => {
        if (interloped || !ours(method, url)) return;
        interloped = true;
        await other.putManifest(INDEX_REPO, "t3", theirs, OCI_INDEX);
      };
      sent.length = 0;
      try {
        const result = await writeImageIndex({
          client,
          repository: INDEX_REPO,
          tag: "t3",
          sources: SOURCES,
          logger,
        });
        expect(interloped).toBe(true);
        expect(result.entries.map((e) => e.digest)).toEqual([
          x86.manifestDigest,
          arm.manifestDigest,
        ]);
      } finally {
        after = undefined;
      }
      expect(platforms(await read("t3"))).toEqual(["linux/amd64", "linux/arm64"]);
      // Ours, overwritten, then ours again once the check found the other writer's.
      expect(sent.filter((r) => ours(r.method, r.url))).toHaveLength(2);
    });

    it("tells which platform's image an index whose tag is there does not list", async () => {
      const tag = "short";
      const x86 = await image("amd64", repo("x86/presto-coordinator"), tag);
      const lookup = { client, repository: INDEX_REPO, tag, sources: SOURCES };
      // No index yet: the image there is unlisted; a platform without one is not.
      expect(await unlistedSources(lookup)).toEqual([repo("x86/presto-coordinator")]);
      await writeImageIndex({ ...lookup, logger });
      expect(await unlistedSources(lookup)).toEqual([]);
      // The arm image pushed, and its writer stopped before the index: the index is short.
      await image("arm64", repo("arm/presto-coordinator"), tag);
      expect(await unlistedSources(lookup)).toEqual([repo("arm/presto-coordinator")]);
      const both = await writeImageIndex({ ...lookup, logger });
      expect(both.entries.map((e) => e.digest)).toContain(x86.manifestDigest);
      expect(await unlistedSources(lookup)).toEqual([]);
    });

    describe("two writers at once", () => {
      /** The registry's 400 for an index whose child it read while another writer rewrote it. */
      const refused = (code: string, status = 400) =>
        new Response(
          JSON.stringify({ errors: [{ code, message: `${code} (the other writer at work)` }] }),
          { status, headers: { "content-type": "application/json" } },
        );
      const indexPut = (tag: string) => (method: string, url: string) =>
        method === "PUT" && url.endsWith(`/${INDEX_REPO}/manifests/${tag}`);
      /** The other platform's daemon, with its own provenance on its own entry. */
      const otherWriter = (tag: string) => {
        const other = new RegistryClient({
          fetch: globalThis.fetch,
          registry: tb.gitlab.registryHost,
          username: testbed.REGISTRY_USER,
          password: testbed.REGISTRY_PASSWORD,
          logger,
        });
        return writeImageIndex({
          client: other,
          repository: INDEX_REPO,
          tag,
          sources: [SOURCES[0]!, { ...SOURCES[1]!, annotations: { by: "arm daemon" } }],
          logger,
        });
      };

      it.each([["DIGEST_INVALID"], ["MANIFEST_UNKNOWN"], ["MANIFEST_BLOB_UNKNOWN"]])(
        "our index write answered %s while the other writer writes: read again, merged, success",
        async (code) => {
          const tag = `race-${code.toLowerCase()}`;
          await image("amd64", repo("x86/presto-coordinator"), tag);
          const arm = await image("arm64", repo("arm/presto-coordinator"), tag);
          let raced = false;
          before = async (method, url) => {
            if (raced || !indexPut(tag)(method, url)) return undefined;
            raced = true;
            // The other writer's whole write lands while ours is at the registry, which then
            // answers ours as Distribution does when it read a link the other was rewriting.
            await otherWriter(tag);
            return refused(code);
          };
          try {
            const result = await writeImageIndex({
              client,
              repository: INDEX_REPO,
              tag,
              sources: [{ ...SOURCES[0]!, annotations: { by: "x86 daemon" } }, SOURCES[1]!],
              logger,
            });
            expect(raced).toBe(true);
            expect(result.entries.map((e) => e.platform)).toEqual(["linux/amd64", "linux/arm64"]);
          } finally {
            before = undefined;
          }
          const index = await read(tag);
          expect(platforms(index)).toEqual(["linux/amd64", "linux/arm64"]);
          expect(index.manifests.map((m) => m.annotations)).toEqual([
            { by: "x86 daemon" },
            { by: "arm daemon" },
          ]);
          expect(index.manifests[1]?.digest).toBe(arm.manifestDigest);
        },
      );

      it("every write of ours refused with a conflict, but the index the other wrote lists both images: success", async () => {
        const tag = "race-conflict";
        const x86 = await image("amd64", repo("x86/presto-coordinator"), tag);
        await image("arm64", repo("arm/presto-coordinator"), tag);
        await otherWriter(tag);
        before = async (method, url) =>
          indexPut(tag)(method, url) ? refused("CONFLICT", 409) : undefined;
        try {
          const result = await writeImageIndex({
            client,
            repository: INDEX_REPO,
            tag,
            // Our provenance differs from what the index says: we would write, and cannot.
            sources: [{ ...SOURCES[0]!, annotations: { by: "x86 daemon" } }, SOURCES[1]!],
            logger,
          });
          expect(result.written).toBe(false);
          expect(result.entries.map((e) => [e.platform, e.digest])).toContainEqual([
            "linux/amd64",
            x86.manifestDigest,
          ]);
        } finally {
          before = undefined;
        }
      });

      it("refused every time and the index still short of our image: fails with the registry's answer", async () => {
        const tag = "race-lost";
        await image("amd64", repo("x86/presto-coordinator"), tag);
        before = async (method, url) =>
          indexPut(tag)(method, url) ? refused("DIGEST_INVALID") : undefined;
        try {
          const lost = await failure(
            writeImageIndex({ client, repository: INDEX_REPO, tag, sources: SOURCES, logger }),
          );
          expect(lost.oneLine()).toMatch(/DIGEST_INVALID/);
        } finally {
          before = undefined;
        }
        expect(await client.getManifest(INDEX_REPO, tag)).toBeUndefined();
      });
    });

    it("refuses two images of one platform, and an index with no image at all", async () => {
      await image("amd64", repo("x86/presto-coordinator"), "t4");
      await image("amd64", repo("arm/presto-coordinator"), "t4");
      const twice = await failure(
        writeImageIndex({ client, repository: INDEX_REPO, tag: "t4", sources: SOURCES, logger }),
      );
      expect(twice.message).toMatch(
        /x86\/presto-coordinator:t4 and .*arm\/presto-coordinator:t4 are both linux\/amd64 images/,
      );
      const none = await failure(
        writeImageIndex({
          client,
          repository: INDEX_REPO,
          tag: "nothing-here",
          sources: SOURCES,
          logger,
        }),
      );
      expect(none.oneLine()).toMatch(
        /^no image to index: .* — push the images of the build first$/,
      );
    });
  },
);
