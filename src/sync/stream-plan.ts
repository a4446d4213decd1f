import path from "node:path";
import type { StepReporter } from "../domain/events.js";
import { expectedImages, parseGitlabTag } from "../domain/images.js";
import { DamagedInputError, SyncError, describeError, isDamagedInput } from "../errors.js";
import type { LocatedArtifact } from "./download.js";
import { provenanceOfRun } from "./image-provenance.js";
import type { GitlabStatus } from "./push.js";
import type { StreamItem } from "./stream-engines.js";

/** What the streaming sync plans and says: its images, its plan lines, its closing failure. */

export interface Planned extends StreamItem {
  status: GitlabStatus;
}

/** The images the run promises, each with its tarball's name in the zip and where it goes. */
export function planItems(
  request: { imageTag: string; registry: string; registryProject: string },
  located: LocatedArtifact,
): StreamItem[] {
  const images = expectedImages({ ...located.metadata, "Image tag": request.imageTag });
  // The manifests carry the build's provenance, as push writes them.
  const provenance = provenanceOfRun(located.metadata, {
    id: located.run.id,
    htmlUrl: located.run.html_url,
  });
  const items = images.map((image) => {
    const parsed = parseGitlabTag(image.gitlabTag);
    const repoPath = parsed?.repoPath ?? image.repo;
    const tag = parsed?.tag ?? request.imageTag;
    const repository = `${request.registryProject}/${repoPath}`;
    return {
      gitlabTag: image.gitlabTag,
      entry: image.tarball,
      localRef: `${image.repo}:${request.imageTag}`,
      repository,
      tag,
      remoteRef: `${request.registry}/${repository}:${tag}`,
      siblings: [] as string[],
      annotations: provenance(image.gitlabTag),
      platform: image.platform,
    };
  });
  for (const item of items) {
    const arch = path.posix.dirname(item.repository);
    item.siblings = items
      .filter((o) => o !== item && path.posix.dirname(o.repository) === arch)
      .map((o) => o.repository);
  }
  return items;
}

export function printPlan(steps: StepReporter, planned: Planned[], artifact: string): void {
  steps.text("Push plan:");
  steps.rule();
  planned.forEach((item, index) => {
    steps.text(`  Artifact #${index + 1}:`);
    steps.text(`    Remote tag   : ${item.remoteRef}`);
    steps.text(`    Tarball      : ${item.entry} (streamed from ${artifact})`);
    steps.text(`    Local tag    : ${item.localRef}`);
    steps.text(`    GitLab status: ${item.status}`);
    if (index !== planned.length - 1) steps.rule();
  });
}

/** One line for the images that could not be pushed, the others having been. */
export function notAllPushed(
  failures: Array<{ item: Planned; error: unknown }>,
  planned: number,
): SyncError {
  const each = failures
    .map((f) => (f.error instanceof SyncError ? f.error.message : describeError(f.error)))
    .join("; ");
  const first = failures[0]?.error;
  const message = `${failures.length} of ${planned} image(s) not pushed (the others were): ${each}`;
  const hint =
    first instanceof SyncError && first.hint ? first.hint : "rerun with --log-level debug";
  // Damaged input only when every failure is: then the daemon may fetch the artifact afresh.
  return failures.every((f) => isDamagedInput(f.error))
    ? new DamagedInputError(message, { hint, cause: first })
    : new SyncError(message, { hint, cause: first });
}
