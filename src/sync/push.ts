import { stat } from "node:fs/promises";
import path from "node:path";
import type { ImageTarballInfo } from "../archive/docker-save.js";
import { SyncError, describeError } from "../errors.js";
import { retry } from "../net/retry.js";
import type { RegistryClient } from "../registry/client.js";
import { retag } from "../registry/retag.js";
import { formatMiB } from "../util/bytes.js";
import { exists, readJsonFile } from "../util/files.js";
import { shellQuote } from "../util/text.js";
import { loadImageInfo } from "../workspace/image-info.js";
import { tagLayout, uploadPlanSchema, type PlanArtifact } from "../workspace/layout.js";
import type { StepReporter } from "../domain/events.js";
import type { GitlabServices, SyncContext } from "./context.js";
import type { ImagePusher, PushItem } from "./push-engines.js";
import { gitlabState, type GitlabState } from "./compare.js";
import { parseGitlabTag } from "../domain/images.js";
import { resolvePushRun, type RunInfo, type RunSource } from "./run-provenance.js";
import { readProvenance } from "./image-provenance.js";
import { writeMultiarchIndexes, type WrittenIndex } from "./multiarch.js";

export type { RunInfo, RunSource } from "./run-provenance.js";

export interface PushRequest {
  imageTag: string;
  downloadsDir: string;
  /** `<registry host>`, as in the image reference. */
  registry: string;
  /** Project path inside the registry, `hercules/veloxtesting`. */
  registryProject: string;
  username: string;
  force: boolean;
  skipLogin: boolean;
  retagAsLatest: boolean;
  /** Prints the `docker load/tag/push` commands equivalent to what the engine does. */
  verbose?: boolean;
  /**
   * Asks before pushing; absent means "yes" (--yes, the daemon). It throws when nobody can
   * answer (no terminal), so an unattended push fails rather than passing having pushed nothing.
   */
  confirm?: (question: string) => Promise<boolean>;
  /** What prepare found in each tarball, keyed by GitLab tag (the daemon hands it over). */
  images?: Map<string, ImageTarballInfo>;
  /** Where GitHub's view of the run comes from; metadata.json names the run shown. */
  run?: RunSource;
  /**
   * Afterwards, one OCI index per repository at the path without `x86/`/`arm/`, listing every
   * platform's image of the tag (tags already present included, so a rerun repairs an index).
   */
  multiarchIndex?: boolean;
}

export interface PushServices {
  gitlab: GitlabServices;
  registryClient: RegistryClient;
  pusher: ImagePusher;
}

/** The original's status wording, word for word: operators read (and grep) these lines. */
export type GitlabStatus =
  | "already present (push will overwrite the existing tag)"
  | "repository exists, tag missing"
  | "repository not found (will be created on push)";
export const PRESENT: GitlabStatus = "already present (push will overwrite the existing tag)";

export interface PlannedPush extends PushItem {
  gitlabTag: string;
  status: GitlabStatus;
}

export interface PushOutcome {
  pushed: Array<{ gitlabTag: string; remoteRef: string; digest: string }>;
  skipped: string[];
  aborted: boolean;
  bytesUploaded: number;
  /** The run the pushed images came from, as shown. */
  run?: RunInfo;
  /** With `multiarchIndex`: each index as it now stands. */
  indexes?: WrittenIndex[];
}

const TOTAL = 5;
const REPREPARE = "re-run prepare for this image tag";
const VERIFY_ATTEMPTS = 4;

/** The tarball a plan entry names; a plan written before the downloads directory moved still works. */
async function locateTarball(entry: PlanArtifact, extracted: string): Promise<string | undefined> {
  const named = path.isAbsolute(entry.file) ? entry.file : path.resolve(extracted, entry.file);
  if (await exists(named)) return named;
  const moved = path.join(extracted, path.basename(entry.file));
  return (await exists(moved)) ? moved : undefined;
}

async function planItems(
  request: PushRequest,
  planPath: string,
  extracted: string,
  artifacts: PlanArtifact[],
): Promise<Array<Omit<PlannedPush, "status">>> {
  const items: Array<Omit<PlannedPush, "status">> = [];
  for (const [index, entry] of artifacts.entries()) {
    const parsed = parseGitlabTag(entry.gitlab_tag);
    if (!parsed) {
      throw new SyncError(
        `${planPath} entry #${index + 1} has a malformed GitLab tag '${entry.gitlab_tag}' (expected like x86/presto-coordinator:<tag>)`,
        { hint: REPREPARE },
      );
    }
    const file = await locateTarball(entry, extracted);
    if (!file) {
      throw new SyncError(`Image tarball ${entry.file} (for ${entry.gitlab_tag}) is missing`, {
        hint: `${REPREPARE} (prepare --clean extracts it again)`,
      });
    }
    const repository = `${request.registryProject}/${parsed.repoPath}`;
    items.push({
      gitlabTag: entry.gitlab_tag,
      file,
      localRef: `${entry.repo || parsed.repo}:${request.imageTag}`,
      repository,
      tag: parsed.tag,
      remoteRef: `${request.registry}/${repository}:${parsed.tag}`,
      siblings: [],
      ...(request.images?.get(entry.gitlab_tag)
        ? { info: request.images.get(entry.gitlab_tag) }
        : {}),
    });
  }
  const byArch = new Map<string, string[]>();
  for (const item of items) {
    const arch = path.posix.dirname(item.repository);
    byArch.set(arch, [...(byArch.get(arch) ?? []), item.repository]);
  }
  for (const item of items) {
    item.siblings = (byArch.get(path.posix.dirname(item.repository)) ?? []).filter(
      (r) => r !== item.repository,
    );
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

function printPlan(steps: StepReporter, planned: PlannedPush[]): void {
  steps.text("Push plan:");
  steps.rule();
  planned.forEach((item, index) => {
    steps.text(`  Artifact #${index + 1}:`);
    steps.text(`    Remote tag   : ${item.remoteRef}`);
    steps.text(`    Local tarball: ${item.file}`);
    // Known before any load: prepare checked that the tarball's RepoTags hold this name.
    steps.text(`    Local tag    : ${item.localRef}`);
    steps.text(`    GitLab status: ${item.status}`);
    if (index !== planned.length - 1) steps.rule();
  });
}

/** `--verbose`: the Docker CLI commands that do what the engine is about to do. */
function printPreview(steps: StepReporter, planned: PlannedPush[]): void {
  steps.text("");
  steps.text("Command preview:");
  for (const item of planned) {
    steps.text(`    $ docker load --input ${shellQuote(item.file)}`);
    steps.text(`    $ docker tag ${shellQuote(item.localRef)} ${shellQuote(item.remoteRef)}`);
    steps.text(`    $ docker push ${shellQuote(item.remoteRef)}`);
  }
}

/** The tags GitLab already has: skipped (the original's list), or overwritten under --force. */
export function printExisting(
  steps: StepReporter,
  existing: Array<{ remoteRef: string }>,
  force: boolean,
): void {
  if (existing.length === 0) return;
  steps.text("");
  steps.text(
    force
      ? "WARNING: The following tags already exist in GitLab and will be overwritten:"
      : "Skipping already-present tags (use --force to push anyway):",
  );
  for (const item of existing) steps.text(`  ${item.remoteRef}`);
}

/** GitLab's answer lacks a pushed tag; its API can trail the registry by a moment. */
class NotListedYet extends SyncError {}

/** Reads GitLab until it lists every pushed tag, asking again a few times with back-off. */
export async function verifyListed(
  ctx: SyncContext,
  gitlab: GitlabServices,
  steps: StepReporter,
  gitlabTags: string[],
): Promise<void> {
  steps.detail(
    `checking that GitLab project ${gitlab.options.gitlabProject} lists the pushed tags ...`,
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

/**
 * The original's push: plan from upload-plan.json, GitLab's current state, a confirmation, then
 * each image through the chosen engine, skipping tags GitLab already has unless forced. Afterwards
 * GitLab must list every pushed tag.
 */
export async function pushImageTag(
  ctx: SyncContext,
  steps: StepReporter,
  services: PushServices,
  request: PushRequest,
): Promise<PushOutcome> {
  const layout = tagLayout(request.downloadsDir, request.imageTag);
  if (!(await exists(layout.plan))) {
    throw new SyncError(`No upload plan at ${layout.plan}`, {
      hint: "run download and prepare for this image tag first",
    });
  }
  const plan = await readJsonFile(layout.plan, uploadPlanSchema, REPREPARE);
  if (plan.image_tag !== request.imageTag) {
    throw new SyncError(
      `${layout.plan} is for image tag '${plan.image_tag}', not '${request.imageTag}'`,
      { hint: REPREPARE },
    );
  }
  if (plan.artifacts.length === 0) {
    throw new SyncError(`${layout.plan} lists no images`, { hint: REPREPARE });
  }
  // What prepare learnt of the tarballs spares the registry engine a full read of each.
  const images = request.images ?? (await loadImageInfo(layout.dir, ctx.logger));
  const provenance = await readProvenance(layout.metadata, ctx.logger);
  const items = (
    await planItems({ ...request, images }, layout.plan, layout.extracted, plan.artifacts)
  ).map((item) => {
    const annotations = provenance(item.gitlabTag);
    return annotations ? { ...item, annotations } : item;
  });
  const indexes = async (): Promise<WrittenIndex[] | undefined> => {
    if (!request.multiarchIndex) return undefined;
    steps.text("");
    steps.text("Writing multi-arch indexes ...");
    return writeMultiarchIndexes(ctx, services.registryClient, steps, {
      registry: request.registry,
      registryProject: request.registryProject,
      gitlabTags: items.map((i) => i.gitlabTag),
      provenance,
      retagAsLatest: request.retagAsLatest,
    });
  };

  const run = await resolvePushRun(request.run, layout.metadata, steps, TOTAL, ctx.signal);

  const engine = services.pusher.name;
  if (request.skipLogin) {
    steps.step(
      2,
      TOTAL,
      `Skipping docker login for registry ${request.registry} (user requested); checking the ${engine} engine ...`,
    );
    await services.pusher.check(ctx.signal);
  } else {
    steps.step(
      2,
      TOTAL,
      `Logging into Docker registry ${request.registry} as ${request.username} (${engine} engine) ...`,
    );
    await services.pusher.login(ctx.signal);
  }

  steps.step(3, TOTAL, `Gathering GitLab registry state ...`);
  const state = await gitlabState(services.gitlab);

  steps.step(4, TOTAL, "Building push plan ...");
  const planned: PlannedPush[] = items.map((item) => ({
    ...item,
    status: statusOf(item.gitlabTag, state),
  }));
  printPlan(steps, planned);
  if (request.verbose) printPreview(steps, planned);

  const existing = planned.filter((p) => p.status === PRESENT);
  printExisting(steps, existing, request.force);
  const toPush = request.force ? planned : planned.filter((p) => p.status !== PRESENT);
  const skipped = request.force ? [] : existing.map((p) => p.gitlabTag);
  if (toPush.length === 0) {
    steps.text("Nothing to push.");
    const written = await indexes();
    return {
      pushed: [],
      skipped,
      aborted: false,
      bytesUploaded: 0,
      ...(run ? { run } : {}),
      ...(written ? { indexes: written } : {}),
    };
  }
  if (request.confirm && !(await request.confirm("\nProceed with upload? [y/N]: "))) {
    steps.text("Push aborted.");
    return { pushed: [], skipped, aborted: true, bytesUploaded: 0, ...(run ? { run } : {}) };
  }

  steps.step(5, TOTAL, `Executing ${engine} push sequence ...`);
  const pushed: PushOutcome["pushed"] = [];
  let bytesUploaded = 0;
  for (const item of toPush) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    steps.text("");
    steps.status(`Pushing ${item.remoteRef} ...`);
    // The tarball may have gone since the plan was read (a clean, a full disk clean-up).
    const size = await fileSize(item.file);
    if (size === undefined) {
      throw new SyncError(`Image tarball ${item.file} disappeared before it could be pushed`, {
        hint: `${REPREPARE}, then push again (tags already pushed are skipped)`,
      });
    }
    steps.text(`  archive: ${item.file} (${formatMiB(size, 2)})`);
    const result = await services.pusher.push(item, ctx.signal);
    steps.status(`  pushed ${result.digest}: ${result.summary}`);
    pushed.push({ gitlabTag: item.gitlabTag, remoteRef: item.remoteRef, digest: result.digest });
    bytesUploaded += result.bytesUploaded;
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

  steps.text("");
  await verifyListed(
    ctx,
    services.gitlab,
    steps,
    pushed.map((p) => p.gitlabTag),
  );
  steps.text(
    `Push complete: ${pushed.length} pushed${skipped.length ? `, ${skipped.length} already present` : ""}.`,
  );
  const written = await indexes();
  return {
    pushed,
    skipped,
    aborted: false,
    bytesUploaded,
    ...(run ? { run } : {}),
    ...(written ? { indexes: written } : {}),
  };
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch {
    return undefined;
  }
}

/** `--retag-as-latest`: `<repo>:latest` pointed at the pushed manifest (a manifest copy). */
export async function retagLatest(
  ctx: SyncContext,
  client: RegistryClient,
  steps: StepReporter,
  registry: string,
  repository: string,
  digest: string,
): Promise<void> {
  const latest = await retag({
    client,
    sourceRepo: repository,
    sourceRef: digest,
    targetRepo: repository,
    targetTag: "latest",
    logger: ctx.logger,
    signal: ctx.signal,
  });
  steps.text(
    `  ${registry}/${repository}:latest → ${latest.digest}${latest.unchanged ? " (already)" : ""}`,
  );
}
