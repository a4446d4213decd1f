/**
 * The registry sink's own check of every layer it sends (registry/layer-upload.ts): the bytes
 * that really went up must be a tar, and the one the diff-id names, before the upload is
 * committed. Prepare's check was of the file as it was then; this one is of what is sent.
 * A registry that records what would have been committed stands in for the real one.
 */
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import type { LayerVerdict } from "../../src/archive/layer-check.js";
import { DamagedInputError } from "../../src/errors.js";
import type { RegistryClient } from "../../src/registry/client.js";
import { uploadLayer } from "../../src/registry/layer-upload.js";
import { DOCKER_LAYER_GZIP } from "../../src/registry/media-types.js";
import { layerTar, sha256 } from "../testbed/hostile-images.js";

/** A registry that takes a blob's bytes, runs the commit check, and records what it committed. */
function recordingRegistry(): { client: RegistryClient; committed: string[] } {
  const committed: string[] = [];
  const client = {
    registry: "registry.test",
    async uploadBlobStream(
      _repository: string,
      source: AsyncIterable<Uint8Array>,
      options: { beforeCommit?: (blob: { digest: string; size: number }) => unknown },
    ) {
      const hash = createHash("sha256");
      let size = 0;
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
      }
      const blob = { digest: `sha256:${hash.digest("hex")}`, size };
      await options.beforeCommit?.(blob);
      committed.push(blob.digest);
      return blob;
    },
  };
  return { client: client as unknown as RegistryClient, committed };
}

async function* chunks(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += 1000) yield bytes.subarray(at, at + 1000);
}

const options = (client: RegistryClient) => ({
  client,
  repository: "hercules/veloxtesting/x86/presto-coordinator",
  tarball: "image.tar.gz",
});

describe("uploadLayer: the diff-id check at commit", () => {
  it("commits a layer whose bytes are its diff-id, compressed here (plain) or sent as saved (gzip)", async () => {
    const layer = await layerTar({ "opt/app": "the real layer\n".repeat(500) });
    const { client, committed } = recordingRegistry();
    const plain = await uploadLayer(
      options(client),
      { path: "0/layer.tar", diffId: sha256(layer) },
      chunks(layer),
    );
    expect(plain.diffId).toBe(sha256(layer));
    const stored = zlib.gzipSync(layer);
    const saved = await uploadLayer(
      options(client),
      { path: "1/layer.tar", diffId: sha256(layer) },
      chunks(stored),
    );
    expect(saved).toMatchObject({ digest: sha256(stored), mediaType: DOCKER_LAYER_GZIP });
    expect(committed).toEqual([plain.digest, sha256(stored)]);
  });

  it("refuses, before the commit, bytes that are not the diff-id they are pushed under", async () => {
    const layer = await layerTar({ "opt/app": "the real layer\n".repeat(500) });
    const other = await layerTar({ "opt/app": "another layer\n".repeat(500) });
    const { client, committed } = recordingRegistry();
    for (const bytes of [other, zlib.gzipSync(other)]) {
      const error = await uploadLayer(
        options(client),
        { path: "0/layer.tar", diffId: sha256(layer) },
        chunks(bytes),
      ).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(DamagedInputError);
      expect((error as Error).message).toBe(
        `image.tar.gz: layer 0/layer.tar does not match its diff-id sha256:${sha256(layer).slice(7, 19)}…`,
      );
    }
    expect(committed).toEqual([]);
  });

  it("takes the verdict of the reader that checked the stream, and refuses a layer it found wrong", async () => {
    const layer = await layerTar({ "opt/app": "the real layer\n".repeat(500) });
    const { client, committed } = recordingRegistry();
    const verdict: LayerVerdict = { compression: "none", diffId: sha256(Buffer.from("else")) };
    const error = await uploadLayer(
      options(client),
      { path: "0/layer.tar", diffId: sha256(layer) },
      chunks(layer),
      Promise.resolve(verdict),
    ).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DamagedInputError);
    expect((error as Error).message).toMatch(/layer 0\/layer\.tar does not match its diff-id/);
    expect(committed).toEqual([]);
  });
});
