import type { RunMetadata } from "./metadata.js";

/**
 * Provenance as OCI annotations (image-spec `annotations.md`): which run built an image, from
 * which refs, when. The registry engine puts them on every image manifest it writes and the
 * multi-architecture index carries them too; the image config (the image ID) is never touched.
 */
export const ANNOTATION = {
  created: "org.opencontainers.image.created",
  source: "org.opencontainers.image.source",
  revision: "org.opencontainers.image.revision",
  version: "org.opencontainers.image.version",
  url: "org.opencontainers.image.url",
  description: "org.opencontainers.image.description",
} as const;

export type Annotations = Record<string, string>;

export interface ProvenanceInput {
  /** The build's metadata block, as metadata.json records it. */
  metadata: RunMetadata;
  /** The tag in GitLab: `presto-<presto12>-velox-<velox12>`. */
  gitlabTag: string;
  runId?: number | null;
  /** The run's page on GitHub (`html_url`). */
  runUrl?: string | null;
}

const OWNER_REPO = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;
/** RFC 3339, as `date -u +%Y-%m-%dT%H:%M:%SZ` prints it (fractions and offsets allowed). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function value(text: string | null | undefined): string | undefined {
  const trimmed = text?.trim();
  return trimmed ? trimmed : undefined;
}

/**
 * The annotations of one build's images. A value the block lacks (or that is not what its key
 * promises, such as a `Generated at` that is no timestamp) is left out rather than guessed.
 */
export function provenanceAnnotations(input: ProvenanceInput): Annotations {
  const m = input.metadata;
  const out: Annotations = {};
  const created = value(m["Generated at"]);
  if (created && RFC3339.test(created) && !Number.isNaN(Date.parse(created))) {
    out[ANNOTATION.created] = created;
  }
  const presto = value(m["Presto repository"]);
  if (presto && OWNER_REPO.test(presto)) out[ANNOTATION.source] = `https://github.com/${presto}`;
  const revision = value(m["Presto ref"]);
  if (revision) out[ANNOTATION.revision] = revision;
  const version = value(input.gitlabTag);
  if (version) out[ANNOTATION.version] = version;
  const url = value(input.runUrl);
  if (url && /^https?:\/\//.test(url)) out[ANNOTATION.url] = url;
  const description = describeBuild(m, input.runId);
  if (description) out[ANNOTATION.description] = description;
  return out;
}

/** `Velox rapidsai/velox@65797d…, platform linux/amd64, bundle all_native, run 1234`. */
function describeBuild(m: RunMetadata, runId: number | null | undefined): string | undefined {
  const parts: string[] = [];
  const veloxRepo = value(m["Velox repository"]);
  const veloxRef = value(m["Velox ref"]);
  if (veloxRepo || veloxRef) parts.push(`Velox ${veloxRepo ?? "?"}@${veloxRef ?? "?"}`);
  const platform = value(m["Target platform"]);
  if (platform) parts.push(`platform ${platform}`);
  const mode = value(m["Worker bundle mode"]);
  if (mode) parts.push(`bundle ${mode}`);
  if (typeof runId === "number") parts.push(`run ${runId}`);
  return parts.length > 0 ? parts.join(", ") : undefined;
}

/**
 * The annotations of an index over several builds (one per platform): what they agree on; the
 * newest `created`; the descriptions side by side, in the entries' order. A run's address differs
 * from build to build, so it stays on each entry (and each image) alone.
 */
export function indexAnnotations(
  entries: ReadonlyArray<{ annotations?: Annotations | undefined }>,
): Annotations {
  const annotated = entries.filter((e) => e.annotations && Object.keys(e.annotations).length > 0);
  if (annotated.length === 0) return {};
  const keys = new Set(annotated.flatMap((e) => Object.keys(e.annotations ?? {})));
  const out: Annotations = {};
  for (const key of [...keys].sort()) {
    const values = annotated.map((e) => e.annotations?.[key]);
    const distinct = [...new Set(values.filter((v): v is string => v !== undefined))];
    if (distinct.length === 0) continue;
    if (key === ANNOTATION.created) {
      out[key] = distinct.reduce((a, b) => (Date.parse(b) > Date.parse(a) ? b : a));
    } else if (key === ANNOTATION.description) {
      // Each build's description names its platform, so side by side they still read apart.
      out[key] = distinct.join("; ");
    } else if (distinct.length === 1 && values.every((v) => v !== undefined)) {
      out[key] = distinct[0] as string;
    }
  }
  return out;
}
