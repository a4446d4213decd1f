/**
 * `docker save` tarballs built to be wrong in one exact way, for the tests of issue 13: a layer
 * stored gzip-compressed (as Docker's containerd image store saves it) whose content does not
 * match its diff-id, a layer that is no tar, a manifest naming a path outside the tarball.
 * Small, written in memory, legacy layout.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import zlib from "node:zlib";
import tar from "tar-stream";

export interface HostileLayer {
  /** The bytes as they sit in the tarball (a tar, a gzipped tar, or anything at all). */
  stored: Buffer;
  /** What the config's diff_ids say; default the sha256 of the (gunzipped) stored bytes. */
  diffId?: string;
  /** The path manifest.json gives it; default `<n>/layer.tar`. */
  path?: string;
}

export const sha256 = (bytes: Buffer): string =>
  `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

async function tarOf(entries: Array<{ name: string; data: Buffer }>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: unknown) => void chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve) => pack.on("end", () => resolve()));
  for (const { name, data } of entries) {
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name, size: data.length, mtime: new Date(0) }, data, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** A layer tar holding `files`. */
export function layerTar(files: Record<string, string>): Promise<Buffer> {
  return tarOf(Object.entries(files).map(([name, text]) => ({ name, data: Buffer.from(text) })));
}

/** Writes `<file>` (gzipped, as the workflow does) and returns the diff-ids its config names. */
export async function writeHostileSave(
  file: string,
  repoTag: string,
  layers: HostileLayer[],
): Promise<{ diffIds: string[] }> {
  const diffIds = layers.map((layer) => {
    if (layer.diffId) return layer.diffId;
    const gzipped = layer.stored[0] === 0x1f && layer.stored[1] === 0x8b;
    return sha256(gzipped ? zlib.gunzipSync(layer.stored) : layer.stored);
  });
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: diffIds },
    }),
  );
  const configName = `${sha256(config).slice(7)}.json`;
  const paths = layers.map((layer, i) => layer.path ?? `${i}/layer.tar`);
  const manifest = Buffer.from(
    JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: paths }]),
  );
  const saved = await tarOf([
    ...layers.map((layer, i) => ({ name: paths[i] as string, data: layer.stored })),
    { name: configName, data: config },
    { name: "manifest.json", data: manifest },
  ]);
  await writeFile(file, zlib.gzipSync(saved));
  return { diffIds };
}
