import { promises as fs } from "node:fs";
import path from "node:path";
import {
  createImageTarballInspector,
  inspectImageTarball,
  assertPlatform,
  assertRepoTag,
  type ImageTarballInfo,
} from "../archive/docker-save.js";
import { extractZip } from "../archive/extract.js";
import { DamagedInputError, SyncError } from "../errors.js";
import { pickMetadata, type RunMetadata } from "../domain/metadata.js";
import { exists, parseJsonFile, writeJsonAtomic, type FreeBytes } from "../util/files.js";
import { IMAGE_INFO_FILE, saveImageInfo } from "../workspace/image-info.js";
import {
  metadataFileSchema,
  tagLayout,
  type TagLayout,
  type UploadPlan,
} from "../workspace/layout.js";
import type { StepReporter } from "../domain/events.js";
import type { SyncContext } from "./context.js";
import { expectedImages, isImageTag, type ExpectedImage } from "../domain/images.js";
import { platformOddity } from "../domain/platform.js";

export interface PrepareRequest {
  imageTag: string;
  downloadsDir: string;
  clean: boolean;
  /** Free bytes at a path; replaceable so tests can play a full disk. */
  freeBytes?: FreeBytes;
}

export interface PrepareOutcome {
  plan: UploadPlan;
  planPath: string;
  /** What each tarball turned out to hold, keyed by GitLab tag: the push reuses it. */
  images: Map<string, ImageTarballInfo>;
  reusedExtraction: boolean;
}

const REDOWNLOAD = "re-run download with --force";

async function chooseZip(layout: TagLayout, steps: StepReporter): Promise<string> {
  if (await exists(layout.zip)) {
    steps.detail(`using archive ${path.basename(layout.zip)}`);
    return layout.zip;
  }
  const zips = (await fs.readdir(layout.dir)).filter((n) => n.endsWith(".zip")).sort();
  const first = zips[0];
  if (!first) {
    const partial = (await exists(layout.zipPart))
      ? " (a partial download is there: re-run download to finish it)"
      : "";
    throw new SyncError(`No artifact zip found in ${layout.dir}${partial}`, {
      hint: "run download first",
    });
  }
  if (zips.length > 1) {
    steps.warn(
      `Multiple zip files found; using ${first}. Remove the extras or use --downloads-dir with a clean folder.`,
    );
  }
  steps.warn(
    `Expected archive named ${path.basename(layout.zip)}, but using ${first}. Consider re-running download.`,
  );
  steps.detail(`using archive ${first}`);
  return path.join(layout.dir, first);
}

/** The image tag the artifact was built under, from metadata.json; checked, since the file is input too. */
function artifactImageTag(
  metadata: RunMetadata,
  requested: string,
  metadataPath: string,
  steps: StepReporter,
): string {
  const tag = metadata["Image tag"];
  if (!tag)
    throw new DamagedInputError(`${metadataPath} is missing 'Image tag'`, { hint: REDOWNLOAD });
  if (!isImageTag(tag)) {
    throw new DamagedInputError(`${metadataPath} holds an invalid image tag '${tag}'`, {
      hint: REDOWNLOAD,
    });
  }
  if (tag !== requested) {
    steps.warn(
      `metadata tag '${tag}' does not match requested tag '${requested}'. Continuing with requested tag.`,
    );
  }
  return tag;
}

async function verifyTarball(
  image: ExpectedImage,
  file: string,
  inspected: Promise<ImageTarballInfo> | undefined,
  signal: AbortSignal,
): Promise<ImageTarballInfo> {
  const info = await (inspected ?? inspectImageTarball(file, { signal }));
  assertRepoTag(info, `${image.repo}:${image.imageTag}`, file);
  assertPlatform(info, image.platform, file);
  return info;
}

/** Every expected tarball, verified: present, complete gzip, a docker save with the right RepoTags. */
async function verifyAll(
  ctx: SyncContext,
  layout: TagLayout,
  images: ExpectedImage[],
  inspected: Map<string, Promise<ImageTarballInfo>>,
): Promise<Map<string, ImageTarballInfo>> {
  const missing: string[] = [];
  for (const image of images) {
    if (!(await exists(path.join(layout.extracted, image.tarball)))) missing.push(image.tarball);
  }
  if (missing.length > 0) {
    throw new DamagedInputError(`Missing expected tarballs: ${missing.join(", ")}`, {
      hint: "the artifact lacks images its metadata promises; re-run download --force, or check the build run",
    });
  }
  const verified = new Map<string, ImageTarballInfo>();
  for (const image of images) {
    const file = path.join(layout.extracted, image.tarball);
    verified.set(
      image.gitlabTag,
      await verifyTarball(image, file, inspected.get(image.tarball), ctx.signal),
    );
  }
  return verified;
}

export async function prepareImageTag(
  ctx: SyncContext,
  steps: StepReporter,
  request: PrepareRequest,
): Promise<PrepareOutcome> {
  const layout = tagLayout(request.downloadsDir, request.imageTag);
  steps.step(1, 6, `Verifying download directory at ${layout.dir} ...`);
  if (!(await exists(layout.dir))) {
    throw new SyncError(`Download directory ${layout.dir} not found`, {
      hint: "run the download step first",
    });
  }

  steps.step(2, 6, `Loading metadata from ${layout.metadata} ...`);
  const read = await parseJsonFile(layout.metadata, metadataFileSchema);
  if (!read.ok) {
    // A damaged metadata.json (not one that cannot be read) makes the download unusable.
    const Failure = read.invalid ? DamagedInputError : SyncError;
    throw new Failure(`${layout.metadata} ${read.problem}`, {
      hint: "run download again for this tag",
    });
  }
  const metadata = read.value;
  if (metadata.run_id) {
    steps.text(
      `Preparing artifacts from run ${metadata.run_id}${metadata.run_name ? ` (${metadata.run_name})` : ""}.`,
    );
  } else {
    steps.warn("metadata does not include run_id; re-run download if you need run provenance.");
  }
  const runMetadata = pickMetadata(metadata);
  const imageTag = artifactImageTag(runMetadata, request.imageTag, layout.metadata, steps);
  const images = expectedImages({ ...runMetadata, "Image tag": imageTag });
  const odd = platformOddity(runMetadata["Target platform"]);
  if (odd) steps.warn(odd);
  // A plan from an earlier run must not outlive a prepare that fails now.
  await fs.rm(layout.plan, { force: true });
  await fs.rm(path.join(layout.dir, IMAGE_INFO_FILE), { force: true });

  steps.step(3, 6, "Selecting artifact archive ...");
  const zip = await chooseZip(layout, steps);

  let verified: Map<string, ImageTarballInfo> | undefined;
  let reused = false;
  if (await exists(layout.extracted)) {
    if (request.clean) {
      steps.step(4, 6, `Removing existing extraction directory ${layout.extracted} ...`);
      await fs.rm(layout.extracted, { recursive: true, force: true });
    } else {
      steps.step(
        4,
        6,
        `Extraction directory ${layout.extracted} already exists; verifying it before reuse ...`,
      );
      try {
        verified = await verifyAll(ctx, layout, images, new Map());
        reused = true;
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        steps.warn(
          `existing extraction does not verify (${(err as Error).message}); extracting again.`,
        );
        // Proven bad, so its room is given back before the new extraction needs it.
        await fs.rm(layout.extracted, { recursive: true, force: true });
      }
    }
  }
  if (!verified) {
    steps.step(4, 6, `Extracting ${path.basename(zip)} to ${layout.extracted} ...`);
    // Tarballs are checked while they come out of the zip: the artifact is read once.
    const inspected = new Map<string, Promise<ImageTarballInfo>>();
    const wanted = new Set(images.map((i) => i.tarball));
    await extractZip(zip, layout.extracted, {
      logger: ctx.logger,
      signal: ctx.signal,
      freeBytes: request.freeBytes,
      tee: (name) => {
        if (!wanted.has(name)) return undefined;
        const inspector = createImageTarballInspector(path.join(layout.extracted, name));
        inspected.set(name, inspector.result);
        return inspector.sink;
      },
    });
    steps.step(5, 6, "Validating extracted tarballs ...");
    try {
      verified = await verifyAll(ctx, layout, images, inspected);
    } catch (err) {
      // An artifact whose images are wrong is no artifact: leave nothing that looks prepared.
      await fs.rm(layout.extracted, { recursive: true, force: true });
      throw err;
    }
  } else {
    steps.step(5, 6, "Validating extracted tarballs ...");
  }
  steps.detail(`located ${images.length} tarballs.`);

  steps.step(6, 6, "Writing upload plan ...");
  const plan: UploadPlan = {
    image_tag: imageTag,
    presto_ref: runMetadata["Presto ref"] ?? null,
    velox_ref: runMetadata["Velox ref"] ?? null,
    platform: runMetadata["Target platform"] ?? null,
    artifacts: images.map((image) => ({
      gitlab_tag: image.gitlabTag,
      arch: image.arch,
      repo: image.repo,
      file: path.resolve(layout.extracted, image.tarball),
    })),
  };
  await saveImageInfo(
    layout.dir,
    new Map(
      images.flatMap((image) => {
        const info = verified?.get(image.gitlabTag);
        const file = path.resolve(layout.extracted, image.tarball);
        return info ? [[image.gitlabTag, { file, info }] as const] : [];
      }),
    ),
  );
  await writeJsonAtomic(layout.plan, plan);
  printPlan(steps, plan, layout.plan);
  return { plan, planPath: layout.plan, images: verified, reusedExtraction: reused };
}

function printPlan(steps: StepReporter, plan: UploadPlan, planPath: string): void {
  steps.text(`Prepared upload plan written to ${planPath}`);
  steps.text("Artifacts ready for upload:");
  steps.rule();
  plan.artifacts.forEach((item, index) => {
    steps.text(`  Artifact #${index + 1}:`);
    steps.text(`    Image        : ${item.repo}`);
    steps.text(`    Arch         : ${item.arch || "-"}`);
    steps.text(`    GitLab tag   : ${item.gitlab_tag}`);
    steps.text(`    Local tarball: ${item.file}`);
    if (index !== plan.artifacts.length - 1) steps.rule();
  });
  steps.text("Prepare complete.");
}
