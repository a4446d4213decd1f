import { SyncError } from "../errors.js";
import type { GithubClient } from "./client.js";
import { GithubError } from "./errors.js";
import { redirectLocation } from "./redirect.js";
import { parseRepo } from "./runs.js";

export interface RunArtifact {
  id: number;
  name: string;
  size_in_bytes: number;
  archive_download_url: string;
  expired: boolean;
  created_at: string | null;
  expires_at: string | null;
  /** `sha256:<hex>` of the zip, when GitHub reports one. */
  digest?: string | null;
}

export interface RunArtifactsRequest {
  repo: string;
  runId: number;
}

export async function listRunArtifacts(
  client: GithubClient,
  { repo, runId }: RunArtifactsRequest,
): Promise<RunArtifact[]> {
  const { owner, repo: name } = parseRepo(repo);
  const artifacts = await client.paginate(
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts",
    { owner, repo: name, run_id: runId, per_page: 100 },
  );
  return artifacts.map((a) => ({
    ...a,
    digest: (a as { digest?: string | null }).digest ?? null,
  }));
}

/** The workflow names its images artifact `presto-images-<run_id>`; else take the only one there is. */
export function chooseArtifact(
  artifacts: RunArtifact[],
  runId: number,
  wanted?: string,
): RunArtifact {
  const names = artifacts.map((a) => a.name).join(", ");
  let chosen: RunArtifact | undefined;
  if (wanted) {
    chosen = artifacts.find((a) => a.name === wanted);
    if (!chosen) {
      throw new SyncError(`run ${runId} has no artifact named '${wanted}'`, {
        hint: artifacts.length ? `it has: ${names}` : "the run uploaded no artifacts",
      });
    }
  } else {
    chosen = artifacts.find((a) => a.name === `presto-images-${runId}`);
    if (!chosen && artifacts.length === 1) chosen = artifacts[0];
    if (!chosen) {
      if (artifacts.length === 0) {
        throw new SyncError(`No artifacts found for run ${runId}`, {
          hint: "the run uploaded no images (was it built with registry push only?)",
        });
      }
      throw new SyncError(
        `run ${runId} has ${artifacts.length} artifacts and none is presto-images-${runId}`,
        {
          hint: `choose one with --artifact-name (${names})`,
        },
      );
    }
  }
  if (chosen.expired) {
    throw new SyncError(
      `artifact '${chosen.name}' of run ${runId} has expired${chosen.expires_at ? ` (on ${chosen.expires_at})` : ""}`,
      { hint: "GitHub no longer has the images; re-run the build workflow to produce them again" },
    );
  }
  return chosen;
}

export interface ArtifactRequest {
  repo: string;
  artifactId: number;
  /** The run whose listing named the artifact, for the message when it is gone. */
  runId: number;
}

/**
 * The artifact the run's listing named a moment ago is no longer there: deleted (by hand or by
 * retention) or expired since. Not a wrong --repo: the same repository just listed it.
 */
export function artifactGone(runId: number, cause?: unknown): SyncError {
  return new SyncError(`the artifact of run ${runId} is gone; GitHub deleted or expired it`, {
    hint: "re-run the build workflow to produce the images again",
    cause,
  });
}

/** GitHub's answers for an artifact, or a download address, that no longer exists. */
function isGoneStatus(status: number | undefined): boolean {
  return status === 404 || status === 410;
}

/** A fresh pre-signed download address for each attempt; the token goes only to the API. */
export function artifactUrlResolver(
  client: GithubClient,
  { repo, artifactId, runId }: ArtifactRequest,
): () => Promise<string> {
  const ref = parseRepo(repo);
  return () =>
    redirectLocation(client, "GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}/zip", {
      ...ref,
      artifact_id: artifactId,
    }).catch((err: unknown) => {
      throw err instanceof GithubError && isGoneStatus(err.status) ? artifactGone(runId, err) : err;
    });
}
