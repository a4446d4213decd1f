/**
 * A stand-in for the GitHub REST API (SPEC §1.3) on 127.0.0.1, with a second server playing
 * the blob host that logs and artifacts redirect to. Both log every request and can be told
 * to misbehave (status codes, rate limits, cut or slow bodies, expired signed URLs).
 *
 * Like GitHub, every JSON answer carries a weak `ETag`; a request whose `If-None-Match` names it
 * gets `304 Not Modified` with no body, and is not charged to the rate limit (GitHub's "best
 * practices for using the REST API"). Each request is recorded as charged or not, so tests can
 * count what a client really spends.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import type http from "node:http";
import type { WorkflowRun } from "../../src/github/runs.js";
import {
  type ByteSource,
  listenOnFreePort,
  parseRange,
  sendJson,
  sizeOf,
  sleep,
  streamBody,
  type ListeningServer,
} from "./http-util.js";

export interface FixtureStep {
  name: string;
  number: number;
  status?: string;
  conclusion?: string | null;
}

export interface FixtureJob {
  id: number;
  name: string;
  status: string;
  conclusion: string | null;
  steps: FixtureStep[];
  log: ByteSource;
}

export interface FixtureArtifact {
  id: number;
  name: string;
  /** The zip itself, in memory or as a path to a file. */
  bytes: ByteSource;
  expired?: boolean;
  /** `sha256:<hex>` of the zip, when GitHub would report one. */
  digest?: string;
  createdAt?: string;
  expiresAt?: string;
}

export interface FixtureRun {
  repo: string;
  /** The workflow file's base name. */
  workflow: string;
  run: WorkflowRun;
  jobs: FixtureJob[];
  /** The run-log zip; absent → the logs endpoint answers 404. */
  logsZip?: ByteSource;
  artifacts?: FixtureArtifact[];
}

export interface RequestRecord {
  host: "api" | "blob";
  method: string;
  path: string;
  query: string;
  status: number;
  /** Body bytes written so far (grows while a download is under way). */
  bytesSent: number;
  range?: string;
  authorization: boolean;
  /** The address the request came from: a proxy's outgoing address, or the client's own. */
  peer: string;
  /** Counted against the rate limit: every API answer but a 304 to a conditional request. */
  charged: boolean;
  /** The request's `If-None-Match`, verbatim. */
  ifNoneMatch?: string;
}

export interface Fault {
  /** Matched against the request path (a string matches as a substring). */
  match: string | RegExp;
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** How many requests this fault hits (default 1; Infinity for all). */
  times?: number;
  /** Serve the normal answer but drop the connection after this many body bytes. */
  cutAfterBytes?: number;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Pace the normal body at this rate. */
  bytesPerSecond?: number;
  /** Only on this server. */
  host?: "api" | "blob";
}

export interface GithubStandInOptions {
  token: string;
  /** Repositories and workflows that exist even without runs (so listing them gives []). */
  workflows?: Array<{ repo: string; workflow: string }>;
  /** Lifetime of the signed blob URLs handed out in redirects. */
  signedUrlTtlMs?: number;
  /** The blob host's link speed: every body it sends is paced at this rate (bytes per second). */
  blobBytesPerSecond?: number;
}

export interface GithubStandIn {
  /** API base URL (what --github-api-url takes). */
  url: string;
  blobUrl: string;
  token: string;
  requests: RequestRecord[];
  addRun(run: FixtureRun): void;
  removeRun(runId: number): void;
  resetRequests(): void;
  injectFault(fault: Fault): void;
  clearFaults(): void;
  /** Every signed URL handed out so far stops working, as GitHub's do after a few minutes. */
  expireSignedUrls(): void;
  /** Limits the blob host to this many bytes per second from now on (undefined: unlimited). */
  limitBlobRate(bytesPerSecond: number | undefined): void;
  /**
   * The artifact is deleted (by hand or by retention) right after GitHub next lists it
   * (`"listed"`: its zip address answers 404), or right after it next hands out its download
   * address (`"redirected"`: the blob host answers 404 BlobNotFound).
   */
  deleteArtifactAfter(artifactId: number, when: "listed" | "redirected"): void;
  /** Changes a run in place, as GitHub does when it finishes (status, conclusion, updated_at). */
  updateRun(runId: number, changes: Partial<WorkflowRun>): void;
  /**
   * Adds `run` right after the runs listing's page `page` has been answered (once): a run that
   * starts while a client pages through the listing, shifting every later page by one.
   */
  insertRunAfterPage(page: number, run: FixtureRun): void;
  /** Sends `x-poll-interval` (seconds) with every runs listing from now on (undefined: none). */
  setPollInterval(seconds: number | undefined): void;
  /** API requests charged to the rate limit, and those answered 304 for free, since the last reset. */
  counts(): { charged: number; free: number };
  close(): Promise<void>;
}

const RATE_LIMIT = 5000;

interface BlobTarget {
  source: ByteSource;
  contentType: string;
}

class StandIn {
  readonly runs = new Map<number, FixtureRun>();
  readonly workflows = new Set<string>();
  readonly requests: RequestRecord[] = [];
  faults: Array<Fault & { remaining: number }> = [];
  private readonly secret = randomBytes(16);
  private signingEpoch = 0;
  blobRate: number | undefined;
  /** Artifacts to delete once listed or once their download address is handed out. */
  readonly deleting = new Map<number, "listed" | "redirected">();
  pollInterval: number | undefined;
  /** Runs to add once a runs listing's page (the key) has been answered. */
  readonly afterPage = new Map<number, FixtureRun>();
  private used = 0;
  api!: ListeningServer;
  blob!: ListeningServer;

  constructor(readonly options: GithubStandInOptions) {
    this.blobRate = options.blobBytesPerSecond;
    for (const { repo, workflow } of options.workflows ?? [
      { repo: "rapidsai/velox-testing", workflow: "presto-build-images.yml" },
    ]) {
      this.workflows.add(`${repo}|${workflow}`);
    }
  }

  takeFault(host: "api" | "blob", path: string): Fault | undefined {
    const index = this.faults.findIndex(
      (fault) =>
        fault.remaining > 0 &&
        (fault.host === undefined || fault.host === host) &&
        (typeof fault.match === "string" ? path.includes(fault.match) : fault.match.test(path)),
    );
    if (index < 0) return undefined;
    const fault = this.faults[index] as Fault & { remaining: number };
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.faults.splice(index, 1);
    return fault;
  }

  rateLimitHeaders(charged = true): Record<string, string> {
    if (charged) this.used += 1;
    return {
      "x-ratelimit-limit": String(RATE_LIMIT),
      "x-ratelimit-remaining": String(Math.max(0, RATE_LIMIT - this.used)),
      "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 3600),
      "x-ratelimit-used": String(this.used),
      "x-ratelimit-resource": "core",
    };
  }

  sign(path: string): string {
    const expires = Date.now() + (this.options.signedUrlTtlMs ?? 5 * 60_000);
    const sig = this.signature(path, expires, this.signingEpoch);
    return `${this.blob.url}${path}?se=${expires}&sp=r&sv=2025-01-05&ep=${this.signingEpoch}&sig=${sig}`;
  }

  signature(path: string, expires: number, epoch: number): string {
    return createHmac("sha256", this.secret)
      .update(`${path}|${expires}|${epoch}`)
      .digest("base64url");
  }

  verify(path: string, query: URLSearchParams): boolean {
    const expires = Number(query.get("se"));
    const epoch = Number(query.get("ep"));
    const sig = query.get("sig") ?? "";
    if (!Number.isFinite(expires) || expires < Date.now() || epoch !== this.signingEpoch)
      return false;
    return sig === this.signature(path, expires, epoch);
  }

  expireSignedUrls(): void {
    this.signingEpoch += 1;
  }

  record(host: "api" | "blob", req: http.IncomingMessage, url: URL): RequestRecord {
    const entry: RequestRecord = {
      host,
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.search,
      status: 0,
      bytesSent: 0,
      authorization: req.headers.authorization !== undefined,
      peer: req.socket.remoteAddress ?? "",
      charged: host === "api",
    };
    const conditional = req.headers["if-none-match"];
    if (host === "api" && conditional !== undefined) entry.ifNoneMatch = conditional;
    const range = req.headers.range;
    if (range) entry.range = range;
    this.requests.push(entry);
    return entry;
  }

  /** Answers a matching fault that replaces the response; returns the rest for the body. */
  async applyFault(
    host: "api" | "blob",
    path: string,
    res: http.ServerResponse,
    entry: RequestRecord,
  ): Promise<Fault | undefined> {
    const fault = this.takeFault(host, path);
    if (!fault) return undefined;
    if (fault.delayMs) await sleep(fault.delayMs);
    if (fault.status === undefined) return fault;
    const body = fault.body ?? JSON.stringify({ message: defaultMessage(fault.status) });
    const headers: Record<string, string> = {
      ...(host === "api" ? this.rateLimitHeaders() : {}),
      "content-type": body.startsWith("{") ? "application/json; charset=utf-8" : "text/plain",
      "content-length": String(Buffer.byteLength(body)),
      ...fault.headers,
    };
    entry.status = fault.status;
    entry.bytesSent = Buffer.byteLength(body);
    res.writeHead(fault.status, headers);
    res.end(body);
    return { ...fault, status: fault.status };
  }

  async handleApi(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.api.url);
    const entry = this.record("api", req, url);
    const fault = await this.applyFault("api", url.pathname, res, entry);
    if (fault?.status !== undefined) return;

    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      entry.status = status;
      entry.bytesSent = sendJson(res, status, body, { ...this.rateLimitHeaders(), ...headers });
    };
    // GitHub's validator: a weak ETag of the representation; a match costs nothing.
    const tagged = (body: unknown, headers: Record<string, string> = {}) => {
      const etag = `W/"${createHash("sha256").update(JSON.stringify(body)).digest("hex")}"`;
      if (matchesEtag(req.headers["if-none-match"], etag)) {
        entry.status = 304;
        entry.charged = false;
        res.writeHead(304, { ...this.rateLimitHeaders(false), ...headers, etag });
        res.end();
        return;
      }
      json(200, body, { ...headers, etag });
    };
    if (!this.authorized(req.headers.authorization)) {
      json(401, {
        message: "Bad credentials",
        documentation_url: "https://docs.github.com/rest",
        status: "401",
      });
      return;
    }
    if (req.method !== "GET") {
      json(404, { message: "Not Found", status: "404" });
      return;
    }
    const redirect = (blobPath: string) => {
      entry.status = 302;
      res.writeHead(302, {
        ...this.rateLimitHeaders(),
        location: this.sign(blobPath),
        "content-length": "0",
      });
      res.end();
    };
    const answer = this.route(url);
    if (answer.kind === "redirect") redirect(answer.blobPath);
    else if (answer.status === 200) tagged(answer.body, answer.headers);
    else json(answer.status, answer.body, answer.headers);
    if (answer.kind === "json" && answer.runsPage !== undefined) {
      const inserted = this.afterPage.get(answer.runsPage);
      this.afterPage.delete(answer.runsPage);
      if (inserted) this.runs.set(inserted.run.id, inserted);
    }
  }

  authorized(header: string | undefined): boolean {
    const match = /^(?:Bearer|token) (.+)$/i.exec(header ?? "");
    return match?.[1] === this.options.token;
  }

  route(url: URL): RouteAnswer {
    const notFound: RouteAnswer = {
      kind: "json",
      status: 404,
      body: { message: "Not Found", status: "404" },
    };
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== "repos" || parts[3] !== "actions" || parts.length < 5) return notFound;
    const repo = `${parts[1]}/${parts[2]}`;
    const rest = parts.slice(4);
    const query = url.searchParams;

    if (rest[0] === "workflows" && rest.length === 3 && rest[2] === "runs") {
      const workflow = rest[1] ?? "";
      if (!this.workflows.has(`${repo}|${workflow}`)) return notFound;
      const runs = [...this.runs.values()]
        .filter((r) => r.repo === repo && r.workflow === workflow)
        .filter((r) => !query.get("branch") || r.run.head_branch === query.get("branch"))
        .filter((r) => {
          const status = query.get("status");
          return !status || r.run.status === status || r.run.conclusion === status;
        })
        .map((r) => r.run)
        .sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id - a.id);
      const { items, headers } = this.page(url, runs);
      return {
        kind: "json",
        status: 200,
        body: {
          total_count: runs.length,
          workflow_runs: items.map((run) => this.runJson(repo, workflow, run)),
        },
        headers: {
          ...headers,
          ...(this.pollInterval !== undefined
            ? { "x-poll-interval": String(this.pollInterval) }
            : {}),
        },
        runsPage: Math.max(1, Number(query.get("page")) || 1),
      };
    }
    if (rest[0] === "runs" && rest[1]) {
      const fixture = this.runs.get(Number(rest[1]));
      if (!fixture || fixture.repo !== repo) return notFound;
      if (rest.length === 2)
        return {
          kind: "json",
          status: 200,
          body: this.runJson(repo, fixture.workflow, fixture.run),
        };
      if (rest.length === 3 && rest[2] === "jobs") {
        const { items, headers } = this.page(url, fixture.jobs);
        return {
          kind: "json",
          status: 200,
          body: {
            total_count: fixture.jobs.length,
            jobs: items.map((job) => this.jobJson(repo, fixture, job)),
          },
          headers,
        };
      }
      if (rest.length === 3 && rest[2] === "logs") {
        return fixture.logsZip
          ? { kind: "redirect", blobPath: `/logs/runs/${fixture.run.id}.zip` }
          : notFound;
      }
      if (rest.length === 3 && rest[2] === "artifacts") {
        const artifacts = fixture.artifacts ?? [];
        const { items, headers } = this.page(url, artifacts);
        const body = {
          total_count: artifacts.length,
          artifacts: items.map((a) => this.artifactJson(repo, fixture, a)),
        };
        for (const a of items) this.deleteIfDue(fixture, a.id, "listed");
        return { kind: "json", status: 200, body, headers };
      }
      return notFound;
    }
    if (rest[0] === "jobs" && rest[1] && rest.length === 3 && rest[2] === "logs") {
      const jobId = Number(rest[1]);
      const job = this.findJob(repo, jobId);
      return job ? { kind: "redirect", blobPath: `/logs/jobs/${jobId}.txt` } : notFound;
    }
    if (rest[0] === "artifacts" && rest[1]) {
      const found = this.findArtifact(repo, Number(rest[1]));
      if (!found) return notFound;
      if (rest.length === 2)
        return {
          kind: "json",
          status: 200,
          body: this.artifactJson(repo, found.run, found.artifact),
        };
      if (rest.length === 3 && rest[2] === "zip") {
        if (found.artifact.expired) {
          return {
            kind: "json",
            status: 410,
            body: { message: "Artifact has expired", status: "410" },
          };
        }
        this.deleteIfDue(found.run, found.artifact.id, "redirected");
        return { kind: "redirect", blobPath: `/artifacts/${found.artifact.id}.zip` };
      }
    }
    return notFound;
  }

  deleteIfDue(fixture: FixtureRun, artifactId: number, now: "listed" | "redirected"): void {
    if (this.deleting.get(artifactId) !== now) return;
    this.deleting.delete(artifactId);
    fixture.artifacts = fixture.artifacts?.filter((a) => a.id !== artifactId);
  }

  findJob(repo: string, jobId: number): FixtureJob | undefined {
    for (const fixture of this.runs.values()) {
      if (fixture.repo !== repo) continue;
      const job = fixture.jobs.find((j) => j.id === jobId);
      if (job) return job;
    }
    return undefined;
  }

  findArtifact(
    repo: string,
    artifactId: number,
  ): { run: FixtureRun; artifact: FixtureArtifact } | undefined {
    for (const run of this.runs.values()) {
      if (run.repo !== repo) continue;
      const artifact = run.artifacts?.find((a) => a.id === artifactId);
      if (artifact) return { run, artifact };
    }
    return undefined;
  }

  /** GitHub's page/per_page paging with a `link` header. */
  page<T>(url: URL, items: T[]): { items: T[]; headers: Record<string, string> } {
    const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get("per_page")) || 30));
    const page = Math.max(1, Number(url.searchParams.get("page")) || 1);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (n: number, rel: string) => {
      const target = new URL(url.toString());
      target.searchParams.set("per_page", String(perPage));
      target.searchParams.set("page", String(n));
      return `<${target.toString()}>; rel="${rel}"`;
    };
    const links: string[] = [];
    if (page > 1) links.push(link(page - 1, "prev"), link(1, "first"));
    if (page < last) links.push(link(page + 1, "next"), link(last, "last"));
    return {
      items: items.slice((page - 1) * perPage, page * perPage),
      headers: links.length > 0 ? { link: links.join(", ") } : {},
    };
  }

  runJson(repo: string, workflow: string, run: WorkflowRun): Record<string, unknown> {
    const api = `${this.api.url}/repos/${repo}/actions/runs/${run.id}`;
    return {
      ...run,
      workflow_id: 161335,
      path: `.github/workflows/${workflow}`,
      url: api,
      jobs_url: `${api}/jobs`,
      logs_url: `${api}/logs`,
      artifacts_url: `${api}/artifacts`,
      repository: { full_name: repo },
    };
  }

  jobJson(repo: string, fixture: FixtureRun, job: FixtureJob): Record<string, unknown> {
    return {
      id: job.id,
      run_id: fixture.run.id,
      run_attempt: fixture.run.run_attempt ?? 1,
      name: job.name,
      status: job.status,
      conclusion: job.conclusion,
      started_at: fixture.run.run_started_at ?? fixture.run.created_at,
      completed_at: fixture.run.updated_at,
      head_sha: fixture.run.head_sha,
      url: `${this.api.url}/repos/${repo}/actions/jobs/${job.id}`,
      html_url: `https://github.com/${repo}/actions/runs/${fixture.run.id}/job/${job.id}`,
      steps: job.steps.map((step) => ({
        name: step.name,
        number: step.number,
        status: step.status ?? job.status,
        conclusion: step.conclusion === undefined ? job.conclusion : step.conclusion,
      })),
    };
  }

  artifactJson(
    repo: string,
    fixture: FixtureRun,
    artifact: FixtureArtifact,
  ): Record<string, unknown> {
    const size = Buffer.isBuffer(artifact.bytes) ? artifact.bytes.length : undefined;
    return {
      id: artifact.id,
      node_id: `MDg6QXJ0aWZhY3Qx${artifact.id}`,
      name: artifact.name,
      size_in_bytes: size ?? this.fileSizes.get(artifact.bytes as string) ?? 0,
      url: `${this.api.url}/repos/${repo}/actions/artifacts/${artifact.id}`,
      archive_download_url: `${this.api.url}/repos/${repo}/actions/artifacts/${artifact.id}/zip`,
      expired: artifact.expired ?? false,
      created_at: artifact.createdAt ?? fixture.run.updated_at,
      updated_at: artifact.createdAt ?? fixture.run.updated_at,
      expires_at: artifact.expiresAt ?? "2099-01-01T00:00:00Z",
      ...(artifact.digest ? { digest: artifact.digest } : {}),
      workflow_run: {
        id: fixture.run.id,
        repository_id: 1,
        head_branch: fixture.run.head_branch,
        head_sha: fixture.run.head_sha,
      },
    };
  }

  /** Sizes of artifacts kept as files, known once the run is added. */
  readonly fileSizes = new Map<string, number>();

  blobTarget(path: string): BlobTarget | undefined {
    let match = /^\/logs\/jobs\/(\d+)\.txt$/.exec(path);
    if (match) {
      const jobId = Number(match[1]);
      for (const run of this.runs.values()) {
        const job = run.jobs.find((j) => j.id === jobId);
        if (job) return { source: job.log, contentType: "text/plain; charset=utf-8" };
      }
      return undefined;
    }
    match = /^\/logs\/runs\/(\d+)\.zip$/.exec(path);
    if (match) {
      const zip = this.runs.get(Number(match[1]))?.logsZip;
      return zip ? { source: zip, contentType: "application/zip" } : undefined;
    }
    match = /^\/artifacts\/(\d+)\.zip$/.exec(path);
    if (match) {
      const artifactId = Number(match[1]);
      for (const run of this.runs.values()) {
        const artifact = run.artifacts?.find((a) => a.id === artifactId);
        if (artifact) return { source: artifact.bytes, contentType: "application/zip" };
      }
    }
    return undefined;
  }

  async handleBlob(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.blob.url);
    const entry = this.record("blob", req, url);
    const fault = await this.applyFault("blob", url.pathname, res, entry);
    if (fault?.status !== undefined) return;
    const text = (status: number, body: string) => {
      entry.status = status;
      entry.bytesSent = Buffer.byteLength(body);
      res.writeHead(status, {
        "content-type": "application/xml",
        "content-length": String(entry.bytesSent),
      });
      res.end(body);
    };
    // Like Azure blob storage: a second credential next to the signature is an error.
    if (req.headers.authorization !== undefined) {
      text(
        403,
        "<Error><Code>InvalidAuthenticationInfo</Code><Message>Authorization header not allowed with a SAS</Message></Error>",
      );
      return;
    }
    if (!this.verify(url.pathname, url.searchParams)) {
      text(
        403,
        "<Error><Code>AuthenticationFailed</Code><Message>Signed expiry time has passed</Message></Error>",
      );
      return;
    }
    const target = this.blobTarget(url.pathname);
    if (!target) {
      text(404, "<Error><Code>BlobNotFound</Code></Error>");
      return;
    }
    const size = await sizeOf(target.source);
    const range = parseRange(req.headers.range, size);
    if (range.kind === "unsatisfiable") {
      entry.status = 416;
      res.writeHead(416, { "content-range": `bytes */${size}`, "content-length": "0" });
      res.end();
      return;
    }
    const [start, end] = range.kind === "ok" ? [range.start, range.end] : [0, size - 1];
    entry.status = range.kind === "ok" ? 206 : 200;
    res.writeHead(entry.status, {
      "content-type": target.contentType,
      "content-length": String(Math.max(0, end - start + 1)),
      "accept-ranges": "bytes",
      ...(range.kind === "ok" ? { "content-range": `bytes ${start}-${end}/${size}` } : {}),
      ...fault?.headers,
    });
    await streamBody(res, target.source, start, end, {
      ...(fault?.cutAfterBytes !== undefined ? { cutAfterBytes: fault.cutAfterBytes } : {}),
      ...((fault?.bytesPerSecond ?? this.blobRate) !== undefined
        ? { bytesPerSecond: fault?.bytesPerSecond ?? this.blobRate }
        : {}),
      onBytes: (sent) => {
        entry.bytesSent = sent;
      },
    });
  }
}

type RouteAnswer =
  | {
      kind: "json";
      status: number;
      body: unknown;
      headers?: Record<string, string>;
      /** The page answered, for a runs listing. */
      runsPage?: number;
    }
  | { kind: "redirect"; blobPath: string };

/** `If-None-Match` against an ETag, by the weak comparison (RFC 9110 §13.1.2): `W/` aside. */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, "");
  return header.split(",").some((tag) => tag.trim() === "*" || opaque(tag) === opaque(etag));
}

function defaultMessage(status: number): string {
  switch (status) {
    case 401:
      return "Bad credentials";
    case 403:
      return "Resource not accessible by integration";
    case 404:
      return "Not Found";
    case 410:
      return "Gone";
    case 429:
      return "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
    default:
      return status >= 500 ? "Server Error" : "Error";
  }
}

function guard(handler: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    // A client that hangs up mid-body is normal here (early stop); it is not a server fault.
    res.on("error", () => undefined);
    handler(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(String(err));
      } else {
        res.destroy();
      }
    });
  };
}

export async function startGithubStandIn(options: GithubStandInOptions): Promise<GithubStandIn> {
  const standIn = new StandIn(options);
  standIn.api = await listenOnFreePort(guard((req, res) => standIn.handleApi(req, res)));
  standIn.blob = await listenOnFreePort(guard((req, res) => standIn.handleBlob(req, res)));
  return {
    url: standIn.api.url,
    blobUrl: standIn.blob.url,
    token: options.token,
    requests: standIn.requests,
    addRun(run: FixtureRun) {
      standIn.runs.set(run.run.id, run);
      standIn.workflows.add(`${run.repo}|${run.workflow}`);
      for (const artifact of run.artifacts ?? []) {
        if (typeof artifact.bytes === "string") {
          standIn.fileSizes.set(artifact.bytes, statSync(artifact.bytes).size);
        }
      }
    },
    removeRun(runId: number) {
      standIn.runs.delete(runId);
    },
    resetRequests() {
      standIn.requests.length = 0;
    },
    injectFault(fault: Fault) {
      standIn.faults.push({ ...fault, remaining: fault.times ?? 1 });
    },
    clearFaults() {
      standIn.faults = [];
    },
    expireSignedUrls() {
      standIn.expireSignedUrls();
    },
    limitBlobRate(bytesPerSecond: number | undefined) {
      standIn.blobRate = bytesPerSecond;
    },
    deleteArtifactAfter(artifactId: number, when: "listed" | "redirected") {
      standIn.deleting.set(artifactId, when);
    },
    updateRun(runId: number, changes: Partial<WorkflowRun>) {
      const fixture = standIn.runs.get(runId);
      if (!fixture) throw new Error(`no run ${runId} in the GitHub stand-in`);
      fixture.run = { ...fixture.run, ...changes };
    },
    insertRunAfterPage(page: number, run: FixtureRun) {
      standIn.afterPage.set(page, run);
      standIn.workflows.add(`${run.repo}|${run.workflow}`);
    },
    setPollInterval(seconds: number | undefined) {
      standIn.pollInterval = seconds;
    },
    counts() {
      const api = standIn.requests.filter((r) => r.host === "api");
      const charged = api.filter((r) => r.charged).length;
      return { charged, free: api.length - charged };
    },
    async close() {
      await Promise.all([standIn.api.close(), standIn.blob.close()]);
    },
  };
}
