import type { RunMetadata } from "./metadata.js";
import { TAG_GRAMMAR, isRepositoryPath, isTag, parseReference } from "./reference.js";

/**
 * The images a build makes and the names they take in GitLab (SPEC §1.6): which repositories a
 * run's metadata promises, and how a GitHub image tag becomes `x86/<repo>:<tag>`.
 */

/**
 * The GitHub image tag (`presto-<presto12>-velox-<velox12>-linux-amd64`) names a download
 * directory and, without its platform suffix, a GitLab tag, so it must be a valid Docker tag:
 * this refuses `../../etc`, `a/b` and friends before anything touches the disk.
 */
export function isImageTag(value: string): boolean {
  return isTag(value);
}

export const IMAGE_TAG_GRAMMAR = TAG_GRAMMAR;

/** The image repositories the workflow can build, in the order the original lists them. */
export const IMAGE_REPOS = [
  "presto-coordinator",
  "presto-java-worker",
  "presto-native-worker-cpu",
  "presto-native-worker-gpu",
] as const;
export type ImageRepo = (typeof IMAGE_REPOS)[number];

export type Arch = "x86" | "arm" | "";

export interface ExpectedImage {
  /** `x86/presto-coordinator:presto-A-velox-B`, the form xref prints and upload-plan.json stores. */
  gitlabTag: string;
  /** Path below the GitLab project: `x86/presto-coordinator`. */
  repoPath: string;
  /** Tag in GitLab: the image tag without its platform suffix. */
  tag: string;
  arch: Arch;
  /** The build's `Target platform` (`linux/arm64`), which the image's config must match. */
  platform: string | undefined;
  repo: ImageRepo;
  /** The GitHub image tag the image was built under: `presto-A-velox-B-linux-amd64`. */
  imageTag: string;
  /** The tarball name inside the artifact: `<repo>-<image tag>.tar.gz`. */
  tarball: string;
}

export function archForPlatform(platform: string | undefined): Arch {
  const p = (platform ?? "").toLowerCase();
  if (p.includes("arm")) return "arm";
  if (p.includes("amd") || p.includes("x86")) return "x86";
  return "";
}

/** The platform suffix the workflow appends: `linux/amd64` → `-linux-amd64` (lowercase, as it does). */
export function platformSuffix(platform: string | undefined): string {
  return platform ? `-${platform.toLowerCase().replace(/\//g, "-")}` : "";
}

/**
 * GitHub image tag → GitLab tag: the architecture moves into the path, so the suffix goes. The
 * suffix is matched without regard to case, as the original does (`Linux/ARM64` still strips
 * `-linux-arm64`); only the suffix goes, so a ref cut to a trailing dash keeps it:
 * `presto-main--velox-v1.2--linux-arm64` → `presto-main--velox-v1.2-`.
 */
export function gitlabTagName(imageTag: string, platform: string | undefined): string {
  const suffix = platformSuffix(platform);
  return suffix && imageTag.toLowerCase().endsWith(suffix)
    ? imageTag.slice(0, -suffix.length)
    : imageTag;
}

function isTrue(value: string | undefined): boolean {
  return (value ?? "").trim().toLowerCase() === "true";
}

export function builtRepos(metadata: RunMetadata): ImageRepo[] {
  const repos: ImageRepo[] = ["presto-coordinator"];
  if (isTrue(metadata["Build Java worker"])) repos.push("presto-java-worker");
  if (isTrue(metadata["Build native CPU"])) repos.push("presto-native-worker-cpu");
  if (isTrue(metadata["Build native GPU"])) repos.push("presto-native-worker-gpu");
  return repos;
}

/**
 * SPEC §1.6: the GitLab images one run's metadata promises; none when the block has no image tag,
 * or one outside the tag grammar (a log is outside input: `../../etc/x` names nothing to mirror).
 */
export function expectedImages(metadata: RunMetadata): ExpectedImage[] {
  const imageTag = metadata["Image tag"];
  if (!imageTag || !isImageTag(imageTag)) return [];
  const platform = metadata["Target platform"];
  const arch = archForPlatform(platform);
  const tag = gitlabTagName(imageTag, platform);
  return builtRepos(metadata).map((repo) => {
    const repoPath = arch ? `${arch}/${repo}` : repo;
    return {
      gitlabTag: `${repoPath}:${tag}`,
      repoPath,
      tag,
      arch,
      platform,
      repo,
      imageTag,
      tarball: `${repo}-${imageTag}.tar.gz`,
    };
  });
}

/** The image tag a block names when it is outside the grammar: reported, never mirrored. */
export function invalidImageTag(metadata: RunMetadata | undefined): string | undefined {
  const imageTag = metadata?.["Image tag"];
  return imageTag !== undefined && imageTag !== "" && !isImageTag(imageTag) ? imageTag : undefined;
}

export interface ParsedGitlabTag {
  repoPath: string;
  tag: string;
  arch: Arch;
  repo: string;
}

/** Reverse lookup: `x86/presto-coordinator:presto-A-velox-B` → its parts; undefined if malformed. */
export function parseGitlabTag(gitlabTag: string): ParsedGitlabTag | undefined {
  const ref = parseReference(gitlabTag, { relative: true });
  if (!ref?.tag || ref.digest || !isRepositoryPath(ref.repository)) return undefined;
  const repoPath = ref.repository;
  const tag = ref.tag;
  const slash = repoPath.indexOf("/");
  const head = slash === -1 ? "" : repoPath.slice(0, slash);
  const arch: Arch = head === "x86" || head === "arm" ? head : "";
  const repo = arch ? repoPath.slice(slash + 1) : repoPath;
  return { repoPath, tag, arch, repo };
}

/**
 * Whether a build is of `platform` (`linux/amd64`), compared as the workflow's suffix is, without
 * regard to case; undefined when the block does not say (no metadata, or no `Target platform`).
 */
export function isBuildOf(
  metadata: RunMetadata | undefined,
  platform: string,
): boolean | undefined {
  const own = metadata?.["Target platform"]?.trim().toLowerCase();
  return own ? own === platform.trim().toLowerCase() : undefined;
}

/** The architecture prefixes a multi-architecture index gathers: one build each. */
export const INDEXED_ARCHES = ["x86", "arm"] as const;

/**
 * The multi-architecture tag of a GitLab tag: the same path without its `x86/` or `arm/` part
 * (`x86/presto-coordinator:t` → `presto-coordinator:t`); undefined for a tag with no such prefix.
 */
export function multiarchTagOf(gitlabTag: string): ParsedGitlabTag | undefined {
  const parsed = parseGitlabTag(gitlabTag);
  if (!parsed || !parsed.arch) return undefined;
  return { repoPath: parsed.repo, tag: parsed.tag, arch: "", repo: parsed.repo };
}
