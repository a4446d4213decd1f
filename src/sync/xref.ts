import type { RunMetadata } from "../domain/metadata.js";
import type { WorkflowRun } from "../github/runs.js";
import {
  INDEXED_ARCHES,
  expectedImages,
  invalidImageTag,
  parseGitlabTag,
  type ExpectedImage,
} from "../domain/images.js";

export interface RunRef {
  id: number;
  title: string;
  startedAt: string;
  htmlUrl: string;
}

export interface ExpectedEntry extends ExpectedImage {
  run: RunRef;
  metadata: RunMetadata;
}

export interface SeenRun {
  run: WorkflowRun;
  metadata?: RunMetadata;
}

export function runRef(run: WorkflowRun): RunRef {
  return {
    id: run.id,
    title: run.display_title || run.name,
    startedAt: run.run_started_at ?? run.created_at,
    htmlUrl: run.html_url,
  };
}

export function isSuccessful(run: WorkflowRun): boolean {
  return run.conclusion === "success";
}

/** Newest first by start time, then by id, so ties between re-runs resolve the same way every time. */
export function newestFirst(a: WorkflowRun, b: WorkflowRun): number {
  const byTime = runRef(b).startedAt.localeCompare(runRef(a).startedAt);
  return byTime !== 0 ? byTime : b.id - a.id;
}

/** A successful run whose block names an image tag outside the grammar. */
export interface InvalidTag {
  run: RunRef;
  imageTag: string;
}

export interface ExpectedTags {
  /** gitlab tag → the newest successful run that promises it. */
  byGitlabTag: Map<string, ExpectedEntry>;
  /** image tag → every successful run that built it, newest first. */
  runsByImage: Map<string, RunRef[]>;
  /** Runs whose image tag is not a tag at all: reported as invalid, never as missing. */
  invalid: InvalidTag[];
}

/**
 * What GitLab should hold according to GitHub. When runs share an image tag the newest successful
 * one decides the whole set for that tag: its artifact is the one that will be pushed, so an older
 * run's extra worker is not expected (it could never be supplied and would stay "missing").
 */
export function expectedFromRuns(runs: readonly SeenRun[]): ExpectedTags {
  const byGitlabTag = new Map<string, ExpectedEntry>();
  const runsByImage = new Map<string, RunRef[]>();
  const invalid: InvalidTag[] = [];
  const successful = runs
    .filter((r) => isSuccessful(r.run))
    .sort((a, b) => newestFirst(a.run, b.run));
  for (const { run, metadata } of successful) {
    const bad = invalidImageTag(metadata);
    if (bad !== undefined) {
      invalid.push({ run: runRef(run), imageTag: bad });
      continue;
    }
    const images = metadata ? expectedImages(metadata) : [];
    const imageTag = images[0]?.imageTag;
    if (!metadata || !imageTag) continue;
    const ref = runRef(run);
    const earlier = runsByImage.get(imageTag);
    runsByImage.set(imageTag, [...(earlier ?? []), ref]);
    if (earlier) continue;
    for (const image of images) byGitlabTag.set(image.gitlabTag, { ...image, run: ref, metadata });
  }
  return { byGitlabTag, runsByImage, invalid };
}

export interface MissingImage {
  imageTag: string;
  metadata: RunMetadata;
  runs: RunRef[];
  /** The missing GitLab tags of this image tag, sorted. */
  missing: ExpectedEntry[];
}

export interface XrefResult {
  expectedCount: number;
  presentCount: number;
  missing: MissingImage[];
  extra: string[];
  invalid: InvalidTag[];
}

export interface CrossReferenceOptions {
  /** `--platform`'s architecture (`x86`, `arm`): extra tags are looked for under it only. */
  arch?: string;
}

/**
 * Missing = expected but absent from GitLab; extra = in GitLab with no run behind it. A
 * multi-architecture index (`<repo>:<tag>` beside an expected `x86/<repo>:<tag>` or
 * `arm/<repo>:<tag>`) has the runs of its images behind it.
 */
export function crossReference(
  expected: ExpectedTags,
  present: ReadonlySet<string>,
  options: CrossReferenceOptions = {},
): XrefResult {
  const grouped = new Map<string, MissingImage>();
  const missingTags = [...expected.byGitlabTag.keys()].filter((t) => !present.has(t)).sort();
  for (const gitlabTag of missingTags) {
    const entry = expected.byGitlabTag.get(gitlabTag);
    if (!entry) continue;
    const group = grouped.get(entry.imageTag) ?? {
      imageTag: entry.imageTag,
      metadata: entry.metadata,
      runs: expected.runsByImage.get(entry.imageTag) ?? [],
      missing: [],
    };
    group.missing.push(entry);
    grouped.set(entry.imageTag, group);
  }
  const accounted = (tag: string): boolean =>
    expected.byGitlabTag.has(tag) ||
    INDEXED_ARCHES.some((arch) => expected.byGitlabTag.has(`${arch}/${tag}`));
  const inScope = (tag: string): boolean =>
    options.arch === undefined || parseGitlabTag(tag)?.arch === options.arch;
  const extra = [...present].filter((t) => inScope(t) && !accounted(t)).sort();
  return {
    expectedCount: expected.byGitlabTag.size,
    presentCount: present.size,
    missing: [...grouped.values()],
    extra,
    invalid: expected.invalid,
  };
}
