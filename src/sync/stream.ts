/**
 * `sync <image-tag>` (and the daemon by default): download → verify → push → clean in one
 * streaming pass. The source is the artifact itself: it downloads to `<tag>.zip.part` as
 * `download` writes it, and each tarball is read out of the zip a little behind the download
 * (archive/growing-file.ts, zip-stream.ts) straight into the sink, checked on the way; nothing is
 * extracted. Publication waits for the whole artifact: the zip's directory vetted and agreeing
 * with every entry read, the download's size and digest checked. A stopped sync keeps the part
 * file; the next resumes it. The rest — plan, lines, publication — is the shared middle
 * (publish.ts); ARCHITECTURE.md draws the whole path.
 */
import { open, rm, stat } from "node:fs/promises";
import path from "node:path";
import { entrySource, type ImageWrite } from "../archive/image-source.js";
import { readZipStream } from "../archive/zip-stream.js";
import { GrowingFile } from "../archive/growing-file.js";
import type { ProgressListener, StepReporter } from "../domain/events.js";
import { expectedImages, parseGitlabTag } from "../domain/images.js";
import { interrupted } from "../errors.js";
import { platformOddity } from "../domain/platform.js";
import { formatMiB } from "../util/bytes.js";
import { exists, parseJsonFile, type FreeBytes } from "../util/files.js";
import type { DownloadResult } from "../workspace/download.js";
import { metadataFileSchema } from "../workspace/layout.js";
import { cleanTargets, removeTargets } from "./clean.js";
import type { GithubServices, SyncContext } from "./context.js";
import {
  fetchArtifact,
  keptDownload,
  locateArtifact,
  writeDownloadMetadata,
  type LocatedArtifact,
} from "./download.js";
import { provenanceOfRun } from "./image-provenance.js";
import {
  ImageLines,
  loginStep,
  notAllPushed,
  notInArtifact,
  planStep,
  publishEach,
  withSiblings,
  type Failure,
  type PlanItem,
  type Planned,
  type PublishOutcome,
  type PublishRequest,
  type PublishServices,
} from "./publish.js";
import { indexBuild } from "./built.js";
import { runRef } from "./xref.js";

export interface SyncRequest extends PublishRequest {
  imageTag: string;
  downloadsDir: string;
  registryProject: string;
  /** Download the artifact afresh, discarding any earlier download (`force` pushes tags GitLab has). */
  forceDownload: boolean;
  artifactName?: string | undefined;
  /** The daemon's sync: metadata.json gets its keys, the lines name it. */
  daemon?: boolean;
  progress: ProgressListener;
  freeBytes?: FreeBytes;
  /**
   * What moved so far, kept up to date even when the sync fails: bytes fetched from GitHub, and
   * the images published (a tarball that fails leaves its siblings pushed) with their bytes.
   */
  counters?: {
    fetched: number;
    pushed: number;
    uploadedBytes: number;
    layersFromRegistry?: number;
  };
  /**
   * `--multiarch-index`: after the push and the clean, each repository's index (see built.ts).
   * The daemon writes them in a stage of its own instead.
   */
  multiarchIndex?: boolean;
}

export interface SyncServices extends PublishServices {
  github: GithubServices;
}

export type SyncOutcome = PublishOutcome & { run: { id: number; title: string } };

const TOTAL = 7;

/** One image while the artifact streams: its sink's side, and how its tarball ended. */
interface ImageRun {
  item: Planned;
  write: ImageWrite;
  ready?: Promise<Awaited<ReturnType<ImageWrite["ready"]>>>;
}

/** The images the run promises, each with its tarball's name in the zip and where it goes. */
function planItems(request: SyncRequest, located: LocatedArtifact): PlanItem[] {
  const images = expectedImages({ ...located.metadata, "Image tag": request.imageTag });
  // The manifests carry the build's provenance, as push writes them.
  const provenance = provenanceOfRun(located.metadata, {
    id: located.run.id,
    htmlUrl: located.run.html_url,
  });
  return withSiblings(
    images.map((image) => {
      const parsed = parseGitlabTag(image.gitlabTag);
      const tag = parsed?.tag ?? request.imageTag;
      const repository = `${request.registryProject}/${parsed?.repoPath ?? image.repo}`;
      return {
        gitlabTag: image.gitlabTag,
        label: image.tarball,
        tarballLine: `Tarball      : ${image.tarball} (streamed from ${located.artifact.name})`,
        localRef: `${image.repo}:${request.imageTag}`,
        repository,
        tag,
        remoteRef: `${request.registry}/${repository}:${tag}`,
        siblings: [],
        annotations: provenance(image.gitlabTag),
        platform: image.platform,
      };
    }),
  );
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
  await loginStep(ctx, steps, services.sink, request, [3, TOTAL]);
  const odd = platformOddity(located.metadata["Target platform"]);
  if (odd) steps.warn(odd);
  const { toPush, skipped } = await planStep(
    steps,
    services.gitlab,
    planItems(request, located),
    request.force,
    [4, TOTAL],
  );
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

  // The short view: the tag's directory relative to the downloads directory it is in.
  const dir = steps.brief
    ? `${path.relative(request.downloadsDir, located.layout.dir)}${path.sep}`
    : located.layout.dir;
  steps.step(7, TOTAL, `Cleaning up ${dir} ...`);
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
  failures: Failure[];
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
      ? `Reading artifact '${artifact.name}' already at ${steps.brief ? path.relative(request.downloadsDir, layout.zip) : layout.zip} into the registry (${services.sink.name} engine) ...`
      : steps.brief
        ? `Streaming artifact '${artifact.name}' (~${formatMiB(size, 2)}) into the registry ...`
        : `Streaming artifact '${artifact.name}' (~${formatMiB(size, 2)}) from GitHub into the registry (${services.sink.name} engine), downloading to ${layout.zipPart} ...`,
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
  const lines = new ImageLines(steps);
  try {
    await readArtifact(ctx, services, located, file, toPush, runs, lines);
    const result = await download;
    if (result && request.counters) request.counters.fetched = result.fetched;
    await writeDownloadMetadata(services.github, located, request.daemon === true);
    // Every verified image published, in the plan's order; the others said why.
    return await publishEach(ctx, lines, services, request, toPush, {
      ready: (item) => runs.get(item.label)?.ready ?? Promise.reject(notInArtifact(item.label)),
      discard: async (item) => runs.get(item.label)?.write.discard(),
    });
  } catch (err) {
    stop.abort(err);
    await download.catch(() => undefined);
    // Each image's work ends first: a stopped upload finishes its chunk in flight whole.
    for (const entry of runs.values()) await entry.ready?.catch(() => undefined);
    for (const entry of runs.values()) await entry.write.discard();
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

/** Reads the zip through, handing each planned tarball to the sink as it comes. */
async function readArtifact(
  ctx: SyncContext,
  services: SyncServices,
  located: LocatedArtifact,
  file: GrowingFile,
  toPush: Planned[],
  runs: Map<string, ImageRun>,
  lines: ImageLines,
): Promise<void> {
  const batch = await services.sink.batch(ctx.signal, toPush);
  const byEntry = new Map(toPush.map((item) => [item.label, item]));
  // One image at a time, in the zip's order: the next tarball starts once the last is read.
  // The read has no meter of its own: the artifact's bytes are the download's line, and each
  // image's are its push line (two meters for one transfer would take turns on the screen).
  let previous: Promise<unknown> = Promise.resolve();
  await readZipStream({
    file,
    label: located.layout.zip,
    signal: ctx.signal,
    onEntry: async (entry) => {
      const item = byEntry.get(entry.name);
      if (!item) return undefined;
      await previous;
      // Its size is known only once it is read: the bar counts up without a total.
      lines.start(item, `${entry.name} (streamed from ${located.artifact.name})`, undefined);
      const write = batch.begin(item);
      runs.set(entry.name, { item, write });
      previous = write.parsed;
      return write.sink;
    },
    onEntryEnd: (entry, problem) => {
      const run = runs.get(entry.name);
      if (!run) return;
      run.ready = problem ? Promise.reject(problem) : run.write.ready(entrySource(file, entry));
      run.ready.catch(() => undefined);
    },
  });
}
