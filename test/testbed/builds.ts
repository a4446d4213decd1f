/**
 * The builds the end-to-end tests make, and what they read back from the registry's access log:
 * written once here instead of in each test file.
 */
import type { RunMetadata } from "../../src/domain/metadata.js";
import type { AccessLogEntry } from "./registry.js";
import { makeMetadata, type BundleMode, type WorkerVariant } from "./run-fixtures.js";
import { ref } from "./scenario.js";

export interface BuildSpec {
  id: number;
  platform?: string;
  mode?: BundleMode;
  variant?: WorkerVariant;
}

/**
 * A build's metadata, its Presto and Velox refs named after the test file's `family` and the
 * build's id (`push-4001`, `push-v-4001`), so every file's builds have tags of their own.
 */
export function metadataOf(family: string, b: BuildSpec): RunMetadata {
  return makeMetadata({
    prestoRef: ref(`${family}-${b.id}`),
    veloxRef: ref(`${family}-v-${b.id}`),
    platform: b.platform ?? "linux/amd64",
    mode: b.mode ?? "all_native",
    ...(b.variant ? { workerVariant: b.variant } : {}),
  });
}

/** The build's image tag, `presto-<sha>-velox-<sha>-linux-amd64`. */
export const tagOf = (metadata: RunMetadata): string => metadata["Image tag"] ?? "";

/** The tag GitLab gets, without the platform suffix. */
export const gitlabTagOf = (metadata: RunMetadata): string =>
  tagOf(metadata).replace(/-linux-(amd64|arm64)$/, "");

/**
 * Blob bytes that reached the registry: a blob upload is committed by a PUT naming its digest
 * (only those naming `digest`, when given).
 */
export function blobCommits(log: AccessLogEntry[], digest?: string): AccessLogEntry[] {
  return log.filter((e) => {
    if (e.method !== "PUT") return false;
    const path = decodeURIComponent(e.path);
    return path.includes(`digest=${digest ?? "sha256:"}`);
  });
}

/** Manifest PUTs into the repository `<project>/x86/<repo>`. */
export const manifestPuts = (log: AccessLogEntry[], repo: string): AccessLogEntry[] =>
  log.filter((e) => e.method === "PUT" && e.path.includes(`/x86/${repo}/manifests/`));
