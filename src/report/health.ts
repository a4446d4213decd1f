/**
 * What the daemon tells a monitor: `GET /healthz` (the last cycle's time and result, as JSON) and
 * `GET /metrics` (Prometheus text, through prom-client). Served only with --health-port.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type * as Prom from "prom-client";
import { lazyRequire } from "../lazy.js";
import type { CycleSummary, Published } from "../domain/daemon.js";
import type { GithubApiTally } from "../github/client.js";
import { SyncError, UsageError } from "../errors.js";
import type { Logger } from "./logger.js";

const PREFIX = "gh_gitlab_sync_";

/** Publish lag buckets (seconds): the poll's half-minute steps up to the full cycle's quarter hour and past it. */
const LAG_BUCKETS = [5, 10, 15, 30, 45, 60, 90, 120, 300, 600, 900, 1800, 3600, 7200];
const prom = lazyRequire<typeof Prom>("prom-client");

export class DaemonHealth {
  readonly registry: Prom.Registry = new (prom().Registry)();
  private last: CycleSummary | undefined;
  /** Download bytes already counted by {@link downloading} since the last cycle's record. */
  private countedThisCycle = 0;
  private readonly startedAt = new Date().toISOString();
  private readonly cycles = new (prom().Counter)({
    name: `${PREFIX}cycles_total`,
    help: "Sync cycles run, by result",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  private readonly pushed = new (prom().Counter)({
    name: `${PREFIX}images_pushed_total`,
    help: "Image tags pushed to the registry",
    registers: [this.registry],
  });
  private readonly failures = new (prom().Counter)({
    name: `${PREFIX}image_failures_total`,
    help: "Image tags whose download, prepare or push failed",
    registers: [this.registry],
  });
  private readonly downloaded = new (prom().Counter)({
    name: `${PREFIX}downloaded_bytes_total`,
    help: "Artifact bytes downloaded from GitHub (counted as they arrive)",
    registers: [this.registry],
  });
  private readonly uploaded = new (prom().Counter)({
    name: `${PREFIX}uploaded_bytes_total`,
    help: "Compressed blob bytes uploaded by the registry engine",
    registers: [this.registry],
  });
  private readonly missing = new (prom().Gauge)({
    name: `${PREFIX}missing_images`,
    help: "Image tags GitLab still lacks after the last cycle",
    registers: [this.registry],
  });
  private readonly lastCycle = new (prom().Gauge)({
    name: `${PREFIX}last_cycle_timestamp_seconds`,
    help: "When the last cycle ended (Unix time)",
    registers: [this.registry],
  });
  private readonly lastDuration = new (prom().Gauge)({
    name: `${PREFIX}last_cycle_duration_seconds`,
    help: "How long the last cycle took",
    registers: [this.registry],
  });

  private readonly publishLag = new (prom().Histogram)({
    name: `${PREFIX}publish_lag_seconds`,
    help: "From a run's completion to the last manifest of its image tag published",
    buckets: LAG_BUCKETS,
    registers: [this.registry],
  });
  private readonly githubRequests = new (prom().Counter)({
    name: `${PREFIX}github_requests_total`,
    help: "GitHub API requests, by answer (200, 304: free, 4xx, 5xx, error: none came)",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  private tally: GithubApiTally | undefined;

  constructor() {
    prom().collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    const remaining = () => this.tally?.rateLimit?.remaining;
    new (prom().Gauge)({
      name: `${PREFIX}github_rate_limit_remaining`,
      help: "GitHub API requests left in the rate limit's window, as its last answer said",
      registers: [this.registry],
      // Read when scraped: the client's tally always has the last answer's headers.
      collect() {
        const left = remaining();
        if (left !== undefined) this.set(left);
      },
    });
  }

  /** Counts every GitHub API answer of this client from now on, and serves its rate limit. */
  watchGithub(tally: GithubApiTally): void {
    this.tally = tally;
    for (const [result, count] of tally.results) this.githubRequests.inc({ result }, count);
    tally.onResult((result) => this.githubRequests.inc({ result }));
  }

  published(publish: Published): void {
    this.publishLag.observe(publish.lagSeconds);
  }

  /** Bytes a download fetched, counted as they arrive rather than when the cycle ends. */
  downloading(bytes: number): void {
    if (bytes <= 0) return;
    this.downloaded.inc(bytes);
    this.countedThisCycle += bytes;
  }

  record(summary: CycleSummary): void {
    this.last = summary;
    this.cycles.inc({ result: summary.result });
    this.pushed.inc(summary.pushed);
    this.failures.inc(summary.failed);
    // What the cycle downloaded and was not told of as it came (the step-by-step path).
    this.downloaded.inc(Math.max(0, summary.downloadedBytes - this.countedThisCycle));
    this.countedThisCycle = 0;
    this.uploaded.inc(summary.uploadedBytes);
    // What is still missing once the cycle is over, not what it set out to sync; a cycle whose
    // cross-reference failed found nothing, and leaves the last count standing.
    if (summary.result !== "failed" || summary.missing > 0) {
      this.missing.set(Math.max(0, summary.missing - summary.synced));
    }
    this.lastCycle.set(Date.now() / 1000);
    this.lastDuration.set(summary.seconds);
  }

  /**
   * The last cycle's failures, told: 503 "failing" when the cycle failed as a whole (GitHub or
   * GitLab unreachable) or when images failed and none synced; 200 "degraded" when some synced
   * and others failed (or are backing off); 503 "stopping" after a signal; else 200 "ok".
   */
  status(): { code: number; body: Record<string, unknown> } {
    const status = healthOf(this.last);
    return {
      code: status === "ok" || status === "degraded" || status === "starting" ? 200 : 503,
      body: { status, since: this.startedAt, lastCycle: this.last ?? null },
    };
  }
}

function healthOf(last: CycleSummary | undefined): string {
  if (!last) return "starting";
  if (last.result === "failed") return "failing";
  if (last.result === "stopped") return "stopping";
  if (last.failed + last.deferred === 0) return "ok";
  return last.synced > 0 ? "degraded" : "failing";
}

/** `port` or `host:port`; the default host is loopback, so metrics are not exposed by accident. */
export function parseHealthAddress(value: string): { host: string; port: number } {
  const match = /^(?:(.+):)?(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new UsageError(
      `--health-port '${value}' is not a port or host:port`,
      "e.g. --health-port 9464 or --health-port 0.0.0.0:9464",
    );
  }
  return { host: match[1]?.replace(/^\[|\]$/g, "") ?? "127.0.0.1", port };
}

export async function startHealthServer(
  health: DaemonHealth,
  address: { host: string; port: number },
  logger: Logger,
): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const url = req.url?.split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (url === "/healthz") {
      const { code, body } = health.status();
      res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(body));
      return;
    }
    if (url === "/metrics") {
      health.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": health.registry.contentType }).end(text),
        (err: unknown) => {
          logger.warn({ err }, "cannot render metrics");
          res.writeHead(500).end();
        },
      );
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("try /healthz or /metrics\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new SyncError(
          `cannot serve health on ${address.host}:${address.port} (${err.code ?? err.message})`,
          { hint: "pick a free --health-port", cause: err },
        ),
      ),
    );
    server.listen(address.port, address.host, resolve);
  });
  const bound = server.address() as AddressInfo;
  const host = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
  const url = `http://${host}:${bound.port}`;
  logger.info({ url }, `health and metrics on ${url}/healthz and ${url}/metrics`);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
