/**
 * The sink matrix (issue 20): each sink — the registry over the distribution API, the Docker
 * engine — fed each source — a tarball on disk known from before, the same file streamed through
 * the checks, and an entry of an artifact zip read as a stream (archive/zip-stream.ts, what
 * `sync` reads while it downloads). A sink never asks where an image came from: the registry
 * writes the same manifest whichever source fed it, and both refuse an image that is not the one
 * the plan names before anything is published. Needs the testbed's registry (and dockerd for
 * the Docker sink).
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectImageTarball } from "../../src/archive/docker-save.js";
import { GrowingFile } from "../../src/archive/growing-file.js";
import {
  entrySource,
  fileSource,
  type ImageSink,
  type ImageTarget,
  type PublishableImage,
} from "../../src/archive/image-source.js";
import { readZipStream } from "../../src/archive/zip-stream.js";
import { dockerSink } from "../../src/docker/sink.js";
import type { ProgressEvent } from "../../src/domain/events.js";
import { DamagedInputError } from "../../src/errors.js";
import { silentLogger } from "../../src/report/logger.js";
import { RegistryClient } from "../../src/registry/client.js";
import { registrySink, type SinkOptions } from "../../src/registry/sink.js";
import { dockerdGate, startDockerd, type Dockerd } from "../testbed/dockerd.js";
import { writeArtifactZip, writeDockerSaveTarball } from "../testbed/image-fixtures.js";
import type { WrittenImage } from "../testbed/image-fixtures.js";
import * as testbed from "../testbed/index.js";
import type { Testbed } from "../testbed/index.js";

const gate = testbed.testbedGate();
const dockerGate = gate.skip ? gate : dockerdGate();

type SourceName = "known file" | "streamed file" | "zip entry";
const SOURCES: SourceName[] = ["known file", "streamed file", "zip entry"];

describe.skipIf(gate.skip)(`sinks × sources ${gate.reason}`, () => {
  let tb: Testbed;
  let dir: string;
  let client: RegistryClient;
  let image: WrittenImage;
  let zip: string;
  const entry = "presto-coordinator-nightly.tar.gz";

  beforeAll(async () => {
    tb = await testbed.startTestbed();
    dir = await mkdtemp(path.join(tmpdir(), "sinks-test-"));
    client = testbed.testbedRegistryClient(tb);
    image = await writeDockerSaveTarball(path.join(dir, entry), {
      repoTag: "presto-coordinator:nightly",
      layout: "legacy",
      gzip: true,
      layers: [{ files: { "etc/os-release": "ID=sinks\n" } }, { sizeBytes: 256 << 10, seed: 3 }],
    });
    zip = path.join(dir, "artifact.zip");
    await writeArtifactZip(zip, [
      { name: "build-metadata.txt", data: Buffer.from("x\n") },
      { name: entry, file: image.file },
    ]);
  });
  afterAll(async () => {
    await tb?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const options = (
    stateDir: string,
    events: ProgressEvent[],
    env?: NodeJS.ProcessEnv,
  ): SinkOptions => ({
    logger: silentLogger(),
    registry: client,
    username: testbed.REGISTRY_USER,
    password: testbed.REGISTRY_PASSWORD,
    stateDir,
    progress: (event) => events.push(event),
    ...(env ? { env } : {}),
  });

  const targetOf = (repository: string, localRef = "presto-coordinator:nightly"): ImageTarget => ({
    localRef,
    repository: `${testbed.PROJECT_PATH}/${repository}`,
    tag: "nightly",
    remoteRef: `${tb.gitlab.registryHost}/${testbed.PROJECT_PATH}/${repository}:nightly`,
    siblings: [],
    label: entry,
  });

  /** The image through `sink`, read from `source`: as push.ts and stream.ts drive a sink. */
  async function through(
    sink: ImageSink,
    source: SourceName,
    target: ImageTarget,
  ): Promise<PublishableImage> {
    const batch = await sink.batch(new AbortController().signal, [target]);
    if (source === "known file") {
      const info = await inspectImageTarball(image.file);
      return batch.begin(target, info).ready(fileSource(image.file));
    }
    const write = batch.begin(target);
    if (source === "streamed file") {
      await pipeline(fileSource(image.file).open(), write.sink as NodeJS.WritableStream);
      return write.ready(fileSource(image.file));
    }
    const file = await GrowingFile.open(zip, (await stat(zip)).size);
    file.settle({ ok: true });
    let ready: Promise<PublishableImage> | undefined;
    try {
      await readZipStream({
        file,
        label: zip,
        onEntry: (e) => (e.name === entry ? write.sink : undefined),
        onEntryEnd: (e) => {
          if (e.name === entry) ready = write.ready(entrySource(file, e));
          ready?.catch(() => undefined);
        },
      });
      if (!ready) throw new Error(`${entry} never ended`);
      return await ready;
    } finally {
      await file.close();
    }
  }

  async function manifestOf(repository: string) {
    const manifest = await client.getManifest(`${testbed.PROJECT_PATH}/${repository}`, "nightly");
    const parsed = JSON.parse(manifest?.bytes.toString() ?? "{}") as {
      config?: { digest: string };
      layers?: unknown[];
    };
    return {
      digest: manifest?.digest,
      config: parsed.config?.digest,
      layers: parsed.layers?.length,
    };
  }

  it("the registry sink writes the same manifest whichever source fed it, and reports what moved", async () => {
    const digests = new Set<string | undefined>();
    for (const source of SOURCES) {
      const events: ProgressEvent[] = [];
      const repository = `sinks/registry-${source.replace(" ", "-")}`;
      const ready = await through(
        registrySink(options(path.join(dir, `state-${source}`), events)),
        source,
        targetOf(repository),
      );
      expect(ready.info.configDigest, source).toBe(image.configDigest);
      // Nothing is published before publish(): the blobs are in, the tag is not.
      expect(
        await client.manifestDigest(`${testbed.PROJECT_PATH}/${repository}`, "nightly"),
        source,
      ).toBeUndefined();
      const pushed = await ready.publish();
      expect(pushed.summary, source).toMatch(
        /^2 layers sent, 0 reused, [\d.]+ [KM]iB uploaded, in [\d.]+ s$/,
      );
      const written = await manifestOf(repository);
      expect(written, source).toEqual({
        digest: pushed.digest,
        config: image.configDigest,
        layers: 2,
      });
      digests.add(pushed.digest);
      // One push bar per image, opened and closed.
      const task = `push ${testbed.PROJECT_PATH}/${repository}:nightly`;
      expect(
        events.filter((e) => e.task === task).map((e) => e.kind),
        source,
      ).toEqual(expect.arrayContaining(["start", "bytes", "end"]));
      expect(
        events.find((e) => e.task === task && e.kind === "end"),
        source,
      ).toMatchObject({ ok: true });
    }
    expect(digests.size).toBe(1);
  });

  it("both sinks refuse an image that is not the one the plan names, from any source, publishing nothing", async () => {
    for (const source of SOURCES) {
      const repository = `sinks/refused-${source.replace(" ", "-")}`;
      const sink = registrySink(options(path.join(dir, "state-refused"), []));
      const error = await through(
        sink,
        source,
        targetOf(repository, "presto-coordinator:other"),
      ).catch((err: unknown) => err);
      expect(error, source).toBeInstanceOf(DamagedInputError);
      expect((error as Error).message, source).toBe(
        `${entry} does not hold presto-coordinator:other (its RepoTags: presto-coordinator:nightly)`,
      );
      expect(
        await client.manifestDigest(`${testbed.PROJECT_PATH}/${repository}`, "nightly"),
      ).toBeUndefined();
    }
  });

  describe.skipIf(dockerGate.skip)(`the Docker sink ${dockerGate.reason}`, () => {
    let dockerd: Dockerd;
    beforeAll(async () => {
      dockerd = await startDockerd();
    }, 120_000);
    afterAll(async () => {
      await dockerd?.stop();
    });

    it("loads, tags and pushes from every source: the image ID and layers are the tarball's", async () => {
      for (const source of SOURCES) {
        const repository = `sinks/docker-${source.replace(" ", "-")}`;
        const sink = dockerSink(
          options(path.join(dir, "state-docker"), [], { DOCKER_HOST: dockerd.dockerHost }),
        );
        const ready = await through(sink, source, targetOf(repository));
        const pushed = await ready.publish();
        expect(pushed.summary, source).toMatch(
          /layers? sent \([\d.]+ [KM]?i?B before compression\), \d+ reused, in [\d.]+ s$/,
        );
        const written = await manifestOf(repository);
        expect(written, source).toMatchObject({
          digest: pushed.digest,
          config: image.configDigest,
          layers: 2,
        });
      }
      const refused = await through(
        dockerSink(
          options(path.join(dir, "state-docker"), [], { DOCKER_HOST: dockerd.dockerHost }),
        ),
        "streamed file",
        targetOf("sinks/docker-refused", "presto-coordinator:other"),
      ).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(DamagedInputError);
      expect(
        await client.manifestDigest(`${testbed.PROJECT_PATH}/sinks/docker-refused`, "nightly"),
      ).toBeUndefined();
    });
  });
});
