/**
 * Benchmark data: artifacts of real `docker save | gzip` tarballs around one large shared base
 * layer, generated once per set of parameters and kept in the cache directory (a full set is
 * about 2 GiB and takes minutes to make), and the downloads directories the commands start from.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { link, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { RunMetadata } from "../src/domain/metadata.js";
import { metadataRecord } from "../src/sync/download.js";
import { expectedImages, type ExpectedImage } from "../src/domain/images.js";
import { tagLayout } from "../src/workspace/layout.js";
import { makeArtifactZip, type ArtifactFixture } from "../test/testbed/artifacts.js";
import { DEFAULT_REPO, makeFixtureRun, makeMetadata } from "../test/testbed/run-fixtures.js";
import { ref } from "../test/testbed/scenario.js";
import { shell } from "./harness.js";

export interface ArtifactParams {
  /** Size of the base layer all three images share. */
  baseBytes: number;
  /** Size of each image's own layer. */
  ownBytes: number;
  /** Share of layer bytes that compress (text-like); the rest is random, as binaries and jars. */
  textShare: number;
  /** Own layers of another build (same base): added to each image's layer seed. */
  layerSeed?: number;
}

export interface ImageArtifact {
  params: ArtifactParams;
  metadata: RunMetadata;
  imageTag: string;
  images: ExpectedImage[];
  fixture: ArtifactFixture;
  runId: number;
  createdAt: string;
}

const CREATED_AT = "2025-10-01T12:00:00Z";
/** Bump when the generator changes, so cached data is made again. */
const DATA_VERSION = 1;

/** Three images (coordinator, native CPU and GPU workers), as an `all_native` build makes. */
function benchMetadata(label: string): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`bench-presto-${label}`),
    veloxRef: ref(`bench-velox-${label}`),
    platform: "linux/amd64",
    mode: "all_native",
  });
}

export async function imageArtifact(
  cacheDir: string,
  label: string,
  runId: number,
  params: ArtifactParams,
  log: (text: string) => void,
): Promise<ImageArtifact> {
  const metadata = benchMetadata(label);
  const key = createHash("sha256")
    .update(JSON.stringify({ params, label, DATA_VERSION }))
    .digest("hex")
    .slice(0, 12);
  const dir = path.join(cacheDir, `artifact-${label}-${key}`);
  const record = path.join(dir, "fixture.json");
  let fixture: ArtifactFixture;
  if (existsSync(record)) {
    fixture = JSON.parse(await readFile(record, "utf8")) as ArtifactFixture;
  } else {
    log(
      `generating the ${label} artifact (base ${params.baseBytes >> 20} MiB, 3 × ${params.ownBytes >> 20} MiB own); cached in ${dir}`,
    );
    const building = `${dir}.building`;
    await rm(building, { recursive: true, force: true });
    const made = await makeArtifactZip({
      dir: building,
      metadata,
      layerBytes: params.ownBytes,
      layerTextShare: params.textShare,
      ...(params.layerSeed ? { layerSeed: params.layerSeed } : {}),
      baseLayer: { sizeBytes: params.baseBytes, seed: 1000, textShare: params.textShare },
      // Level 1 rather than the workflow's 9: unzip and gunzip cost the same, generating far less.
      gzipLevel: 1,
      zipCompressionLevel: 1,
    });
    const relocate = (file: string) => path.join(dir, path.relative(building, file));
    fixture = { ...made, zip: relocate(made.zip), tarballs: made.tarballs.map(relocate) };
    await rm(dir, { recursive: true, force: true });
    await rename(building, dir);
    await writeFile(record, JSON.stringify(fixture, null, 2));
  }
  return {
    params,
    metadata,
    imageTag: metadata["Image tag"] as string,
    images: expectedImages(metadata),
    fixture,
    runId,
    createdAt: CREATED_AT,
  };
}

/** A downloads directory as `download` leaves it: the zip (a hard link) and metadata.json. */
export async function downloadedDir(downloadsDir: string, artifact: ImageArtifact): Promise<void> {
  const layout = tagLayout(downloadsDir, artifact.imageTag);
  await mkdir(layout.dir, { recursive: true });
  await rm(layout.zip, { force: true });
  await link(artifact.fixture.zip, layout.zip);
  const { run } = await makeFixtureRun({
    id: artifact.runId,
    metadata: artifact.metadata,
    createdAt: artifact.createdAt,
  });
  const name = `presto-images-${artifact.runId}`;
  await writeFile(
    layout.metadata,
    JSON.stringify(
      metadataRecord(
        artifact.metadata,
        run,
        DEFAULT_REPO,
        { name, size: artifact.fixture.size },
        path.basename(layout.zip),
      ),
      null,
      2,
    ),
  );
}

/** Copies a directory tree with hard links (instant; the commands never write into old files). */
export async function linkCopy(from: string, to: string): Promise<void> {
  await rm(to, { recursive: true, force: true });
  await mkdir(path.dirname(to), { recursive: true });
  await shell(`cp -al ${q(from)} ${q(to)}`, { scratch: path.dirname(to) });
}

export const q = (text: string): string => `'${text.replace(/'/g, "'\\''")}'`;
