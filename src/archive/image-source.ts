import { createReadStream } from "node:fs";
import type { Readable, Writable } from "node:stream";
import type { PushedItem } from "../domain/pushed.js";
import { inspectImageTarball, type ImageTarballInfo } from "./docker-save.js";
import { GUNZIP_CHUNK } from "./gzip-check.js";
import type { GrowingFile } from "./growing-file.js";
import { openEntry, type StreamedEntry } from "./zip-stream.js";

/**
 * The image interface between where an image comes from and where it goes (see ARCHITECTURE.md),
 * after go-containerregistry's `tarball.Image(opener)` and `remote.Write`/`daemon.Write`:
 *
 *   source  the `docker save … | gzip` bytes of one image: a tarball on disk (what `prepare`
 *           extracted, with what it learnt of it), or an entry of the artifact zip read while it
 *           downloads. A source can always be opened again from its start.
 *   sink    where images go: the registry (distribution API) or the Docker engine (load + push).
 *           A sink never asks where an image came from; it is told only whether the image is
 *           known already (verified whole before, so its bytes need not stream through it).
 */

export type EngineName = "docker" | "registry";

/** Where one image's `.tar.gz` bytes come from. */
export interface ImageSource {
  /** Names the tarball in messages: its path, or its entry in the artifact. */
  label: string;
  /** The bytes from their start (again, for layers a sink must read a second time). */
  open: () => Readable;
  /** The tarball as a file on disk, when it is one (`docker load` reads it by path). */
  file?: string;
}

/** A tarball on disk and its inspection: prepare's record of this very file, or made here. */
export interface KnownImage {
  info: ImageTarballInfo;
  source: ImageSource;
}

/** A tarball on disk. */
export function fileSource(file: string): ImageSource {
  return {
    label: file,
    file,
    open: () => createReadStream(file, { highWaterMark: GUNZIP_CHUNK }),
  };
}

/**
 * A tarball on disk as a known image. What prepare recorded of it spares every sink a read of
 * the whole file (B4: only the layers a registry lacks are read); without that record the file
 * is checked here first, whole, so that no sink ever loads or sends a tarball nobody verified.
 */
export async function knownFile(
  file: string,
  recorded: ImageTarballInfo | undefined,
  signal?: AbortSignal,
): Promise<KnownImage> {
  const info = recorded ?? (await inspectImageTarball(file, signal ? { signal } : {}));
  return { info, source: fileSource(file) };
}

/** A tarball inside the artifact zip, read from the part of the zip already on disk. */
export function entrySource(file: GrowingFile, entry: StreamedEntry): ImageSource {
  return { label: entry.name, open: () => openEntry(file, entry) };
}

/** One image as a sink is told of it: where it goes, and what it must be. */
export interface ImageTarget {
  /** The name the tarball must carry, `presto-coordinator:<image tag>`. */
  localRef: string;
  /** Full repository path in the registry, `hercules/veloxtesting/x86/presto-coordinator`. */
  repository: string;
  tag: string;
  /** `<registry>/<repository>:<tag>`. */
  remoteRef: string;
  /** The build's `Target platform` (`linux/arm64`), which the image's config must match. */
  platform?: string | undefined;
  /** Other repositories of the same build, which may already hold shared blobs. */
  siblings: string[];
  /** Names the tarball in messages. */
  label: string;
  /** Bytes of the tarball, when known: the push bar's total while it streams. */
  size?: number | undefined;
  /** Provenance on the manifest (registry sink; the Docker engine writes its own manifest). */
  annotations?: Readonly<Record<string, string>> | undefined;
}

/** An image whose every part is in place: publishing it is one manifest PUT or `docker push`. */
export interface PublishableImage {
  info: ImageTarballInfo;
  publish(): Promise<PushedItem>;
}

/** One image on its way into a sink. */
export interface ImageWrite {
  /**
   * Where the image's `.tar.gz` bytes go while they are read, checked on the way; absent for a
   * known image, which the sink reads itself from its source, as much as it needs.
   */
  sink?: Writable;
  /** Settles once the streamed bytes have been read to their end (verified or not). */
  parsed: Promise<unknown>;
  /** Resolves once the image is verified (RepoTags included) and all of it is in the sink. */
  ready(source: ImageSource): Promise<PublishableImage>;
  /** The image will not be published: whatever of it sits in the sink is let go. */
  discard(): Promise<void>;
}

/** The images of one run (one push, one artifact), handed over in the order they come. */
export interface ImageBatch {
  begin(target: ImageTarget, known?: ImageTarballInfo): ImageWrite;
}

export interface ImageSink {
  readonly name: EngineName;
  /** Checks the credentials (and, for Docker, that the engine answers). */
  login(signal: AbortSignal): Promise<void>;
  /** Checks only that whatever the sink needs is reachable (used with --skip-login). */
  check(signal: AbortSignal): Promise<void>;
  /** The images of one run; `targets` are all it may be handed (the plan). */
  batch(signal: AbortSignal, targets: readonly ImageTarget[]): Promise<ImageBatch>;
}
