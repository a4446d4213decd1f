/**
 * `push <image-tag>`: the images `prepare` extracted, from tarballs on disk (the file source),
 * through the shared middle (publish.ts) into the chosen sink.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { knownFile, type ImageWrite } from "../archive/image-source.js";
import type { ImageTarballInfo } from "../archive/docker-save.js";
import { SyncError } from "../errors.js";
import { exists, readJsonFile } from "../util/files.js";
import { shellQuote } from "../util/text.js";
import { loadImageInfo } from "../workspace/image-info.js";
import { tagLayout, uploadPlanSchema, type PlanArtifact } from "../workspace/layout.js";
import type { StepReporter } from "../domain/events.js";
import type { SyncContext } from "./context.js";
import { parseGitlabTag } from "../domain/images.js";
import { resolvePushRun, type RunSource } from "./run-provenance.js";
import { readProvenance } from "./image-provenance.js";
import { writeMultiarchIndexes, type WrittenIndex } from "./multiarch.js";
import {
  ImageLines,
  loginStep,
  notAllPushed,
  planStep,
  publishEach,
  withSiblings,
  type PlanItem,
  type Planned,
  type PublishOutcome,
  type PublishRequest,
  type PublishServices,
} from "./publish.js";

export type { RunInfo, RunSource } from "./run-provenance.js";

export interface PushRequest extends PublishRequest {
  imageTag: string;
  downloadsDir: string;
  /** Project path inside the registry, `hercules/veloxtesting`. */
  registryProject: string;
  /** Prints the `docker load/tag/push` commands equivalent to what the sink does. */
  verbose?: boolean;
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

export type PushServices = PublishServices;
export type PushOutcome = PublishOutcome;

const TOTAL = 5;
const REPREPARE = "re-run prepare for this image tag";

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
  plan: { platform?: string | null | undefined; artifacts: PlanArtifact[] },
): Promise<PlanItem[]> {
  const items: PlanItem[] = [];
  for (const [index, entry] of plan.artifacts.entries()) {
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
      label: file,
      tarballLine: `Local tarball: ${file}`,
      localRef: `${entry.repo || parsed.repo}:${request.imageTag}`,
      repository,
      tag: parsed.tag,
      remoteRef: `${request.registry}/${repository}:${parsed.tag}`,
      siblings: [],
      platform: plan.platform ?? undefined,
      known: request.images?.get(entry.gitlab_tag),
    });
  }
  return withSiblings(items);
}

/** `--verbose`: the Docker CLI commands that do what the sink is about to do. */
function printPreview(steps: StepReporter, planned: Planned[]): void {
  steps.text("");
  steps.text("Command preview:");
  for (const item of planned) {
    steps.text(`    $ docker load --input ${shellQuote(item.label)}`);
    steps.text(`    $ docker tag ${shellQuote(item.localRef)} ${shellQuote(item.remoteRef)}`);
    steps.text(`    $ docker push ${shellQuote(item.remoteRef)}`);
  }
}

/**
 * The original's push: plan from upload-plan.json, GitLab's current state, a confirmation, then
 * each image through the chosen sink, skipping tags GitLab already has unless forced. An image
 * that fails fails alone; afterwards GitLab must list every pushed tag.
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
  // What prepare learnt of the tarballs spares the sinks a full read of each.
  const images = request.images ?? (await loadImageInfo(layout.dir, ctx.logger));
  const provenance = await readProvenance(layout.metadata, ctx.logger);
  const items = (await planItems({ ...request, images }, layout.plan, layout.extracted, plan)).map(
    (item) => ({ ...item, annotations: provenance(item.gitlabTag) }),
  );
  const indexes = async (): Promise<{ indexes?: WrittenIndex[] }> => {
    if (!request.multiarchIndex) return {};
    steps.text("");
    steps.text("Writing multi-arch indexes ...");
    const written = await writeMultiarchIndexes(ctx, services.registryClient, steps, {
      registry: request.registry,
      registryProject: request.registryProject,
      gitlabTags: items.map((i) => i.gitlabTag),
      provenance,
      retagAsLatest: request.retagAsLatest,
    });
    return { indexes: written };
  };

  const run = await resolvePushRun(request.run, layout.metadata, steps, TOTAL, ctx.signal);
  const shown = run ? { run } : {};
  await loginStep(ctx, steps, services.sink, request, [2, TOTAL]);
  const { toPush, skipped } = await planStep(
    steps,
    services.gitlab,
    items,
    request.force,
    [3, TOTAL],
    request.verbose ? (planned) => printPreview(steps, planned) : undefined,
  );
  if (toPush.length === 0) {
    steps.text("Nothing to push.");
    return {
      pushed: [],
      skipped,
      aborted: false,
      bytesUploaded: 0,
      ...shown,
      ...(await indexes()),
    };
  }
  if (request.confirm && !(await request.confirm("\nProceed with upload? [y/N]: "))) {
    steps.text("Push aborted.");
    return { pushed: [], skipped, aborted: true, bytesUploaded: 0, ...shown };
  }

  steps.step(5, TOTAL, `Executing ${services.sink.name} push sequence ...`);
  const batch = await services.sink.batch(ctx.signal, toPush);
  const lines = new ImageLines(steps);
  const writes = new Map<Planned, ImageWrite>();
  const { failures, ...done } = await publishEach(ctx, lines, services, request, toPush, {
    async ready(item) {
      // The tarball may have gone since the plan was read (a clean, a full disk clean-up).
      const size = await stat(item.label).then(
        (s) => s.size,
        () => undefined,
      );
      if (size === undefined) {
        throw new SyncError(`Image tarball ${item.label} disappeared before it could be pushed`, {
          hint: `${REPREPARE}, then push again (tags already pushed are skipped)`,
        });
      }
      lines.start(item, item.label, size);
      const image = await knownFile(item.label, item.known, ctx.signal);
      const write = batch.begin({ ...item, size }, image.info);
      writes.set(item, write);
      return write.ready(image.source);
    },
    discard: async (item) => writes.get(item)?.discard(),
  });
  if (failures.length > 0) throw notAllPushed(failures, toPush.length);
  steps.text(
    `Push complete: ${done.pushed.length} pushed${skipped.length ? `, ${skipped.length} already present` : ""}.`,
  );
  return { ...done, skipped, aborted: false, ...shown, ...(await indexes()) };
}
