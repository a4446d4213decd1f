import { TAG_GRAMMAR, isDigest, isTag, parseReference } from "../domain/reference.js";
import { UsageError } from "../errors.js";
import type { DockerEngine, RegistryAuth } from "../docker/engine.js";
import type { RegistryClient } from "../registry/client.js";
import { retag } from "../registry/retag.js";
import type { StepReporter } from "../domain/events.js";
import type { SyncContext } from "./context.js";

export interface ImageName {
  /** Below the project: `x86/presto-coordinator`. */
  repoPath: string;
  /** A tag, or a `sha256:` digest for a source. */
  ref: string;
}

/**
 * `x86/presto-coordinator:tag` or `x86/presto-coordinator@sha256:…` (sources only). A target given
 * as a bare tag (`latest`) means the source's repository.
 */
export function parseImageName(
  value: string,
  role: "source" | "target",
  sourceRepo?: string,
): ImageName {
  const text = value.trim();
  if (role === "target" && sourceRepo && isTag(text)) return { repoPath: sourceRepo, ref: text };
  const ref = parseReference(text, { relative: true });
  // A source may name its manifest by digest; a target is always a tag.
  const name = ref && (ref.tag !== undefined) !== (ref.digest !== undefined) ? ref : undefined;
  if (name && (role === "source" || name.tag !== undefined)) {
    return { repoPath: name.repository, ref: name.tag ?? (name.digest as string) };
  }
  throw new UsageError(
    `invalid ${role} '${value}': expected <repo path>:<tag> below the registry project, like x86/presto-coordinator:latest`,
    `the repo path is lowercase (x86/… or arm/…); the tag matches ${TAG_GRAMMAR}`,
  );
}

export interface RetagRequest {
  source: ImageName;
  target: ImageName;
  registry: string;
  registryProject: string;
}

export interface RetagEngines {
  engine: "docker" | "registry";
  registryClient: RegistryClient;
  /** For --engine docker: the daemon and the credentials it pushes with. */
  docker?: { engine: DockerEngine; auth: RegistryAuth };
}

/**
 * Points the target at the source's manifest. The registry engine copies the manifest (no layer
 * moves, no daemon); the docker engine does what the original did: pull, tag, push.
 */
export async function retagImage(
  ctx: SyncContext,
  steps: StepReporter,
  engines: RetagEngines,
  request: RetagRequest,
): Promise<{ digest: string; unchanged: boolean }> {
  const sourceRepo = `${request.registryProject}/${request.source.repoPath}`;
  const targetRepo = `${request.registryProject}/${request.target.repoPath}`;
  const separator = isDigest(request.source.ref) ? "@" : ":";
  const sourceRef = `${request.registry}/${sourceRepo}${separator}${request.source.ref}`;
  const targetRef = `${request.registry}/${targetRepo}:${request.target.ref}`;

  if (engines.engine === "docker") {
    if (!engines.docker) throw new Error("retag --engine docker needs a Docker engine");
    const { engine, auth } = engines.docker;
    steps.step(1, 3, `Pulling ${sourceRef} ...`);
    await engine.ping();
    await engine.pullImage(sourceRef, auth, { signal: ctx.signal });
    steps.step(2, 3, `Tagging it as ${targetRef} ...`);
    await engine.tagImage(sourceRef, `${request.registry}/${targetRepo}`, request.target.ref);
    steps.step(3, 3, `Pushing ${targetRef} ...`);
    const pushed = await engine.pushImage(targetRef, auth, { signal: ctx.signal });
    steps.text(`Retagged ${sourceRef} as ${targetRef} (${pushed.digest}).`);
    return { digest: pushed.digest, unchanged: false };
  }

  steps.step(1, 1, `Copying the manifest of ${sourceRef} to ${targetRef} ...`);
  const result = await retag({
    client: engines.registryClient,
    sourceRepo,
    sourceRef: request.source.ref,
    targetRepo,
    targetTag: request.target.ref,
    logger: ctx.logger,
    signal: ctx.signal,
  });
  if (result.unchanged) {
    steps.text(`${targetRef} already points at ${result.digest}; nothing to do.`);
  } else {
    const moved =
      result.mountedBlobs || result.copiedBlobs
        ? ` (${result.mountedBlobs} blob(s) mounted, ${result.copiedBlobs} copied)`
        : "";
    steps.text(`Retagged ${sourceRef} as ${targetRef} (${result.digest})${moved}.`);
  }
  return { digest: result.digest, unchanged: result.unchanged };
}
