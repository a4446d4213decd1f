/** What one daemon cycle did: logged by the daemon, served by the health endpoint and metrics. */
export interface CycleSummary {
  cycle: number;
  /** "ok": every missing image synced (or none missing); "partial": some images failed; "failed": the cycle itself failed (xref). */
  result: "ok" | "partial" | "failed";
  startedAt: string;
  seconds: number;
  runs: number;
  missing: number;
  pushed: number;
  failed: number;
  deferred: number;
  downloadedBytes: number;
  uploadedBytes: number;
  logBytes: number;
  error?: string;
}
