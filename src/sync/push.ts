import path from "node:path";
import type { ImageTarballInfo } from "../archive/docker-save.js";
import { SyncError, describeError } from "../errors.js";
import { retry } from "../net/retry.js";
import type { RegistryClient } from "../registry/client.js";
import { retag } from "../registry/retag.js";
import { exists, readJsonFile } from "../util/files.js";
import { loadImageInfo } from "../workspace/image-info.js";
import {
  metadataFileSchema,
  tagLayout,
  uploadPlanSchema,
  type MetadataFile,
  type PlanArtifact,
} from "../workspace/layout.js";
import type { StepReporter } from "../domain/events.js";
import type { GitlabServices, SyncContext } from "./context.js";
import type { ImagePusher, PushItem } from "./push-engines.js";
import { gitlabState, type GitlabState } from "./compare.js";
import { parseGitlabTag } from "../domain/images.js";

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
  /** Asks before pushing; absent means "yes" (--yes, the daemon). */
  confirm?: (question: string) => Promise<boolean>;
  /** What prepare found in each tarball, keyed by GitLab tag (the daemon hands it over). */
  images?: Map<string, ImageTarballInfo>;
  /** The run the images came from, when the caller resolved it (else metadata.json tells). */
  run?: { id: number; name?: string };
}

export interface PushServices {
  gitlab: GitlabServices;
  registryClient: RegistryClient;
  pusher: ImagePusher;
}

export type GitlabStatus = "present" | "repo exists, tag missing" | "repo not found";

export interface PlannedPush extends PushItem {
  gitlabTag: string;
  status: GitlabStatus;
}

export interface PushOutcome {
  pushed: Array<{ gitlabTag: string; remoteRef: string; digest: string }>;
  skipped: string[];
  aborted: boolean;
  bytesUploaded: number;
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

function statusOf(gitlabTag: string, state: GitlabState): GitlabStatus {
  if (state.present.has(gitlabTag)) return "present";
  const repoPath = parseGitlabTag(gitlabTag)?.repoPath ?? "";
  return state.repositories.has(repoPath) ? "repo exists, tag missing" : "repo not found";
}

function printPlan(steps: StepReporter, planned: PlannedPush[], force: boolean): void {
  steps.text("Push plan:");
  steps.rule();
  planned.forEach((item, index) => {
    const note =
      item.status === "present" ? (force ? " (will push again: --force)" : " (will skip)") : "";
    steps.text(`  Artifact #${index + 1}:`);
    steps.text(`    Remote ref   : ${item.remoteRef}`);
    steps.text(`    Local tarball: ${item.file}`);
    steps.text(`    GitLab status: ${item.status}${note}`);
    if (index !== planned.length - 1) steps.rule();
  });
}

/** GitLab's answer lacks a pushed tag; its API can trail the registry by a moment. */
class NotListedYet extends SyncError {}

/** Reads GitLab until it lists every pushed tag, asking again a few times with back-off. */
async function verifyListed(
  ctx: SyncContext,
  gitlab: GitlabServices,
  gitlabTags: string[],
): Promise<void> {
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
  steps.step(1, TOTAL, `Loading upload plan from ${layout.plan} ...`);
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
  const run = request.run ?? (await storedRun(layout.metadata, steps));
  if (run) steps.detail(`images of run ${run.id}${run.name ? ` (${run.name})` : ""}`);
  // What prepare learnt of the tarballs spares the registry engine a full read of each.
  const images = request.images ?? (await loadImageInfo(layout.dir, ctx.logger));
  const items = await planItems(
    { ...request, images },
    layout.plan,
    layout.extracted,
    plan.artifacts,
  );

  if (request.skipLogin) {
    steps.step(
      2,
      TOTAL,
      `Skipping registry login (--skip-login); checking the ${services.pusher.name} engine ...`,
    );
    await services.pusher.check(ctx.signal);
  } else {
    steps.step(
      2,
      TOTAL,
      `Logging in to ${request.registry} as ${request.username} (${services.pusher.name} engine) ...`,
    );
    await services.pusher.login(ctx.signal);
  }

  steps.step(
    3,
    TOTAL,
    `Checking GitLab project ${services.gitlab.options.gitlabProject} for existing tags ...`,
  );
  const state = await gitlabState(services.gitlab);
  const planned: PlannedPush[] = items.map((item) => ({
    ...item,
    status: statusOf(item.gitlabTag, state),
  }));
  printPlan(steps, planned, request.force);

  const toPush = planned.filter((p) => request.force || p.status !== "present");
  const skipped = planned.filter((p) => !toPush.includes(p)).map((p) => p.gitlabTag);
  if (toPush.length === 0) {
    steps.text(
      `All ${planned.length} tag(s) are already present in GitLab; nothing to push (use --force to push again).`,
    );
    return { pushed: [], skipped, aborted: false, bytesUploaded: 0 };
  }
  if (request.confirm && !(await request.confirm(`\nPush ${toPush.length} image(s)? [y/N]: `))) {
    steps.text("Push aborted.");
    return { pushed: [], skipped, aborted: true, bytesUploaded: 0 };
  }

  steps.step(
    4,
    TOTAL,
    `Pushing ${toPush.length} image(s) with the ${services.pusher.name} engine ...`,
  );
  const pushed: PushOutcome["pushed"] = [];
  let bytesUploaded = 0;
  for (const item of toPush) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    steps.detail(`pushing ${item.remoteRef}`);
    // The tarball may have gone since the plan was read (a clean, a full disk clean-up).
    if (!(await exists(item.file))) {
      throw new SyncError(`Image tarball ${item.file} disappeared before it could be pushed`, {
        hint: `${REPREPARE}, then push again (tags already pushed are skipped)`,
      });
    }
    const result = await services.pusher.push(item, ctx.signal);
    steps.detail(`pushed ${item.remoteRef} (${result.digest}): ${result.summary}`);
    pushed.push({ gitlabTag: item.gitlabTag, remoteRef: item.remoteRef, digest: result.digest });
    bytesUploaded += result.bytesUploaded;
    if (request.retagAsLatest) {
      const latest = await retag({
        client: services.registryClient,
        sourceRepo: item.repository,
        sourceRef: result.digest,
        targetRepo: item.repository,
        targetTag: "latest",
        logger: ctx.logger,
        signal: ctx.signal,
      });
      steps.detail(
        `${request.registry}/${item.repository}:latest → ${latest.digest}${latest.unchanged ? " (already)" : ""}`,
      );
    }
  }

  steps.step(5, TOTAL, "Verifying that GitLab lists the pushed tags ...");
  await verifyListed(
    ctx,
    services.gitlab,
    pushed.map((p) => p.gitlabTag),
  );
  steps.text(
    `Push complete: ${pushed.length} pushed${skipped.length ? `, ${skipped.length} already present` : ""}.`,
  );
  return { pushed, skipped, aborted: false, bytesUploaded };
}

/** The run as download recorded it; the push can go on without it. */
async function storedRun(
  metadataPath: string,
  steps: StepReporter,
): Promise<{ id: number; name?: string } | undefined> {
  let metadata: MetadataFile;
  try {
    metadata = await readJsonFile(metadataPath, metadataFileSchema, "run download again");
  } catch (err) {
    steps.warn(`cannot read ${metadataPath} (${describeError(err)}); run provenance unknown.`);
    return undefined;
  }
  if (metadata.run_id === undefined) return undefined;
  return { id: metadata.run_id, ...(metadata.run_name ? { name: metadata.run_name } : {}) };
}
