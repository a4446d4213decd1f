import { createReadStream } from "node:fs";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { platformMismatch } from "../domain/platform.js";
import { canonicalName } from "../domain/reference.js";
import { DamagedInputError, SyncError, describeError } from "../errors.js";
import { GUNZIP_CHUNK } from "./gzip-check.js";
import { createImageStream, type ImageTarballInfo } from "./image-stream.js";

export type { ImageTarballInfo } from "./image-stream.js";

export interface TarballInspector {
  /** Feed it the `.tar.gz` bytes. It never fails a writer: failures land in `result`. */
  sink: Writable;
  result: Promise<ImageTarballInfo>;
}

/**
 * Streams a `docker save … | gzip` file once: gunzip (which checks the gzip trailer) into a tar
 * reader that keeps the small JSON documents and checks every layer on its way past (its
 * diff-id, compressed or not, and that it is a tar: layer-check.ts), then checks that every file
 * manifest.json names was present and inside the tarball (image-stream.ts). Throws a one-line
 * SyncError naming `file` otherwise.
 */
export async function inspectImageTarball(
  file: string,
  options: { signal?: AbortSignal } = {},
): Promise<ImageTarballInfo> {
  const inspector = createImageTarballInspector(file);
  try {
    await pipeline(createReadStream(file, { highWaterMark: GUNZIP_CHUNK }), inspector.sink, {
      signal: options.signal,
    });
  } catch (err) {
    options.signal?.throwIfAborted();
    // The inspector's own verdict (not gzip, cut short, …) says more than the pipeline's error.
    throw await inspector.result.then(
      () => new SyncError(`cannot read ${file} (${describeError(err)})`, { cause: err }),
      (verdict: unknown) => verdict,
    );
  }
  return inspector.result;
}

/**
 * The same check as {@link inspectImageTarball}, fed from elsewhere: `prepare` hands it the
 * bytes of each tarball while they come out of the zip, so nothing is read twice.
 * `label` names the tarball in error messages.
 */
export function createImageTarballInspector(label: string): TarballInspector {
  const stream = createImageStream(label);
  const result = stream.result.then((image) => image.info);
  result.catch(() => undefined);
  return { sink: stream.sink, result };
}

/**
 * Checks that the image carries the tag the workflow gave it (`<repo>:<image tag>`), allowing
 * Docker's spelling variants (`docker.io/library/<repo>:<tag>`, which `docker save` of an image
 * pulled by its full name writes). Only Docker Hub's equivalence counts: a tag under another
 * registry or namespace names a different image, and accepting it would hide a workflow that
 * started saving something else. Returns the RepoTag that matched, for `docker tag`.
 */
export function assertRepoTag(info: ImageTarballInfo, expected: string, file: string): string {
  const want = canonicalName(expected);
  const match = info.repoTags.find((tag) => canonicalName(tag) === want);
  if (match === undefined) {
    const found = info.repoTags.length > 0 ? info.repoTags.join(", ") : "none";
    throw new DamagedInputError(`${file} does not hold ${expected} (its RepoTags: ${found})`, {
      hint: "the artifact does not match the image tag; check that the run built this tag",
    });
  }
  return match;
}

/**
 * The image a sink is about to take is the one its plan names: the RepoTag it must carry and,
 * when the build names one, its platform (see {@link assertRepoTag}, {@link assertPlatform}).
 */
export function assertImageOf(
  info: ImageTarballInfo,
  target: { localRef: string; platform?: string | undefined; label: string },
): void {
  assertRepoTag(info, target.localRef, target.label);
  assertPlatform(info, target.platform, target.label);
}

/**
 * Checks that the image is of the platform its build names (`Target platform`): its path in
 * GitLab (`arm/…`, `x86/…`) comes from the build, so an image whose config says otherwise would
 * be published under an architecture it is not. Damaged input, as a wrong RepoTag is.
 */
export function assertPlatform(
  info: ImageTarballInfo,
  platform: string | undefined,
  file: string,
): void {
  const mismatch = platformMismatch(info, platform);
  if (mismatch === undefined) return;
  throw new DamagedInputError(`${file} is not an image of its build: ${mismatch}`, {
    hint: "the build saved an image of another architecture; check the workflow's platform and rebuild",
  });
}
