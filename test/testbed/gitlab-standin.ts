import { stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { makeSigningKey, signRegistryToken, type RegistryAccess } from "./jwt.js";
import { REGISTRY_SERVICE, startRegistry, type RegistryProcess } from "./registry.js";
import { startHttpsFront, type HttpsFront } from "./tls.js";

export const REGISTRY_ISSUER = "gitlab-issuer";
export const STANDIN_USER_AGENT = "gitlab-standin";
const TOKEN_TTL_SECONDS = 300;

const MANIFEST_ACCEPT = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.index.v1+json",
].join(", ");

export interface StandInRequest {
  method: string;
  /** Path and query as received, e.g. `/api/v4/projects/42/registry/repositories?per_page=100`. */
  path: string;
  status: number;
  /** The address the request came from: a proxy's outgoing address, or the client's own. */
  peer: string;
}

export interface InjectedFault {
  /** A substring of, or a pattern tested against, the request's path and query. */
  match: string | RegExp;
  /** Default 500. */
  status?: number;
  headers?: Record<string, string>;
  /** Default: GitLab's `{"message":"<status> <reason>"}`. */
  body?: string | Record<string, unknown>;
  /** How many matching requests fail before the fault is spent; default 1. */
  times?: number;
  /** Wait this long before answering (or cutting). */
  delayMs?: number;
  /** Drop the connection without an answer, as a reset proxy does; recorded with status 0. */
  cut?: boolean;
}

export interface GitlabStandInOptions {
  /** The one valid API token; it is also accepted as a registry password, like a PAT. */
  token: string;
  /** Registry logins other than the token (username → password), e.g. deploy tokens. */
  registryUsers?: Record<string, string>;
  projectPath?: string;
  projectId?: number;
  /** Scratch directory: the signing key and the registry's storage and logs. */
  dir: string;
  /**
   * Also serve GitLab and the registry over https with this certificate, each behind an https
   * front (as GitLab's nginx does); the token realm the registry names is then the https one.
   */
  tls?: { cert: Buffer; key: Buffer };
}

export interface GitlabStandIn {
  /** `http://127.0.0.1:<port>`: what `--gitlab-host` takes. */
  url: string;
  host: string;
  registry: RegistryProcess;
  /** `127.0.0.1:<port>` of the registry: what `--registry` takes (its https front with `tls`). */
  registryHost: string;
  /** With `tls`: GitLab's https address, what `--gitlab-host` takes then. */
  tlsUrl?: string;
  projectPath: string;
  projectId: number;
  token: string;
  requests: StandInRequest[];
  /** Most requests in progress at once since the last reset: proves a client bounds its concurrency. */
  peakInFlight(): number;
  resetRequests(): void;
  injectFault(fault: InjectedFault): void;
  clearFaults(): void;
  /** A registry token signed like the realm's, for harness code that talks to the registry directly. */
  mintRegistryToken(access: RegistryAccess[], subject?: string): string;
  close(): Promise<void>;
}

interface RegistryRepositoryJson {
  id: number;
  name: string;
  path: string;
  project_id: number;
  location: string;
  created_at: string;
  cleanup_policy_started_at: null;
  status: null;
  tags_count?: number;
  tags?: TagJson[];
}

interface TagJson {
  name: string;
  path: string;
  location: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(`${status}`);
  }
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

function gitlabMessage(status: number, what?: string): Record<string, unknown> {
  return { message: `${status} ${what ?? REASONS[status] ?? "Error"}` };
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** GitLab's offset pagination: `page`/`per_page` in, `x-*` and `link` headers out. */
function paginate<T>(
  items: T[],
  url: URL,
  baseUrl: string,
): { page: T[]; headers: Record<string, string> } {
  const rawPerPage = Number.parseInt(url.searchParams.get("per_page") ?? "", 10);
  const perPage = Number.isFinite(rawPerPage) && rawPerPage > 0 ? Math.min(rawPerPage, 100) : 20;
  const rawPage = Number.parseInt(url.searchParams.get("page") ?? "", 10);
  const page = Number.isFinite(rawPage) && rawPage > 0 ? rawPage : 1;
  const totalPages = Math.max(1, Math.ceil(items.length / perPage));
  const next = page < totalPages ? page + 1 : undefined;
  const prev = page > 1 ? Math.min(page - 1, totalPages) : undefined;

  const linkTo = (target: number): string => {
    const query = new URLSearchParams(url.searchParams);
    query.set("page", String(target));
    query.set("per_page", String(perPage));
    return `${baseUrl}${url.pathname}?${query.toString()}`;
  };
  const links: string[] = [];
  if (prev !== undefined) links.push(`<${linkTo(prev)}>; rel="prev"`);
  if (next !== undefined) links.push(`<${linkTo(next)}>; rel="next"`);
  links.push(`<${linkTo(1)}>; rel="first"`, `<${linkTo(totalPages)}>; rel="last"`);

  return {
    page: items.slice((page - 1) * perPage, page * perPage),
    headers: {
      "x-page": String(page),
      "x-per-page": String(perPage),
      "x-total": String(items.length),
      "x-total-pages": String(totalPages),
      "x-next-page": next === undefined ? "" : String(next),
      "x-prev-page": prev === undefined ? "" : String(prev),
      link: links.join(", "),
    },
  };
}

function parseBasicAuth(
  header: string | undefined,
): { user: string; password: string } | undefined {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? "");
  if (!m?.[1]) return undefined;
  const decoded = Buffer.from(m[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** `repository:<name>:<actions>`; the name sits between the first and the last colon. */
function parseScope(scope: string): RegistryAccess | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last <= first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(",")
      .filter(Boolean),
  };
}

/** Follows the registry's `Link: <…>; rel="next"` pagination (catalog and tag lists). */
function nextRegistryLink(link: string | null): string | undefined {
  const m = /<([^>]+)>;\s*rel="next"/.exec(link ?? "");
  return m?.[1];
}

/**
 * A GitLab stand-in on 127.0.0.1 serving the container-registry part of the REST API (SPEC §1.5)
 * and the registry's token realm, in front of a real Distribution registry that it starts.
 * Everything the API reports is read from that registry, so what a test pushes shows up here.
 */
export async function startGitlabStandIn(options: GitlabStandInOptions): Promise<GitlabStandIn> {
  const projectPath = options.projectPath ?? "hercules/veloxtesting";
  const projectId = options.projectId ?? 42;
  const registryUsers = options.registryUsers ?? {};
  const signing = await makeSigningKey(join(options.dir, "jwt"));
  const requests: StandInRequest[] = [];
  let inFlight = 0;
  let peak = 0;
  let faults: Array<InjectedFault & { remaining: number }> = [];
  const repositoryIds = new Map<string, number>();
  const firstSeen = new Map<string, string>();

  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = `127.0.0.1:${port}`;
  const url = `http://${host}`;

  let registry: RegistryProcess;
  const fronts: HttpsFront[] = [];
  try {
    const gitlabFront = options.tls ? await startHttpsFront({ port }, options.tls) : undefined;
    if (gitlabFront) fronts.push(gitlabFront);
    registry = await startRegistry({
      dir: join(options.dir, "registry"),
      realm: `${gitlabFront?.url ?? url}/jwt/auth`,
      issuer: REGISTRY_ISSUER,
      certPath: signing.certPath,
    });
    if (options.tls) {
      const registryPort = Number(registry.host.split(":")[1]);
      fronts.push(await startHttpsFront({ port: registryPort }, options.tls));
    }
  } catch (error) {
    server.close();
    await Promise.all(fronts.map((f) => f.close()));
    throw error;
  }
  // The address GitLab reports for the registry: its https front when there is one.
  const publicRegistry = fronts[1]?.host ?? registry.host;

  const mintRegistryToken = (access: RegistryAccess[], subject = "gitlab-standin"): string =>
    signRegistryToken({
      key: signing.key,
      certDer: signing.certDer,
      issuer: REGISTRY_ISSUER,
      subject,
      audience: REGISTRY_SERVICE,
      access,
      ttlSeconds: TOKEN_TTL_SECONDS,
    });

  // The stand-in's own registry reads reuse tokens: signing one per call made detail-heavy
  // listings noticeably slower.
  const ownTokens = new Map<string, { token: string; renewAt: number }>();
  const ownToken = (access: RegistryAccess[]): string => {
    const key = JSON.stringify(access);
    const cached = ownTokens.get(key);
    if (cached && cached.renewAt > Date.now()) return cached.token;
    const token = mintRegistryToken(access);
    ownTokens.set(key, { token, renewAt: Date.now() + (TOKEN_TTL_SECONDS - 60) * 1000 });
    return token;
  };

  const underProject = (name: string): boolean =>
    name === projectPath || name.startsWith(`${projectPath}/`);

  async function registryGet(
    path: string,
    access: RegistryAccess[],
    accept?: string,
  ): Promise<Response> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${ownToken(access)}`,
      // Tells the stand-in's own reads apart from the tool's in the registry's access log.
      "user-agent": STANDIN_USER_AGENT,
    };
    if (accept) headers.accept = accept;
    return fetch(new URL(path, registry.url), { headers });
  }

  async function registryList(
    firstPath: string,
    access: RegistryAccess[],
    key: string,
  ): Promise<string[]> {
    const all: string[] = [];
    let path: string | undefined = firstPath;
    while (path) {
      const res = await registryGet(path, access);
      if (res.status === 404) {
        await res.arrayBuffer();
        return all;
      }
      if (!res.ok) throw new Error(`registry GET ${path}: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as Record<string, unknown>;
      const items = body[key];
      if (Array.isArray(items)) all.push(...items.map(String));
      path = nextRegistryLink(res.headers.get("link"));
    }
    return all;
  }

  async function projectRepositories(): Promise<string[]> {
    const catalog = await registryList(
      "/v2/_catalog?n=1000",
      [{ type: "registry", name: "catalog", actions: ["*"] }],
      "repositories",
    );
    const names = catalog.filter(underProject).sort();
    // Ids stay fixed for the stand-in's lifetime, in order of first sight, as GitLab's do.
    for (const name of names) {
      if (!repositoryIds.has(name)) repositoryIds.set(name, repositoryIds.size + 1);
    }
    return names.sort((a, b) => (repositoryIds.get(a) ?? 0) - (repositoryIds.get(b) ?? 0));
  }

  async function repositoryTags(name: string): Promise<string[]> {
    const tags = await registryList(
      `/v2/${name}/tags/list`,
      [{ type: "repository", name, actions: ["pull"] }],
      "tags",
    );
    return tags.sort();
  }

  async function createdAt(name: string): Promise<string> {
    try {
      const info = await stat(join(registry.storageDir, "docker/registry/v2/repositories", name));
      const time = info.birthtimeMs > 0 ? info.birthtime : info.mtime;
      return time.toISOString();
    } catch {
      const seen = firstSeen.get(name) ?? new Date().toISOString();
      firstSeen.set(name, seen);
      return seen;
    }
  }

  const tagJson = (repo: string, tag: string): TagJson => ({
    name: tag,
    path: `${repo}:${tag}`,
    location: `${publicRegistry}/${repo}:${tag}`,
  });

  async function repositoryJson(name: string, url: URL): Promise<RegistryRepositoryJson> {
    const json: RegistryRepositoryJson = {
      id: repositoryIds.get(name) ?? 0,
      name: name === projectPath ? "" : name.slice(projectPath.length + 1),
      path: name,
      project_id: projectId,
      location: `${publicRegistry}/${name}`,
      created_at: await createdAt(name),
      cleanup_policy_started_at: null,
      status: null,
    };
    const wantCount = url.searchParams.get("tags_count") === "true";
    const wantTags = url.searchParams.get("tags") === "true";
    if (wantCount || wantTags) {
      const tags = await repositoryTags(name);
      if (wantCount) json.tags_count = tags.length;
      if (wantTags) json.tags = tags.map((t) => tagJson(name, t));
    }
    return json;
  }

  const knownName = (id: string): string | undefined =>
    [...repositoryIds].find(([, known]) => String(known) === id)?.[0];

  async function repositoryById(id: string): Promise<string> {
    // Ids never change once given, so only an id not seen yet costs a walk of the catalog.
    const name = knownName(id) ?? ((await projectRepositories()) && knownName(id));
    if (!name) throw new HttpError(404, gitlabMessage(404, "Repository Not Found"));
    return name;
  }

  // Blobs are content-addressed, so a config read once is good for every tag that shares it.
  const configs = new Map<string, { created?: string }>();
  async function imageConfig(name: string, digest: string): Promise<{ created?: string }> {
    const cached = configs.get(digest);
    if (cached) return cached;
    const res = await registryGet(`/v2/${name}/blobs/${digest}`, [
      { type: "repository", name, actions: ["pull"] },
    ]);
    if (!res.ok)
      throw new Error(`registry blob ${name}@${digest}: ${res.status} ${await res.text()}`);
    const config = (await res.json()) as { created?: string };
    configs.set(digest, config);
    return config;
  }

  async function tagDetails(name: string, tag: string): Promise<Record<string, unknown>> {
    const access = [{ type: "repository", name, actions: ["pull"] }];
    const res = await registryGet(
      `/v2/${name}/manifests/${encodeURIComponent(tag)}`,
      access,
      MANIFEST_ACCEPT,
    );
    if (res.status === 404) {
      await res.arrayBuffer();
      throw new HttpError(404, gitlabMessage(404, "Tag Not Found"));
    }
    if (!res.ok)
      throw new Error(`registry manifest ${name}:${tag}: ${res.status} ${await res.text()}`);
    const digest = res.headers.get("docker-content-digest") ?? undefined;
    const manifest = (await res.json()) as {
      config?: { digest: string; size: number };
      layers?: Array<{ size: number }>;
      manifests?: Array<{ size: number }>;
    };
    const details: Record<string, unknown> = {
      ...tagJson(name, tag),
      revision: null,
      short_revision: null,
      digest,
      created_at: null,
      total_size: null,
    };
    if (manifest.config) {
      const revision = manifest.config.digest.replace(/^sha256:/, "");
      const config = await imageConfig(name, manifest.config.digest);
      details.revision = revision;
      details.short_revision = revision.slice(0, 9);
      details.created_at = config.created ?? null;
      details.total_size =
        manifest.config.size + (manifest.layers ?? []).reduce((sum, layer) => sum + layer.size, 0);
    } else if (manifest.manifests) {
      // An index has no config of its own; GitLab leaves revision and creation empty for it.
      details.total_size = manifest.manifests.reduce((sum, m) => sum + m.size, 0);
    }
    return details;
  }

  function checkApiToken(req: IncomingMessage): void {
    const given = req.headers["private-token"] ?? req.headers["job-token"];
    if (given !== options.token) throw new HttpError(401, gitlabMessage(401));
  }

  function checkProject(id: string): void {
    if (id !== String(projectId) && id !== projectPath) {
      throw new HttpError(404, gitlabMessage(404, "Project Not Found"));
    }
  }

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    checkApiToken(req);
    // Split the raw path so an encoded `hercules%2Fveloxtesting` stays one segment.
    const segments = url.pathname.split("/").slice(3).map(decodeURIComponent);
    const [
      projects,
      projectRef,
      registryPart,
      repositories,
      repositoryId,
      tagsPart,
      tagName,
      ...rest
    ] = segments;
    if (
      req.method !== "GET" ||
      projects !== "projects" ||
      projectRef === undefined ||
      registryPart !== "registry" ||
      repositories !== "repositories" ||
      rest.length > 0
    ) {
      // A project path given unencoded has too many segments; GitLab answers 404 for it too.
      throw new HttpError(404, { error: "404 Not Found" });
    }
    checkProject(projectRef);
    if (repositoryId === undefined) {
      const names = await projectRepositories();
      const { page, headers } = paginate(names, url, `http://${host}`);
      sendJson(res, 200, await Promise.all(page.map((n) => repositoryJson(n, url))), headers);
      return;
    }
    if (tagsPart !== "tags") throw new HttpError(404, { error: "404 Not Found" });
    const name = await repositoryById(repositoryId);
    if (tagName === undefined) {
      const { page, headers } = paginate(await repositoryTags(name), url, `http://${host}`);
      sendJson(
        res,
        200,
        page.map((t) => tagJson(name, t)),
        headers,
      );
      return;
    }
    sendJson(res, 200, await tagDetails(name, tagName));
  }

  function grantedAccess(requested: RegistryAccess[]): RegistryAccess[] {
    const allowed = ["pull", "push", "delete"];
    const granted: RegistryAccess[] = [];
    for (const scope of requested) {
      if (scope.type !== "repository" || !underProject(scope.name)) continue;
      const actions = scope.actions.includes("*")
        ? allowed
        : scope.actions.filter((a) => allowed.includes(a));
      if (actions.length > 0) granted.push({ ...scope, actions });
    }
    return granted;
  }

  function handleJwtAuth(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (url.searchParams.get("service") !== REGISTRY_SERVICE) {
      throw new HttpError(404, { error: "404 Not Found" });
    }
    const credentials = parseBasicAuth(req.headers.authorization);
    let subject = "anonymous";
    if (credentials) {
      const valid =
        registryUsers[credentials.user] === credentials.password ||
        credentials.password === options.token;
      if (!valid) {
        throw new HttpError(401, {
          errors: [
            {
              code: "UNAUTHORIZED",
              message: "HTTP Basic: Access denied. The provided password or token is incorrect.",
            },
          ],
        });
      }
      subject = credentials.user;
    }
    const requested = url.searchParams
      .getAll("scope")
      .flatMap((s) => s.split(" "))
      .map(parseScope)
      .filter((s): s is RegistryAccess => s !== undefined);
    // The project is private: an anonymous caller gets a token that opens nothing, as on GitLab.
    const access = credentials ? grantedAccess(requested) : [];
    const token = mintRegistryToken(access, subject);
    sendJson(res, 200, {
      token,
      access_token: token,
      expires_in: TOKEN_TTL_SECONDS,
      issued_at: new Date().toISOString(),
    });
  }

  function takeFault(pathAndQuery: string): InjectedFault | undefined {
    const fault = faults.find((f) =>
      typeof f.match === "string" ? pathAndQuery.includes(f.match) : f.match.test(pathAndQuery),
    );
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) faults = faults.filter((f) => f !== fault);
    return fault;
  }

  function sendFault(res: ServerResponse, fault: InjectedFault): void {
    const status = fault.status ?? 500;
    const body = fault.body ?? gitlabMessage(status);
    const text = typeof body === "string" ? body : JSON.stringify(body);
    res.writeHead(status, {
      "content-type": typeof body === "string" ? "text/plain" : "application/json",
      "content-length": Buffer.byteLength(text),
      ...fault.headers,
    });
    res.end(text);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", `http://${host}`);
    const pathAndQuery = `${url.pathname}${url.search}`;
    const peer = req.socket.remoteAddress ?? "";
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    res.once("close", () => {
      inFlight -= 1;
    });
    res.once("finish", () =>
      requests.push({
        method: req.method ?? "GET",
        path: pathAndQuery,
        status: res.statusCode,
        peer,
      }),
    );
    const fault = takeFault(pathAndQuery);
    if (fault) {
      if (fault.delayMs) await sleep(fault.delayMs);
      if (fault.cut) {
        requests.push({ method: req.method ?? "GET", path: pathAndQuery, status: 0, peer });
        req.socket.destroy();
        return;
      }
      sendFault(res, fault);
      return;
    }
    try {
      if (url.pathname === "/jwt/auth") handleJwtAuth(req, res, url);
      else if (url.pathname.startsWith("/api/v4/")) await handleApi(req, res, url);
      else throw new HttpError(404, { error: "404 Not Found" });
    } catch (error) {
      if (error instanceof HttpError) sendJson(res, error.status, error.body);
      else sendJson(res, 500, { message: `500 Internal Server Error: ${String(error)}` });
    }
  }

  server.on("request", (req, res) => {
    void handle(req, res);
  });

  return {
    url,
    host,
    registry,
    registryHost: publicRegistry,
    ...(fronts[0] ? { tlsUrl: fronts[0].url } : {}),
    projectPath,
    projectId,
    token: options.token,
    requests,
    peakInFlight: () => peak,
    resetRequests: () => {
      requests.length = 0;
      peak = inFlight;
    },
    injectFault: (fault) => {
      faults.push({ ...fault, remaining: fault.times ?? 1 });
    },
    clearFaults: () => {
      faults = [];
    },
    mintRegistryToken,
    async close() {
      server.closeAllConnections();
      await Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        registry.stop(),
        ...fronts.map((f) => f.close()),
      ]);
    },
  };
}
