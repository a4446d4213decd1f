import { INDEXED_ARCHES, multiarchTagOf } from "../domain/images.js";
import type { StepReporter } from "../domain/events.js";
import type { RegistryClient } from "../registry/client.js";
import { unlistedSources, writeImageIndex } from "../registry/image-index.js";
import { retag } from "../registry/retag.js";
import type { SyncContext } from "./context.js";
import type { ProvenanceOf } from "./image-provenance.js";

export interface MultiarchRequest {
  /** `<registry host>`, as in the image reference. */
  registry: string;
  /** Project path inside the registry, `hercules/veloxtesting`. */
  registryProject: string;
  /** The GitLab tags of one build: `x86/presto-coordinator:<tag>`, … */
  gitlabTags: readonly string[];
  /** Provenance of the build's images, given to their entries. */
  provenance?: ProvenanceOf;
  /** Also point `<repo>:latest` at each index. */
  retagAsLatest?: boolean;
}

export interface WrittenIndex {
  /** `presto-coordinator:<tag>`, below the project. */
  gitlabTag: string;
  digest: string;
  platforms: string[];
  written: boolean;
}

/** One index to write: `<repo>:<tag>` below the project, and the platform tag of each build. */
interface IndexTarget {
  repo: string;
  tag: string;
  /** `x86` → `x86/presto-coordinator:<tag>`, for each platform the build's tags name. */
  builds: Map<string, string>;
}

/** The indexes a build's tags go into, keyed `<repo>:<tag>`; tags without `x86/`/`arm/` have none. */
function indexTargets(gitlabTags: readonly string[]): Map<string, IndexTarget> {
  const targets = new Map<string, IndexTarget>();
  for (const gitlabTag of gitlabTags) {
    const target = multiarchTagOf(gitlabTag);
    if (!target) continue;
    const key = `${target.repoPath}:${target.tag}`;
    const entry = targets.get(key) ?? { repo: target.repoPath, tag: target.tag, builds: new Map() };
    const arch = gitlabTag.slice(0, gitlabTag.indexOf("/"));
    entry.builds.set(arch, gitlabTag);
    targets.set(key, entry);
  }
  return targets;
}

/** Each platform's repository an index of `repo` lists. */
function platformRepositories(registryProject: string, repo: string): string[] {
  return INDEXED_ARCHES.map((arch) => `${registryProject}/${arch}/${repo}`);
}

/**
 * The indexes of a build (`<repo>:<tag>` below the project) that do not list every platform's
 * image the registry holds under their tag: an index whose tag is there can still be short, when
 * a writer was stopped between pushing an image and writing the index.
 */
export async function shortIndexes(
  ctx: SyncContext,
  client: RegistryClient,
  request: Pick<MultiarchRequest, "registryProject" | "gitlabTags">,
): Promise<string[]> {
  const short: string[] = [];
  for (const [key, { repo, tag }] of indexTargets(request.gitlabTags)) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const unlisted = await unlistedSources({
      client,
      repository: `${request.registryProject}/${repo}`,
      tag,
      sources: platformRepositories(request.registryProject, repo).map((repository) => ({
        repository,
      })),
      signal: ctx.signal,
    });
    if (unlisted.length > 0) short.push(key);
  }
  return short;
}

/**
 * `--multiarch-index`: after a build's images are in, one index per repository at the path
 * without `x86/` or `arm/`, listing every platform the registry holds under that tag. Tags with
 * no architecture prefix are already where an index would go and are left alone.
 */
export async function writeMultiarchIndexes(
  ctx: SyncContext,
  client: RegistryClient,
  steps: StepReporter,
  request: MultiarchRequest,
): Promise<WrittenIndex[]> {
  const written: WrittenIndex[] = [];
  for (const [gitlabTag, { repo, tag, builds }] of indexTargets(request.gitlabTags)) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const repository = `${request.registryProject}/${repo}`;
    const result = await writeImageIndex({
      client,
      repository,
      tag,
      sources: INDEXED_ARCHES.map((arch) => {
        const own = builds.get(arch);
        const annotations = own ? request.provenance?.(own) : undefined;
        return {
          repository: `${request.registryProject}/${arch}/${repo}`,
          ...(annotations ? { annotations } : {}),
        };
      }),
      logger: ctx.logger,
      signal: ctx.signal,
    });
    const platforms = result.entries.map((e) => e.platform);
    steps.text(
      `  multi-arch ${request.registry}/${repository}:${tag}: ${platforms.join(", ")}${result.written ? "" : " (already)"}`,
    );
    steps.text(`    index ${result.digest}`);
    if (request.retagAsLatest) {
      const latest = await retag({
        client,
        sourceRepo: repository,
        sourceRef: result.digest,
        targetRepo: repository,
        targetTag: "latest",
        logger: ctx.logger,
        signal: ctx.signal,
      });
      steps.text(
        `  ${request.registry}/${repository}:latest → ${latest.digest}${latest.unchanged ? " (already)" : ""}`,
      );
    }
    written.push({ gitlabTag, digest: result.digest, platforms, written: result.written });
  }
  return written;
}
