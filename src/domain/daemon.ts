/** What one daemon cycle did: logged by the daemon, served by the health endpoint and metrics. */
export interface CycleSummary {
  cycle: number;
  /**
   * "ok": every missing image synced (or none missing); "partial": some images failed (or are
   * backing off); "failed": the cycle itself failed (xref); "stopped": a signal ended it early.
   */
  result: "ok" | "partial" | "failed" | "stopped";
  startedAt: string;
  seconds: number;
  runs: number;
  missing: number;
  pushed: number;
  /** Image tags synced this cycle. */
  synced: number;
  failed: number;
  deferred: number;
  downloadedBytes: number;
  uploadedBytes: number;
  /** Layers referenced thanks to what the registry taught (registry/layer-learning.ts), not sent. */
  layersFromRegistry: number;
  logBytes: number;
  error?: string;
  /** The image tags that failed this cycle or are backing off after earlier failures. */
  failedTags?: string[];
  /** The daemon's latest publish, this cycle or an earlier one. */
  lastPublish?: Published;
  /** GitHub's rate limit left, as its last answer said. */
  githubRateLimitRemaining?: number;
}

/** An image tag published: how long after its run finished its last manifest went up. */
export interface Published {
  imageTag: string;
  runId: number;
  /** From the run's completion (its `updated_at`) to the image tag's last manifest pushed. */
  lagSeconds: number;
  /** When the last manifest was pushed (ISO 8601). */
  at: string;
}
