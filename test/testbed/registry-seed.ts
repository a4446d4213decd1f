import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import type { GitlabStandIn } from "./gitlab-standin.js";

export const SCHEMA2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const SCHEMA2_CONFIG = "application/vnd.docker.container.image.v1+json";
const SCHEMA2_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip";

export interface SeedOptions {
  /** Size of the one file in the layer; default 1 KiB. */
  layerBytes?: number;
  /** The image config's `created`; fixed by default so that reseeding yields the same digests. */
  created?: string;
  architecture?: string;
}

export interface SeededImage {
  /** Full repository path in the registry, e.g. `hercules/veloxtesting/x86/presto-coordinator`. */
  repository: string;
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
  /** Config plus compressed layer, as GitLab's `total_size` counts it. */
  totalSize: number;
  manifest: string;
}

function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Content derived from the repository path: same repo, same bytes, so blobs dedupe across seeds. */
function fileContent(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash("sha256").update(seed).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset);
    block = createHash("sha256").update(block).digest();
  }
  return out;
}

async function tarOf(name: string, content: Buffer): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  archive.on("data", (chunk: unknown) => chunks.push(Buffer.from(chunk as Uint8Array)));
  const done = new Promise<void>((resolve, reject) => {
    archive.on("end", resolve);
    archive.on("error", reject);
  });
  archive.entry({ name, size: content.length, mode: 0o644, mtime: new Date(0) }, content);
  archive.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function mapLimit<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next] as T;
      next += 1;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function expectOk(res: Response, what: string): Promise<void> {
  if (res.ok) {
    await res.arrayBuffer();
    return;
  }
  throw new Error(`${what}: ${res.status} ${await res.text()}`);
}

async function uploadBlob(
  registryUrl: string,
  repository: string,
  auth: string,
  data: Buffer,
): Promise<string> {
  const digest = sha256(data);
  const head = await fetch(`${registryUrl}/v2/${repository}/blobs/${digest}`, {
    method: "HEAD",
    headers: { authorization: auth },
  });
  if (head.ok) return digest;
  const start = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, {
    method: "POST",
    headers: { authorization: auth },
  });
  const location = start.headers.get("location");
  await expectOk(start, `start upload to ${repository}`);
  if (!location) throw new Error(`registry gave no upload location for ${repository}`);
  const target = new URL(location, registryUrl);
  target.searchParams.set("digest", digest);
  const put = await fetch(target, {
    method: "PUT",
    headers: { authorization: auth, "content-type": "application/octet-stream" },
    body: data,
  });
  await expectOk(put, `upload ${digest} to ${repository}`);
  return digest;
}

/**
 * Pushes one small synthetic image (a gzipped tar layer, a config, a schema-2 manifest) to
 * `<project>/<repoPath>` in the stand-in's registry, then puts the same manifest under every
 * tag. Blobs go up once; each further tag is one manifest PUT, so hundreds of tags are cheap.
 */
export async function seedImage(
  gitlab: GitlabStandIn,
  repoPath: string,
  tags: string[],
  opts: SeedOptions = {},
): Promise<SeededImage> {
  return pushImage(gitlab, `${gitlab.projectPath}/${repoPath}`, tags, opts);
}

/** As seedImage, to any repository path of the registry (also outside the project). */
export async function pushImage(
  gitlab: GitlabStandIn,
  repository: string,
  tags: string[],
  opts: SeedOptions = {},
): Promise<SeededImage> {
  const auth = `Bearer ${gitlab.mintRegistryToken([
    { type: "repository", name: repository, actions: ["pull", "push"] },
  ])}`;
  const registryUrl = gitlab.registry.url;

  const tar = await tarOf(
    `seed/${repository.replace(/\//g, "_")}.bin`,
    fileContent(repository, opts.layerBytes ?? 1024),
  );
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({
      architecture: opts.architecture ?? "amd64",
      os: "linux",
      created: opts.created ?? "2025-10-01T12:00:00Z",
      config: { Labels: { "org.opencontainers.image.title": repository } },
      rootfs: { type: "layers", diff_ids: [sha256(tar)] },
      history: [{ created: opts.created ?? "2025-10-01T12:00:00Z", created_by: "registry-seed" }],
    }),
  );
  const [layerDigest, configDigest] = await Promise.all([
    uploadBlob(registryUrl, repository, auth, layer),
    uploadBlob(registryUrl, repository, auth, config),
  ]);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: SCHEMA2_MANIFEST,
    config: { mediaType: SCHEMA2_CONFIG, size: config.length, digest: configDigest },
    layers: [{ mediaType: SCHEMA2_LAYER, size: layer.length, digest: layerDigest }],
  });
  await mapLimit(tags, 16, async (tag) => {
    const res = await fetch(`${registryUrl}/v2/${repository}/manifests/${tag}`, {
      method: "PUT",
      headers: { authorization: auth, "content-type": SCHEMA2_MANIFEST },
      body: manifest,
    });
    await expectOk(res, `put manifest ${repository}:${tag}`);
  });
  return {
    repository,
    manifestDigest: sha256(manifest),
    configDigest,
    layerDigest,
    totalSize: config.length + layer.length,
    manifest,
  };
}
