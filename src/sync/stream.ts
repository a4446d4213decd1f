/**
 * `sync <image-tag>`: download → verify → push → clean in one streaming pass (issue 15).
 *
 * Design.
 * - One copy on disk. The artifact downloads to `<tag>.zip.part` exactly as `download` does
 *   (resumable with `Range`, size and GitHub's digest checked, renamed when complete), and the
 *   sync reads that file a little behind the download (archive/growing-file.ts). Nothing is
 *   extracted: each tarball is inflated from the zip as its bytes arrive (archive/zip-stream.ts)
 *   and handed, as a stream, to the engine. Peak disk is the artifact, 1.0×. The download never
 *   waits for the push: when compressing falls behind, the part file simply runs ahead.
 * - The image abstraction (archive/image-stream.ts) reads each `docker save` tarball once: gzip
 *   trailer, tar, layout (legacy or OCI), config against its digest, every layer against its
 *   diff-id, then RepoTags against `<repo>:<image tag>`. The registry engine takes each layer's
 *   bytes while they pass, compressing and uploading them (registry/stream-push.ts); a layer
 *   whose identity is known before it is read (OCI names it; the layer cache remembers legacy
 *   paths) and that another image of the artifact already sends, or that the registry already
 *   has, is only checked: the shared base is compressed and sent once. The docker engine gets
 *   the tarball's bytes streamed into `docker load` while they are checked alongside.
 * - Publication waits for the whole artifact. Blobs are content-addressed and publish nothing;
 *   the manifest PUT (registry engine) or `docker push` (docker engine) is the publication, and
 *   it happens only once the zip's central directory has been read, vetted as `prepare` vets it
 *   and found to agree with every entry the stream read, and the download's size and digest have
 *   checked out. Then what is published is exactly the artifact GitHub holds, not merely a set of
 *   self-consistent tarballs. For the registry engine that costs only the manifest PUTs at the
 *   end (the blobs went up during the stream); the docker engine's pushes wait for the end too.
 * - A tarball that fails its checks fails alone: nothing is pushed under its tag, the others
 *   are, and the sync ends with one line naming it. A zip whose structure breaks (a bad header,
 *   damaged deflate data, a directory that disagrees) publishes nothing.
 * - Resume. A cut download is resumed by the downloader while the reader waits. After a stop or
 *   a restart the part file is kept; the next sync resumes the download and reads the part file
 *   from its start at disk speed; layers the registry holds are recognised before they are read
 *   (by name, or by the legacy path the layer cache learnt) and not compressed or sent again,
 *   and uploads left half-way are taken up where the registry stands (layer cache). A layer
 *   whose upload a cut ended, or whose identity was guessed wrong, is read again from the
 *   artifact on disk once its image is verified (the part file is the one copy kept).
 * - Progress is events: the download's bytes, and the stream's position in the zip.
 */
import { open, rm, stat } from "node:fs/promises";
import { openEntry, readZipStream, type StreamedEntry } from "../archive/zip-stream.js";
import { GrowingFile } from "../archive/growing-file.js";
import type { ProgressListener, StepReporter } from "../domain/events.js";
import { DamagedInputError, describeError, interrupted } from "../errors.js";
import type { RegistryClient } from "../registry/client.js";
import { formatMiB } from "../util/bytes.js";
import { exists, parseJsonFile, type FreeBytes } from "../util/files.js";
import type { DownloadResult } from "../workspace/download.js";
import { metadataFileSchema } from "../workspace/layout.js";
import { cleanTargets, removeTargets } from "./clean.js";
import { gitlabState } from "./compare.js";
import type { GithubServices, GitlabServices, SyncContext } from "./context.js";
import {
  fetchArtifact,
  keptDownload,
  locateArtifact,
  writeDownloadMetadata,
  type LocatedArtifact,
} from "./download.js";
import { PRESENT, printExisting, retagLatest, statusOf, verifyListed } from "./push.js";
import type { PublishableImage, StreamEngine, StreamedImage } from "./stream-engines.js";
import { notAllPushed, planItems, printPlan, type Planned } from "./stream-plan.js";
import { indexBuild } from "./built.js";
import type { WrittenIndex } from "./multiarch.js";
import { runRef } from "./xref.js";

export interface SyncRequest {
  imageTag: string;
  downloadsDir: string;
  registry: string;
  registryProject: string;
  username: string;
  /** Download the artifact afresh, discarding any earlier download. */
  forceDownload: boolean;
  /** Push tags GitLab already has. */
  forcePush: boolean;
  skipLogin: boolean;
  retagAsLatest: boolean;
  artifactName?: string | undefined;
  /** Asks before pushing; absent means "yes" (--yes, the daemon). */
  confirm?: (question: string) => Promise<boolean>;
  /** The daemon's sync: metadata.json gets its keys, the lines name it. */
  daemon?: boolean;
  progress: ProgressListener;
  freeBytes?: FreeBytes;
  /**
   * What moved so far, kept up to date even when the sync fails: bytes fetched from GitHub, and
   * the images published (a tarball that fails leaves its siblings pushed) with their bytes.
   */
  counters?: { fetched: number; pushed: number; uploadedBytes: number };
  /**
   * `--multiarch-index`: after the push and the clean, each repository's index (see built.ts).
   * The daemon writes them in a stage of its own instead.
   */
  multiarchIndex?: boolean;
}

export interface SyncServices {
  github: GithubServices;
  gitlab: GitlabServices;
  registryClient: RegistryClient;
  engine: StreamEngine;
}

export interface SyncOutcome {
  pushed: Array<{ gitlabTag: string; remoteRef: string; digest: string }>;
  skipped: string[];
  aborted: boolean;
  bytesUploaded: number;
  run: { id: number; title: string };
  /** With `multiarchIndex`: each index as it now stands. */
  indexes?: WrittenIndex[];
}

const TOTAL = 7;

/** One image while the artifact streams: its engine's side, and how its tarball ended. */
interface ImageRun {
  item: Planned;
  image: StreamedImage;
  ready?: Promise<PublishableImage>;
}

export async function syncImageTag(
  ctx: SyncContext,
  steps: StepReporter,
  services: SyncServices,
  request: SyncRequest,
): Promise<SyncOutcome> {
  const located = await locateArtifact(ctx, services.github, steps, request, {
    total: TOTAL,
    run: 1,
    artifact: 2,
  });
  const run = { id: located.run.id, title: runRef(located.run).title };
  const engine = services.engine;
  if (request.skipLogin) {
    steps.step(
      3,
      TOTAL,
      `Skipping docker login for registry ${request.registry} (user requested); checking the ${engine.name} engine ...`,
    );
    await engine.check(ctx.signal);
  } else {
    steps.step(
      3,
      TOTAL,
      `Logging into Docker registry ${request.registry} as ${request.username} (${engine.name} engine) ...`,
    );
    await engine.login(ctx.signal);
  }

  steps.step(4, TOTAL, "Gathering GitLab registry state ...");
  const state = await gitlabState(services.gitlab);
  steps.step(5, TOTAL, "Building push plan ...");
  const planned = planItems(request, located).map((item) => ({
    ...item,
    status: statusOf(item.gitlabTag, state),
  }));
  printPlan(steps, planned, located.artifact.name);
  const existing = planned.filter((p) => p.status === PRESENT);
  printExisting(steps, existing, request.forcePush);
  const toPush = request.forcePush ? planned : planned.filter((p) => p.status !== PRESENT);
  const skipped = request.forcePush ? [] : existing.map((p) => p.gitlabTag);
  // As push does: the indexes are written even when every image was there already.
  const indexes = async (pushed: SyncOutcome["pushed"]) => {
    if (!request.multiarchIndex) return {};
    steps.text("");
    steps.text("Writing multi-arch indexes ...");
    const image = {
      metadata: located.metadata,
      runs: [{ id: run.id, htmlUrl: located.run.html_url }],
    };
    return {
      indexes: await indexBuild(ctx, services.registryClient, steps, request, image, {
        pushed,
        skipped,
      }),
    };
  };
  if (toPush.length === 0) {
    steps.text("Nothing to push.");
    return { pushed: [], skipped, aborted: false, bytesUploaded: 0, run, ...(await indexes([])) };
  }
  if (request.confirm && !(await request.confirm("\nProceed with upload? [y/N]: "))) {
    steps.text("Push aborted.");
    return { pushed: [], skipped, aborted: true, bytesUploaded: 0, run };
  }

  const { pushed, bytesUploaded, failures } = await streamArtifact(
    ctx,
    steps,
    services,
    request,
    located,
    toPush,
  );
  if (failures.length > 0) throw notAllPushed(failures, toPush.length);

  steps.step(7, TOTAL, `Cleaning up ${located.layout.dir} ...`);
  const removed = await removeTargets(
    await cleanTargets(request.downloadsDir, request.imageTag, [run.id]),
  );
  ctx.logger.info(
    { removed: removed.length },
    `cleaned ${removed.length} path(s) of ${request.imageTag}`,
  );
  const written = await indexes(pushed);
  steps.text(
    `Sync complete: ${pushed.length} pushed${skipped.length ? `, ${skipped.length} already present` : ""}.`,
  );
  return { pushed, skipped, aborted: false, bytesUploaded, run, ...written };
}

interface Streamed {
  pushed: SyncOutcome["pushed"];
  bytesUploaded: number;
  failures: Array<{ item: Planned; error: unknown }>;
}

/** Step 6: the artifact, downloading or on disk, read through once; the verified images published. */
async function streamArtifact(
  ctx: SyncContext,
  steps: StepReporter,
  services: SyncServices,
  request: SyncRequest,
  located: LocatedArtifact,
  toPush: Planned[],
): Promise<Streamed> {
  const { artifact, layout } = located;
  const size = artifact.size_in_bytes;
  const onDisk = await finishedDownload(located, request, steps);
  steps.step(
    6,
    TOTAL,
    onDisk
      ? `Reading artifact '${artifact.name}' already at ${layout.zip} into the registry (${services.engine.name} engine) ...`
      : `Streaming artifact '${artifact.name}' (~${formatMiB(size, 2)}) from GitHub into the registry (${services.engine.name} engine), downloading to ${layout.zipPart} ...`,
  );
  const file = await GrowingFile.open(
    onDisk ? layout.zip : await partFile(located),
    size,
    ctx.signal,
  );
  const stop = new AbortController();
  let download: Promise<DownloadResult | undefined> = Promise.resolve(undefined);
  if (onDisk) file.settle({ ok: true });
  else {
    download = fetchArtifact(ctx, services.github, located, {
      progress: request.progress,
      freeBytes: request.freeBytes,
      signal: AbortSignal.any([ctx.signal, stop.signal]),
      command: request.daemon ? "the daemon" : "sync",
      onBytes: ({ fetched }) => {
        if (request.counters) request.counters.fetched = fetched;
        file.wake();
      },
    });
    download.then(
      () => file.settle({ ok: true }),
      (error: unknown) => file.settle({ ok: false, error }),
    );
  }
  const runs = new Map<string, ImageRun>();
  try {
    await readArtifact(ctx, steps, services, request, located, file, toPush, runs);
    const result = await download;
    if (result && request.counters) request.counters.fetched = result.fetched;
    await writeDownloadMetadata(services.github, located, request.daemon === true);
    return await publishAll(ctx, steps, services, request, toPush, runs);
  } catch (err) {
    stop.abort(err);
    await download.catch(() => undefined);
    for (const entry of runs.values()) await entry.image.discard();
    if (ctx.signal.aborted) {
      throw interrupted(
        ctx.signal,
        `the partial download ${layout.zipPart} is kept (if it was not complete); run ${request.daemon ? "the daemon" : "sync"} again to resume`,
      );
    }
    throw err;
  } finally {
    await file.close();
  }
}

/**
 * Whether a finished download of this very artifact is already here (then it is read from disk);
 * otherwise whatever is in the way is cleared, a partial download is kept to resume.
 */
async function finishedDownload(
  located: LocatedArtifact,
  request: SyncRequest,
  steps: StepReporter,
): Promise<boolean> {
  const { layout, artifact, run } = located;
  if (request.forceDownload) {
    await keptDownload(located, true, steps);
    return false;
  }
  if ((await exists(layout.zip)) && (await exists(layout.metadata))) {
    const read = await parseJsonFile(layout.metadata, metadataFileSchema);
    const size = (await stat(layout.zip)).size;
    if (read.ok && read.value.run_id === run.id && size === artifact.size_in_bytes) {
      steps.detail(`using the download of run ${run.id} at ${layout.zip}`);
      return true;
    }
    steps.warn(`${layout.zip} is not the artifact of run ${run.id}; downloading it again.`);
    await rm(layout.zip, { force: true });
    await rm(layout.metadata, { force: true });
    return false;
  }
  // A zip without its metadata.json: kept when it is the artifact (size and digest), else removed.
  return (await keptDownload(located, false, steps)) !== undefined;
}

/** The part file the download writes, there before it starts so the reader can open it. */
async function partFile(located: LocatedArtifact): Promise<string> {
  const { zipPart } = located.layout;
  // One longer than the artifact cannot be its beginning; the downloader would replace it.
  const have = await stat(zipPart).then(
    (s) => s.size,
    () => 0,
  );
  if (have > located.artifact.size_in_bytes) await rm(zipPart, { force: true });
  await (await open(zipPart, "a")).close();
  return zipPart;
}

/** Reads the zip through, handing each planned tarball to the engine as it comes. */
async function readArtifact(
  ctx: SyncContext,
  steps: StepReporter,
  services: SyncServices,
  request: SyncRequest,
  located: LocatedArtifact,
  file: GrowingFile,
  toPush: Planned[],
  runs: Map<string, ImageRun>,
): Promise<void> {
  const artifact = await services.engine.artifact(ctx.signal, toPush);
  const byEntry = new Map(toPush.map((item) => [item.entry, item]));
  const task = `sync ${located.artifact.name}`;
  // One image at a time, in the zip's order: the next tarball starts once the last is read.
  let previous: Promise<unknown> = Promise.resolve();
  request.progress({ kind: "start", task, total: file.size });
  let ok = false;
  try {
    await readZipStream({
      file,
      label: located.layout.zip,
      signal: ctx.signal,
      onPosition: (bytes) => request.progress({ kind: "bytes", task, bytes, total: file.size }),
      onEntry: async (entry) => {
        const item = byEntry.get(entry.name);
        if (!item) return undefined;
        await previous;
        steps.status(`Pushing ${item.remoteRef} ...`);
        const image = artifact.begin(item);
        runs.set(entry.name, { item, image });
        previous = image.parsed;
        return image.sink;
      },
      onEntryEnd: (entry, problem) => {
        const run = runs.get(entry.name);
        if (!run) return;
        run.ready = problem ? Promise.reject(problem) : run.image.ready(entrySource(file, entry));
        run.ready.catch(() => undefined);
      },
    });
    ok = true;
  } finally {
    request.progress({ kind: "end", task, ok });
  }
}

function entrySource(file: GrowingFile, entry: StreamedEntry) {
  return { label: entry.name, open: () => openEntry(file, entry) };
}

/** Every verified image published, in the plan's order; the others said why. */
async function publishAll(
  ctx: SyncContext,
  steps: StepReporter,
  services: SyncServices,
  request: SyncRequest,
  toPush: Planned[],
  runs: Map<string, ImageRun>,
): Promise<Streamed> {
  const ready: Array<{ item: Planned; image: PublishableImage }> = [];
  const failures: Streamed["failures"] = [];
  for (const item of toPush) {
    const run = runs.get(item.entry);
    try {
      if (!run?.ready) {
        throw new DamagedInputError(`the artifact holds no ${item.entry}`, {
          hint: "the artifact lacks an image its metadata promises; check the build run",
        });
      }
      ready.push({ item, image: await run.ready });
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      failures.push({ item, error });
      steps.warn(`${item.entry} is not pushed: ${describeError(error)}`);
      await run?.image.discard();
    }
  }
  const pushed: SyncOutcome["pushed"] = [];
  let bytesUploaded = 0;
  for (const { item, image } of ready) {
    ctx.signal.throwIfAborted();
    const result = await image.publish();
    steps.status(`  pushed ${item.remoteRef} ${result.digest}: ${result.summary}`);
    pushed.push({ gitlabTag: item.gitlabTag, remoteRef: item.remoteRef, digest: result.digest });
    bytesUploaded += result.bytesUploaded;
    if (request.counters) {
      request.counters.pushed = pushed.length;
      request.counters.uploadedBytes = bytesUploaded;
    }
    if (request.retagAsLatest) {
      await retagLatest(
        ctx,
        services.registryClient,
        steps,
        request.registry,
        item.repository,
        result.digest,
      );
    }
  }
  if (pushed.length > 0) {
    await verifyListed(
      ctx,
      services.gitlab,
      steps,
      pushed.map((p) => p.gitlabTag),
    );
  }
  return { pushed, bytesUploaded, failures };
}
