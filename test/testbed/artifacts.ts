import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { RunMetadata } from "../../src/domain/metadata.js";
import { expectedImages } from "../../src/domain/images.js";
import type { GithubStandIn } from "./github-standin.js";
import { makeFixtureRun } from "./run-fixtures.js";
import {
  writeArtifactZip,
  writeDockerSaveTarball,
  writeZipWithRawNames,
  type LayerSpec,
  type ZipEntrySpec,
} from "./image-fixtures.js";

/** The base layer every image of a bundle shares, as the real coordinator and workers do. */
export const BASE_LAYER: LayerSpec = {
  files: {
    "etc/os-release": 'NAME="Fixture Linux"\nVERSION_ID="1"\n',
    "usr/lib/base/readme.txt": "shared base layer\n".repeat(64),
  },
};

export interface ArtifactFixtureOptions {
  /** Scratch directory for the tarballs and the zip. */
  dir: string;
  metadata: RunMetadata;
  /** Repos written in the OCI layout (Docker ≥ 25); the rest in the legacy layout. */
  ociRepos?: string[];
  forceZip64?: boolean;
  /** Leave this repo's tarball out of the zip. */
  omit?: string;
  /** Save this repo's image under another tag. */
  wrongTagRepo?: string;
  /** Extra zip entries (hostile names and the like). */
  extraEntries?: ZipEntrySpec[];
  /** Extra bytes per image layer, to make transfers measurable. */
  layerBytes?: number;
  /** Added to each image's own-layer seed, so builds differ in their own layers; default 0. */
  layerSeed?: number;
  /** Share of those bytes that compress (see LayerSpec); default 0, random bytes. */
  layerTextShare?: number;
  /** The layer every image shares; default BASE_LAYER (a few KiB). Benchmarks make it large. */
  baseLayer?: LayerSpec;
  /** gzip level of the tarballs; default 9, as the workflow's `gzip -9`. */
  gzipLevel?: number;
  /** Deflate level of the zip entries; default zlib's. */
  zipCompressionLevel?: number;
  /** The images' architecture, when it is not the build's platform (a build that went wrong). */
  architecture?: string;
  /** One image's architecture, when it alone is not the build's platform: repo → architecture. */
  repoArchitecture?: Record<string, string>;
  /** Damage a tarball after it is written (cut it, replace it) before it is zipped. */
  mutateTarball?: (repo: string, file: string) => Promise<void>;
  /** Entries with names a zip library refuses to write (`../../x`), added raw. */
  rawEntries?: Array<{ name: string; data: Buffer }>;
}

/** `linux/arm64` → `{os: "linux", architecture: "arm64"}`; the fixture default otherwise. */
function platformOf(metadata: RunMetadata): { os?: string; architecture?: string } {
  const [os, architecture] = (metadata["Target platform"] ?? "").toLowerCase().split("/");
  return os && architecture ? { os, architecture } : {};
}

export interface ArtifactFixture {
  zip: string;
  size: number;
  digest: string;
  tarballs: string[];
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

/**
 * An images artifact as the workflow uploads it: build-metadata.txt and one
 * `<repo>-<image tag>.tar.gz` (`docker save | gzip -9`) per built image, in a streamed zip.
 */
export async function makeArtifactZip(options: ArtifactFixtureOptions): Promise<ArtifactFixture> {
  await mkdir(options.dir, { recursive: true });
  const images = expectedImages(options.metadata);
  const entries: ZipEntrySpec[] = [
    {
      name: "build-metadata.txt",
      data: Buffer.from(
        Object.entries(options.metadata)
          .map(([k, v]) => `${k.padEnd(18)}: ${v}`)
          .join("\n") + "\n",
      ),
    },
  ];
  const tarballs: string[] = [];
  for (const [index, image] of images.entries()) {
    if (image.repo === options.omit) continue;
    const file = path.join(options.dir, image.tarball);
    const tag = image.repo === options.wrongTagRepo ? "not-the-right-tag" : image.imageTag;
    // The workflow saves the java worker as `docker tag presto-coordinator:<tag>
    // presto-java-worker:<tag>`: the coordinator's config and layers under a second name.
    const builtAs = image.repo === "presto-java-worker" ? "presto-coordinator" : image.repo;
    const seed = (builtAs === image.repo ? index + 1 : 1) + (options.layerSeed ?? 0);
    const own: LayerSpec = options.layerBytes
      ? { sizeBytes: options.layerBytes, seed, textShare: options.layerTextShare }
      : { files: { [`opt/${builtAs}/bin/run.sh`]: `#!/bin/sh\necho ${builtAs}\n` } };
    await writeDockerSaveTarball(file, {
      repoTag: `${image.repo}:${tag}`,
      // The build's platform, in the config as `docker build --platform` records it.
      ...platformOf(options.metadata),
      ...(options.architecture ? { architecture: options.architecture } : {}),
      ...(options.repoArchitecture?.[image.repo]
        ? { architecture: options.repoArchitecture[image.repo] }
        : {}),
      layout: options.ociRepos?.includes(image.repo) ? "oci" : "legacy",
      layers: [options.baseLayer ?? BASE_LAYER, own],
      gzip: true,
      ...(options.gzipLevel !== undefined ? { gzipLevel: options.gzipLevel } : {}),
    });
    await options.mutateTarball?.(image.repo, file);
    tarballs.push(file);
    entries.push({ name: image.tarball, file });
  }
  entries.push(...(options.extraEntries ?? []));
  const zip = path.join(options.dir, "artifact.zip");
  if (options.rawEntries) {
    const all = await Promise.all(
      entries.map(async (e) => ({ name: e.name, data: e.data ?? (await readFile(e.file ?? "")) })),
    );
    await writeZipWithRawNames(zip, [...all, ...options.rawEntries]);
  } else {
    await writeArtifactZip(zip, entries, {
      forceZip64: options.forceZip64,
      ...(options.zipCompressionLevel !== undefined
        ? { compressionLevel: options.zipCompressionLevel }
        : {}),
    });
  }
  return { zip, size: (await stat(zip)).size, digest: await sha256File(zip), tarballs };
}

export interface ArtifactRunSpec {
  id: number;
  metadata: RunMetadata;
  /** Scratch directory for this run's tarballs and zip. */
  dir: string;
  createdAt: string;
  fixture?: Omit<ArtifactFixtureOptions, "dir" | "metadata">;
}

/** A successful build run whose images artifact GitHub serves: what download, push and the daemon consume. */
export async function addArtifactRun(
  github: GithubStandIn,
  spec: ArtifactRunSpec,
): Promise<ArtifactFixture> {
  const fixture = await makeArtifactZip({
    dir: spec.dir,
    metadata: spec.metadata,
    ...spec.fixture,
  });
  await addRunServing(github, spec, fixture);
  return fixture;
}

/** A run's creation time, a minute per id after `day`: ids then order runs in time. */
export function runCreatedAt(id: number, day = Date.UTC(2025, 10, 3)): string {
  return new Date(day + id * 60_000).toISOString().replace(".000Z", "Z");
}

/** Adds a successful run whose images artifact is a zip made earlier (benchmarks keep theirs). */
export async function addRunServing(
  github: GithubStandIn,
  spec: Pick<ArtifactRunSpec, "id" | "metadata" | "createdAt">,
  fixture: ArtifactFixture,
): Promise<void> {
  github.addRun(
    await makeFixtureRun({
      id: spec.id,
      metadata: spec.metadata,
      createdAt: spec.createdAt,
      artifacts: [
        {
          id: spec.id * 10,
          name: `presto-images-${spec.id}`,
          bytes: fixture.zip,
          digest: fixture.digest,
        },
      ],
    }),
  );
}
