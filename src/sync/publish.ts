/**
 * The middle every way from an artifact to a registry shares (push, sync, the daemon in both
 * modes): the login, GitLab's state, one plan and its printout, the confirmation, the lines each
 * image gets, its publication (and `:latest`), and the closing check that GitLab lists what was
 * pushed. What differs between them is only where the images are read from (push.ts: prepared
 * tarballs on disk; stream.ts: the artifact as it downloads).
 */
import path from "node:path";
import type { ImageSink, ImageTarget, PublishableImage } from "../archive/image-source.js";
import type { ImageTarballInfo } from "../archive/image-stream.js";
import type { StepReporter } from "../domain/events.js";
import { parseGitlabTag } from "../domain/images.js";
import {
  DamagedInputError,
  SyncError,
  describeError,
  isDamagedInput,
  setupFaultOf,
} from "../errors.js";
import { retry } from "../net/retry.js";
import type { RegistryClient } from "../registry/client.js";
import { RegistryError } from "../registry/registry-error.js";
import { retag } from "../registry/retag.js";
import { formatMiB } from "../util/bytes.js";
import { localWriteFailure } from "../util/files.js";
import { gitlabState, type GitlabState } from "./compare.js";
import type { GitlabServices, SyncContext } from "./context.js";
import type { WrittenIndex } from "./multiarch.js";
import type { RunInfo } from "./run-provenance.js";

/** The original's status wording, word for word: operators read (and grep) these lines. */
export type GitlabStatus =
  | "already present (push will overwrite the existing tag)"
  | "repository exists, tag missing"
  | "repository not found (will be created on push)";
export const PRESENT: GitlabStatus = "already present (push will overwrite the existing tag)";

/** One image of the plan: where it goes, and where its tarball is. */
export interface PlanItem extends ImageTarget {
  gitlabTag: string;
  /** The plan's line naming the tarball: `Local tarball: <file>`, `Tarball      : <entry> (…)`. */
  tarballLine: string;
  /** What prepare recorded of the tarball (push). */
  known?: ImageTarballInfo | undefined;
}

export interface Planned extends PlanItem {
  status: GitlabStatus;
}

export interface Pushed {
  gitlabTag: string;
  remoteRef: string;
  digest: string;
}

/** What a push, a sync or a daemon's image tag did. */
export interface PublishOutcome {
  pushed: Pushed[];
  skipped: string[];
  aborted: boolean;
  bytesUploaded: number;
  /** The run the pushed images came from, as shown. */
  run?: RunInfo;
  /** With `multiarchIndex`: each index as it now stands. */
  indexes?: WrittenIndex[];
}

export interface PublishRequest {
  /** `<registry host>`, as in the image reference. */
  registry: string;
  username: string;
  /** Push tags GitLab already has. */
  force: boolean;
  skipLogin: boolean;
  retagAsLatest: boolean;
  /** Asks before pushing; absent means "yes" (--yes, the daemon). */
  confirm?: (question: string) => Promise<boolean>;
  /**
   * What moved so far, kept up to date even when the run fails: the images published (a
   * tarball that fails leaves its siblings pushed) with their bytes.
   */
  counters?: { pushed: number; uploadedBytes: number; layersFromRegistry?: number };
}

export interface PublishServices {
  gitlab: GitlabServices;
  registryClient: RegistryClient;
  sink: ImageSink;
}

/** Step `n`: the credentials checked (or, with --skip-login, only that the sink answers). */
export async function loginStep(
  ctx: SyncContext,
  steps: StepReporter,
  sink: ImageSink,
  request: PublishRequest,
  [n, total]: [number, number],
): Promise<void> {
  if (request.skipLogin) {
    steps.step(
      n,
      total,
      `Skipping docker login for registry ${request.registry} (user requested); checking the ${sink.name} engine ...`,
    );
    await sink.check(ctx.signal);
    return;
  }
  steps.step(
    n,
    total,
    steps.brief
      ? `Logging into ${request.registry} as ${request.username} (${sink.name} engine) ...`
      : `Logging into Docker registry ${request.registry} as ${request.username} (${sink.name} engine) ...`,
  );
  await sink.login(ctx.signal);
}

/** Repositories of one platform hold the same base: each image's mount sources. */
export function withSiblings<T extends { repository: string; siblings: string[] }>(
  items: T[],
): T[] {
  for (const item of items) {
    const arch = path.posix.dirname(item.repository);
    item.siblings = items
      .filter((o) => o !== item && path.posix.dirname(o.repository) === arch)
      .map((o) => o.repository);
  }
  return items;
}

export function statusOf(gitlabTag: string, state: GitlabState): GitlabStatus {
  if (state.present.has(gitlabTag)) return PRESENT;
  const repoPath = parseGitlabTag(gitlabTag)?.repoPath ?? "";
  return state.repositories.has(repoPath)
    ? "repository exists, tag missing"
    : "repository not found (will be created on push)";
}

/** Steps `n` and `n + 1`: GitLab's state, then the plan, printed; what is to be pushed. */
export async function planStep(
  steps: StepReporter,
  gitlab: GitlabServices,
  items: PlanItem[],
  force: boolean,
  [n, total]: [number, number],
  preview?: (planned: Planned[]) => void,
): Promise<{ toPush: Planned[]; skipped: string[] }> {
  steps.step(n, total, "Gathering GitLab registry state ...");
  const state = await gitlabState(gitlab);
  steps.step(n + 1, total, "Building push plan ...");
  const planned = items.map((item) => ({ ...item, status: statusOf(item.gitlabTag, state) }));
  if (steps.brief) briefPlan(steps, planned);
  else fullPlan(steps, planned);
  preview?.(planned);
  const existing = planned.filter((p) => p.status === PRESENT);
  printExisting(steps, existing, force);
  return {
    toPush: force ? planned : planned.filter((p) => p.status !== PRESENT),
    skipped: force ? [] : existing.map((p) => p.gitlabTag),
  };
}

/** The original's plan table: five lines an image, which scripts and operators read. */
function fullPlan(steps: StepReporter, planned: Planned[]): void {
  steps.text("Push plan:");
  steps.rule();
  planned.forEach((item, index) => {
    steps.text(`  Artifact #${index + 1}:`);
    steps.text(`    Remote tag   : ${item.remoteRef}`);
    steps.text(`    ${item.tarballLine}`);
    // Known before any load: the tarball's RepoTags must hold this name (checked before a push).
    steps.text(`    Local tag    : ${item.localRef}`);
    steps.text(`    GitLab status: ${item.status}`);
    if (index !== planned.length - 1) steps.rule();
  });
}

/** The GitLab status in the short view, short enough for one line beside the repository. */
const BRIEF_STATUS: Record<GitlabStatus, string> = {
  "already present (push will overwrite the existing tag)": "already present",
  "repository exists, tag missing": "tag missing",
  "repository not found (will be created on push)": "new repository",
};

/** The plan in the short view: the tag once, then one line an image. */
function briefPlan(steps: StepReporter, planned: Planned[]): void {
  const tags = new Set(planned.map((item) => item.tag));
  steps.text(tags.size === 1 ? `Push plan (tag ${[...tags][0] ?? ""}):` : "Push plan:");
  const names = planned.map((item) => (tags.size === 1 ? shortName(item) : item.gitlabTag));
  const width = Math.max(...names.map((name) => name.length));
  planned.forEach((item, index) => {
    steps.text(`  ${(names[index] ?? "").padEnd(width)}  ${BRIEF_STATUS[item.status]}`);
  });
}

/** `x86/presto-coordinator`: the image's path in the GitLab project, without its tag. */
export function shortName(item: { gitlabTag: string }): string {
  return parseGitlabTag(item.gitlabTag)?.repoPath ?? item.gitlabTag;
}

/** The tags GitLab already has: skipped (the original's list), or overwritten under --force. */
export function printExisting(
  steps: StepReporter,
  existing: Array<{ remoteRef: string; gitlabTag: string }>,
  force: boolean,
): void {
  if (existing.length === 0) return;
  steps.text("");
  steps.text(
    force
      ? "WARNING: The following tags already exist in GitLab and will be overwritten:"
      : "Skipping already-present tags (use --force to push anyway):",
  );
  for (const item of existing) steps.text(`  ${steps.brief ? shortName(item) : item.remoteRef}`);
}

/**
 * The lines each image gets, the same on every path: `Pushing …` and `  archive: …` when its
 * bytes start to move, `  pushed <digest>: …` when it is published — naming the image again
 * when other lines came in between (a streamed artifact publishes once it is all read).
 */
export class ImageLines {
  private last: string | undefined;

  constructor(readonly steps: StepReporter) {}

  start(item: PlanItem, label: string, size: number | undefined): void {
    this.last = item.remoteRef;
    // The short view: the image's name alone; its archive and size are --verbose's.
    if (this.steps.brief) return this.steps.status(`Pushing ${shortName(item)} ...`);
    this.steps.text("");
    this.steps.status(`Pushing ${item.remoteRef} ...`);
    this.steps.text(`  archive: ${label}${size ? ` (${formatMiB(size, 2)})` : ""}`);
  }

  pushed(item: PlanItem, digest: string, summary: string): void {
    const again = this.last !== item.remoteRef;
    if (this.steps.brief) {
      // The digest is --verbose's: the short view names the image, when needed, and what moved.
      this.steps.status(`  pushed${again ? ` ${shortName(item)}` : ""}: ${summary}`);
    } else {
      this.steps.status(`  pushed ${again ? `${item.remoteRef} ` : ""}${digest}: ${summary}`);
    }
    this.last = undefined;
  }

  /** A line about the image just published (its `:latest`). */
  after(line: string): void {
    this.steps.text(line);
  }

  notPushed(item: PlanItem, error: unknown): void {
    this.steps.warn(`${item.label} is not pushed: ${describeError(error)}`);
    this.last = undefined;
  }
}

export interface Failure {
  item: Planned;
  error: unknown;
}

/**
 * Whether a failure is this image's own, so that its siblings go on: its tarball is damaged, or
 * the registry refused something of it (a manifest it finds invalid or too large, a blob it will
 * not take). A registry that is down, failing (5xx) or refusing the credentials fails every
 * image alike: the run stops at the first, as it always did.
 */
export function failsAlone(error: unknown): boolean {
  // A state directory refusing writes, or any other fault of the setup (credentials, no
  // registry, a full disk), is no fault of this tarball: said once, for the run.
  if (localWriteFailure(error) || setupFaultOf(error)) return false;
  if (isDamagedInput(error)) return true;
  if (!(error instanceof RegistryError) || error.status === undefined) return false;
  return error.status >= 400 && error.status < 500 && ![401, 403, 429].includes(error.status);
}

/** How a front hands its images to {@link publishEach}. */
export interface Readying {
  /** The image read, verified and all in the sink: ready to publish. */
  ready(item: Planned): Promise<PublishableImage>;
  /** It will not be published: whatever of it sits in the sink is let go. */
  discard(item: Planned): Promise<void>;
}

/**
 * Each image of the plan, in its order: made ready by the front, then published — its manifest
 * (or `docker push`), the line saying what moved, `:latest` when asked. An image's own failure
 * fails it alone (see {@link failsAlone}); afterwards GitLab must list every tag pushed.
 */
export async function publishEach(
  ctx: SyncContext,
  lines: ImageLines,
  services: PublishServices,
  request: PublishRequest,
  toPush: Planned[],
  front: Readying,
): Promise<{ pushed: Pushed[]; bytesUploaded: number; failures: Failure[] }> {
  const done = { pushed: [] as Pushed[], bytesUploaded: 0 };
  const failures: Failure[] = [];
  for (const item of toPush) {
    try {
      ctx.signal.throwIfAborted();
      const image = await front.ready(item);
      const result = await image.publish();
      lines.pushed(item, result.digest, result.summary);
      done.pushed.push({
        gitlabTag: item.gitlabTag,
        remoteRef: item.remoteRef,
        digest: result.digest,
      });
      done.bytesUploaded += result.bytesUploaded;
      if (request.counters) {
        request.counters.pushed = done.pushed.length;
        request.counters.uploadedBytes = done.bytesUploaded;
        request.counters.layersFromRegistry =
          (request.counters.layersFromRegistry ?? 0) + result.layersLearned;
      }
      if (request.retagAsLatest) {
        await retagLatest(
          ctx,
          services.registryClient,
          lines,
          request.registry,
          item,
          result.digest,
        );
      }
    } catch (error) {
      if (ctx.signal.aborted || !failsAlone(error)) throw error;
      failures.push({ item, error });
      lines.notPushed(item, error);
      await front.discard(item);
    }
  }
  if (!lines.steps.brief) lines.after("");
  if (done.pushed.length > 0) {
    await verifyListed(
      ctx,
      services.gitlab,
      lines.steps,
      done.pushed.map((p) => p.gitlabTag),
    );
  }
  return { ...done, failures };
}

/** `--retag-as-latest`: `<repo>:latest` pointed at the pushed manifest (a manifest copy). */
async function retagLatest(
  ctx: SyncContext,
  client: RegistryClient,
  lines: ImageLines,
  registry: string,
  item: Planned,
  digest: string,
): Promise<void> {
  const latest = await retag({
    client,
    sourceRepo: item.repository,
    sourceRef: digest,
    targetRepo: item.repository,
    targetTag: "latest",
    logger: ctx.logger,
    signal: ctx.signal,
  });
  lines.after(
    `  ${registry}/${item.repository}:latest → ${latest.digest}${latest.unchanged ? " (already)" : ""}`,
  );
}

/** The artifact lacks an image its metadata (or plan) promises. */
export function notInArtifact(entry: string): DamagedInputError {
  return new DamagedInputError(`the artifact holds no ${entry}`, {
    hint: "the artifact lacks an image its metadata promises; check the build run",
  });
}

/** One line for the images that could not be pushed, the others (if any) having been. */
export function notAllPushed(failures: Failure[], planned: number): SyncError {
  const each = failures
    .map((f) => (f.error instanceof SyncError ? f.error.message : describeError(f.error)))
    .join("; ");
  const first = failures[0]?.error;
  const others = failures.length < planned ? " (the others were)" : "";
  const message = `${failures.length} of ${planned} image(s) not pushed${others}: ${each}`;
  const hint =
    first instanceof SyncError && first.hint ? first.hint : "rerun with --log-level debug";
  // Damaged input only when every failure is: then the daemon may fetch the artifact afresh.
  return failures.every((f) => isDamagedInput(f.error))
    ? new DamagedInputError(message, { hint, cause: first })
    : new SyncError(message, { hint, cause: first });
}

/** GitLab's answer lacks a pushed tag; its API can trail the registry by a moment. */
class NotListedYet extends SyncError {}

const VERIFY_ATTEMPTS = 4;

/** Reads GitLab until it lists every pushed tag, asking again a few times with back-off. */
export async function verifyListed(
  ctx: SyncContext,
  gitlab: GitlabServices,
  steps: StepReporter,
  gitlabTags: string[],
): Promise<void> {
  steps.detail(
    steps.brief
      ? "checking that GitLab lists the pushed tags ..."
      : `checking that GitLab project ${gitlab.options.gitlabProject} lists the pushed tags ...`,
  );
  await retry(
    async () => {
      const { present } = await gitlabState(gitlab);
      const missing = gitlabTags.filter((t) => !present.has(t));
      if (missing.length === 0) return;
      throw new NotListedYet(
        `The registry accepted the push, but GitLab project ${gitlab.options.gitlabProject} does not list ${missing.join(", ")}`,
        {
          hint: "check that --registry and --registry-project belong to --gitlab-project, then run gitlab-list",
        },
      );
    },
    {
      policy: { attempts: VERIFY_ATTEMPTS, baseDelayMs: 1000, maxDelayMs: 4000 },
      signal: ctx.signal,
      retryable: (err) => err instanceof NotListedYet,
      onRetry: ({ error }) =>
        ctx.logger.debug(
          { err: describeError(error) },
          "GitLab does not list every pushed tag yet; asking again",
        ),
    },
  );
}
