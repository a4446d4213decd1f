import { promises as fs } from "node:fs";
import path from "node:path";
import {
  artifactGone,
  artifactUrlResolver,
  chooseArtifact,
  listRunArtifacts,
  type RunArtifact,
} from "../github/artifacts.js";
import { METADATA_KEYS, type RunMetadata } from "../domain/metadata.js";
import { expectedImages } from "../domain/images.js";
import type { WorkflowRun } from "../github/runs.js";
import { progressTask, type ProgressListener, type StepReporter } from "../domain/events.js";
import { SyncError, interrupted } from "../errors.js";
import { formatMiB } from "../util/bytes.js";
import { checkDownloaded, downloadFile, type DownloadResult } from "../workspace/download.js";
import {
  ensureDir,
  exists,
  removeIfEmpty,
  writeJsonAtomic,
  type FreeBytes,
} from "../util/files.js";
import { tagLayout, type MetadataFile, type TagLayout } from "../workspace/layout.js";
import type { GithubServices, SyncContext } from "./context.js";
import { findRunForTag } from "./runs.js";
import { runRef } from "./xref.js";

export interface DownloadRequest {
  imageTag: string;
  downloadsDir: string;
  force: boolean;
  artifactName?: string;
  /** Told how the download moves; it decides how that is shown. */
  progress: ProgressListener;
  /** Free bytes at a path; replaceable for tests. */
  freeBytes?: FreeBytes;
  /** The daemon downloads: metadata.json also gets its keys (`_tags`, `_run_display`, `_run_id`). */
  daemon?: boolean;
}

export interface DownloadOutcome {
  run: WorkflowRun;
  metadata: RunMetadata;
  zip: string;
  size: number;
  /** Bytes that crossed the network (less than size after a resume). */
  fetched: number;
}

/**
 * metadata.json as the original writes it: the block's keys, then provenance under the
 * original's names. `_run_info` carries the keys its readers use (`databaseId`, `displayTitle`,
 * `headBranch`, `conclusion`, `htmlUrl`) beside the rest of the run; the daemon's downloads also
 * record `_tags` (every GitLab tag the run promises), `_run_display` and `_run_id`, as its does.
 */
export function metadataRecord(
  metadata: RunMetadata,
  run: WorkflowRun,
  repo: string,
  artifact: { name: string; size: number },
  zipName: string,
  options: { daemon?: boolean } = {},
): MetadataFile {
  const record: Record<string, unknown> = {};
  for (const key of METADATA_KEYS) if (metadata[key] !== undefined) record[key] = metadata[key];
  const ref = runRef(run);
  return {
    ...record,
    run_id: run.id,
    run_name: ref.title,
    repository: repo,
    artifact_name: artifact.name,
    artifact_size_bytes: artifact.size,
    artifact_zip: zipName,
    // `gh run list --json` names, as the original's readers expect them.
    _run_info: {
      databaseId: run.id,
      displayTitle: ref.title,
      headBranch: run.head_branch,
      headSha: run.head_sha,
      conclusion: run.conclusion,
      status: run.status,
      event: run.event,
      number: run.run_number,
      createdAt: run.created_at,
      updatedAt: run.updated_at,
      startedAt: ref.startedAt,
      htmlUrl: run.html_url,
      url: run.html_url,
    },
    _run_branch: run.head_branch,
    _run_conclusion: run.conclusion,
    ...(options.daemon
      ? {
          _tags: expectedImages(metadata).map((image) => image.gitlabTag),
          _run_display: ref.title,
          _run_id: run.id,
        }
      : {}),
  };
}

/**
 * A `<tag>.zip` already in place. With its metadata.json beside it, it is a finished download:
 * replaced only with --force. Without one, a run was stopped between the rename and the writing
 * of metadata.json: the zip is checked against the artifact (size, and digest when GitHub gives
 * one) and kept when it is the artifact, else downloaded afresh — never a dead end.
 */
async function keepOrReplace(
  layout: TagLayout,
  artifact: RunArtifact,
  force: boolean,
  steps: StepReporter,
): Promise<{ size: number; sha256: string; fetched: number } | undefined> {
  if (!(await exists(layout.zip))) return undefined;
  if (force) {
    await fs.rm(layout.zip, { force: true });
    return undefined;
  }
  if (await exists(layout.metadata)) {
    throw new SyncError(`Download target ${layout.zip} already exists`, {
      hint: "delete the file or re-run with --force to overwrite",
    });
  }
  const check = await checkDownloaded(
    layout.zip,
    artifact.size_in_bytes,
    artifact.digest ?? undefined,
  );
  if (check.ok) {
    steps.detail(
      `${path.basename(layout.zip)} is already here without its metadata.json (an earlier run stopped); it matches the artifact, so it is kept`,
    );
    return { size: artifact.size_in_bytes, sha256: check.sha256, fetched: 0 };
  }
  steps.warn(
    `${path.basename(layout.zip)} is here without its metadata.json and does not match the artifact (${check.reason}); downloading it again.`,
  );
  await fs.rm(layout.zip, { force: true });
  return undefined;
}

/** The run that built a tag and its images artifact: what a download (or a sync) fetches. */
export interface LocatedArtifact {
  run: WorkflowRun;
  metadata: RunMetadata;
  artifact: RunArtifact;
  layout: TagLayout;
}

/** Step numbers of the lines a locate prints: `[n/total]` for the run, then for the artifact. */
export interface LocateSteps {
  total: number;
  run: number;
  artifact: number;
  /** The download directory made (download's own step; a sync makes it quietly). */
  directory?: number;
}

/** Finds the newest successful run that built the tag, then its images artifact. */
export async function locateArtifact(
  ctx: SyncContext,
  github: GithubServices,
  steps: StepReporter,
  request: { imageTag: string; downloadsDir: string; artifactName?: string | undefined },
  numbers: LocateSteps,
): Promise<LocatedArtifact> {
  const { imageTag } = request;
  const layout = tagLayout(request.downloadsDir, imageTag);
  const repo = github.options.repo;

  steps.step(numbers.run, numbers.total, `Locating workflow run for image tag '${imageTag}' ...`);
  const { run, metadata, others } = await findRunForTag(ctx, github, imageTag);
  if (others.length > 0) {
    steps.warn(
      `Found ${others.length + 1} successful runs with image tag '${imageTag}'. ` +
        `Using the most recent run (IDs: ${[run, ...others].map((r) => r.id).join(", ")}).`,
    );
  }
  // The refs are in the tag already; the short view leaves their full length out.
  const refs = steps.brief
    ? ""
    : `, Presto=${metadata["Presto ref"] ?? "?"}, Velox=${metadata["Velox ref"] ?? "?"}`;
  steps.detail(
    `run ${run.id} (${runRef(run).title})${refs}, platform=${metadata["Target platform"] ?? "?"}`,
  );

  if (numbers.directory !== undefined) {
    steps.step(numbers.directory, numbers.total, "Ensuring download directory exists ...");
  }
  await ensureDir(layout.dir);

  steps.step(numbers.artifact, numbers.total, "Retrieving artifact metadata from GitHub ...");
  try {
    const artifacts = await listRunArtifacts(github.client, { repo, runId: run.id });
    const artifact = chooseArtifact(artifacts, run.id, request.artifactName);
    return { run, metadata, artifact, layout };
  } catch (err) {
    await removeIfEmpty(layout.dir);
    throw err;
  }
}

/**
 * The artifact already at its place, if it is usable (see {@link keepOrReplace}); with `force`,
 * any earlier download, finished or partial, is discarded instead.
 */
export async function keptDownload(
  located: LocatedArtifact,
  force: boolean,
  steps: StepReporter,
): Promise<{ size: number; sha256: string; fetched: number } | undefined> {
  const kept = await keepOrReplace(located.layout, located.artifact, force, steps);
  if (force) await fs.rm(located.layout.zipPart, { force: true });
  return kept;
}

/** Streams the artifact to `<tag>.zip.part`, resuming, verified and renamed when complete. */
export function fetchArtifact(
  ctx: SyncContext,
  github: GithubServices,
  located: LocatedArtifact,
  options: {
    progress: ProgressListener;
    freeBytes?: FreeBytes | undefined;
    /** Told of every write to the part file (the streaming sync reads behind it). */
    onBytes?: (progress: { bytes: number; fetched: number }) => void;
    signal?: AbortSignal;
    /** The command to run again, for the line an interruption prints. */
    command?: string;
  },
): Promise<DownloadResult> {
  const { artifact, layout } = located;
  const repo = github.options.repo;
  const task = `download ${artifact.name}`;
  const signal = options.signal ?? ctx.signal;
  return progressTask(options.progress, task, () =>
    downloadFile({
      resolveUrl: artifactUrlResolver(github.client, {
        repo,
        artifactId: artifact.id,
        runId: located.run.id,
      }),
      // Deleted after its address was handed out: the blob host no longer has it.
      gone: (cause) => artifactGone(located.run.id, cause),
      // The blob host's fetch: the same transport as the API, never with the GitHub token.
      get: github.client.blobs.get,
      dest: layout.zip,
      expectedSize: artifact.size_in_bytes,
      digest: artifact.digest ?? undefined,
      logger: ctx.logger,
      signal,
      freeBytes: options.freeBytes,
      onProgress: ({ bytes, total, fetched }) => {
        options.onBytes?.({ bytes, fetched });
        // After a resume `bytes` counts the part file too; the rate is of what came this run.
        options.progress({ kind: "bytes", task, bytes, total, moved: fetched });
      },
      onVerify: () => options.progress({ kind: "phase", task, phase: "verifying" }),
    }),
  ).catch(async (err: unknown) => {
    if (!ctx.signal.aborted) {
      // A tag directory that holds nothing (no partial download to resume) is not left behind.
      await fs.rmdir(layout.dir).catch(() => undefined);
      throw err;
    }
    throw interrupted(
      ctx.signal,
      `the partial download ${layout.zipPart} is kept; run ${options.command ?? "download"} again to resume`,
    );
  });
}

/** metadata.json beside the finished download, as the original writes it. */
export async function writeDownloadMetadata(
  github: GithubServices,
  located: LocatedArtifact,
  daemon: boolean,
): Promise<void> {
  const { metadata, run, artifact, layout } = located;
  await writeJsonAtomic(
    layout.metadata,
    metadataRecord(
      metadata,
      run,
      github.options.repo,
      { name: artifact.name, size: artifact.size_in_bytes },
      `${layout.imageTag}.zip`,
      { daemon },
    ),
  );
}

export async function downloadImageTag(
  ctx: SyncContext,
  github: GithubServices,
  steps: StepReporter,
  request: DownloadRequest,
): Promise<DownloadOutcome> {
  const located = await locateArtifact(ctx, github, steps, request, {
    total: 5,
    run: 1,
    directory: 2,
    artifact: 3,
  });
  const { artifact, layout, run, metadata } = located;
  const kept = await keptDownload(located, request.force, steps);

  let result: { size: number; sha256: string; fetched: number };
  if (kept) {
    steps.step(4, 5, `Keeping artifact '${artifact.name}' already at ${layout.zip} ...`);
    result = kept;
  } else {
    steps.step(
      4,
      5,
      `Downloading artifact '${artifact.name}' (~${formatMiB(artifact.size_in_bytes, 2)}) to ${layout.zip} ...`,
    );
    result = await fetchArtifact(ctx, github, located, {
      progress: request.progress,
      freeBytes: request.freeBytes,
    }).catch(async (err: unknown) => {
      // A kept `.part` keeps the directory; a download that left nothing leaves no directory.
      await removeIfEmpty(layout.dir);
      throw err;
    });
    steps.detail(
      `saved ${layout.zip} (${formatMiB(result.size, 2)}, sha256:${result.sha256}` +
        `${result.fetched < result.size ? `, resumed: ${formatMiB(result.fetched, 2)} fetched` : ""})`,
    );
  }

  steps.step(5, 5, `Writing metadata to ${layout.metadata} ...`);
  await writeDownloadMetadata(github, located, request.daemon === true);
  steps.text("Download complete.");
  return { run, metadata, zip: layout.zip, size: result.size, fetched: result.fetched };
}
