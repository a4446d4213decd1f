import { pickMetadata, type RunMetadata } from "../domain/metadata.js";
import { parseGitlabTag } from "../domain/images.js";
import { provenanceAnnotations, type Annotations } from "../domain/provenance.js";
import type { Logger } from "../report/logger.js";
import { parseJsonFile } from "../util/files.js";
import { metadataFileSchema, type MetadataFile } from "../workspace/layout.js";

/** The provenance annotations of each image of a build, by GitLab tag. */
export type ProvenanceOf = (gitlabTag: string) => Annotations | undefined;

function text(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** What metadata.json says of the build: its block, run id and the run's page. */
export function provenanceFrom(metadata: MetadataFile): ProvenanceOf {
  const info = metadata._run_info ?? {};
  return provenanceOf(
    pickMetadata(metadata),
    metadata.run_id ?? metadata._run_id ?? null,
    text(info.htmlUrl) ?? text(info.url) ?? null,
  );
}

function provenanceOf(
  block: RunMetadata,
  runId: number | null,
  runUrl: string | null,
): ProvenanceOf {
  return (gitlabTag) => {
    const tag = parseGitlabTag(gitlabTag)?.tag;
    if (!tag) return undefined;
    const annotations = provenanceAnnotations({ metadata: block, gitlabTag: tag, runId, runUrl });
    return Object.keys(annotations).length > 0 ? annotations : undefined;
  };
}

/**
 * The provenance recorded beside a tag's downloads. Without a readable metadata.json the images
 * still go up, without annotations (a warning says so): provenance must not block a push.
 */
export async function readProvenance(metadataPath: string, logger: Logger): Promise<ProvenanceOf> {
  const result = await parseJsonFile(metadataPath, metadataFileSchema);
  if (result.ok) return provenanceFrom(result.value);
  logger.warn(
    { file: metadataPath },
    `${metadataPath} ${result.problem}: the images are pushed without provenance annotations`,
  );
  return () => undefined;
}

/** The provenance of a build as xref knows it (the daemon's repairs have no metadata.json). */
export function provenanceOfRun(
  metadata: RunMetadata,
  run: { id: number; htmlUrl?: string },
): ProvenanceOf {
  return provenanceOf(metadata, run.id, run.htmlUrl ?? null);
}
