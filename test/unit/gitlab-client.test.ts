import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { GitlabRegistryClient, type RegistryTagDetails } from "../../src/gitlab/client.js";
import type { Logger } from "../../src/report/logger.js";
import { startGitlabStandIn, type GitlabStandIn } from "../testbed/gitlab-standin.js";
import { freePort } from "../testbed/registry.js";
import { seedImage, type SeededImage } from "../testbed/registry-seed.js";
import { registryAvailability } from "../testbed/system.js";
import { capturingLogger, failure } from "./helpers.js";

const availability = registryAvailability();
const TOKEN = "glpat-client-test-secret";
const PROJECT = "hercules/veloxtesting";
const TAGS = Array.from({ length: 130 }, (_, i) => `presto-${String(i).padStart(3, "0")}-velox-y`);

describe.skipIf(!availability.ok)(
  `GitlabRegistryClient against the stand-in${availability.ok ? "" : ` (skipped: ${availability.reason})`}`,
  () => {
    let dir: string;
    let gitlab: GitlabStandIn;
    let coordinator: SeededImage;
    let worker: SeededImage;
    let log: { logger: Logger; lines: string[] };
    let client: GitlabRegistryClient;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "gitlab-client-test-"));
      gitlab = await startGitlabStandIn({ token: TOKEN, dir });
      coordinator = await seedImage(gitlab, "x86/presto-coordinator", TAGS);
      worker = await seedImage(
        gitlab,
        "x86/presto-native-worker-gpu",
        ["presto-000-velox-y", "latest"],
        {
          layerBytes: 4096,
          created: "2025-11-02T03:04:05Z",
        },
      );
    });

    afterAll(async () => {
      await gitlab?.close();
      await rm(dir, { recursive: true, force: true });
    });

    beforeEach(() => {
      gitlab.resetRequests();
      gitlab.clearFaults();
      log = capturingLogger();
      client = new GitlabRegistryClient({
        fetch: globalThis.fetch,
        host: gitlab.url,
        token: TOKEN,
        logger: log.logger,
        retry: { baseDelayMs: 10 },
      });
    });

    it("lists repositories by project path and by numeric id", async () => {
      const byPath = await client.listRepositories(PROJECT);
      expect(byPath.map((r) => r.name)).toEqual([
        "x86/presto-coordinator",
        "x86/presto-native-worker-gpu",
      ]);
      expect(byPath[0]).toMatchObject({
        path: `${PROJECT}/x86/presto-coordinator`,
        project_id: 42,
        location: `${gitlab.registryHost}/${PROJECT}/x86/presto-coordinator`,
      });
      expect(await client.listRepositories("42")).toEqual(byPath);
      expect(gitlab.requests[0]?.path).toContain(
        "/projects/hercules%2Fveloxtesting/registry/repositories?",
      );
    });

    it("follows pagination past the first 100 tags", async () => {
      const [repo] = await client.listRepositories(PROJECT);
      gitlab.resetRequests();
      const tags = await client.listTags(PROJECT, repo?.id ?? -1);
      expect(tags.map((t) => t.name)).toEqual(TAGS);
      expect(tags[129]).toEqual({
        name: "presto-129-velox-y",
        path: `${PROJECT}/x86/presto-coordinator:presto-129-velox-y`,
        location: `${gitlab.registryHost}/${PROJECT}/x86/presto-coordinator:presto-129-velox-y`,
      });
      expect(
        gitlab.requests.map((r) => new URL(r.path, gitlab.url).searchParams.get("page")),
      ).toEqual([null, "2"]);
      expect(gitlab.requests.every((r) => r.path.includes("per_page=100"))).toBe(true);
    });

    it("reads every tag's details with bounded concurrency when asked", async () => {
      const all = await client.listAllTags(PROJECT, { details: true, concurrency: 4 });
      expect(all.map((r) => [r.repository.name, r.tags.length])).toEqual([
        ["x86/presto-coordinator", 130],
        ["x86/presto-native-worker-gpu", 2],
      ]);
      const latest = all[1]?.tags.find((t) => t.name === "latest") as RegistryTagDetails;
      const revision = worker.configDigest.replace("sha256:", "");
      expect(latest).toEqual({
        name: "latest",
        path: `${PROJECT}/x86/presto-native-worker-gpu:latest`,
        location: `${gitlab.registryHost}/${PROJECT}/x86/presto-native-worker-gpu:latest`,
        revision,
        short_revision: revision.slice(0, 9),
        digest: worker.manifestDigest,
        created_at: "2025-11-02T03:04:05Z",
        total_size: worker.totalSize,
      });
      expect((all[0]?.tags[0] as RegistryTagDetails).digest).toBe(coordinator.manifestDigest);
      const detailCalls = gitlab.requests.filter((r) => /\/tags\/[^/?]+$/.test(r.path));
      expect(detailCalls).toHaveLength(132);
      expect(gitlab.peakInFlight()).toBeLessThanOrEqual(4);
    });

    it("lists tags without details in one request per page only", async () => {
      const all = await client.listAllTags(PROJECT, { details: false });
      expect(all[0]?.tags[0]).toEqual({
        name: TAGS[0],
        path: `${PROJECT}/x86/presto-coordinator:${TAGS[0]}`,
        location: `${gitlab.registryHost}/${PROJECT}/x86/presto-coordinator:${TAGS[0]}`,
      });
      // Repositories (1 page) + coordinator tags (2 pages) + worker tags (1 page).
      expect(gitlab.requests).toHaveLength(4);
    });

    it("gives undefined for a tag GitLab does not have", async () => {
      const [repo] = await client.listRepositories(PROJECT);
      expect(await client.getTag(PROJECT, repo?.id ?? -1, "no-such-tag")).toBeUndefined();
    });

    it("turns a rejected token into a one-line error naming the flag and scope, without the token", async () => {
      const bad = new GitlabRegistryClient({
        fetch: globalThis.fetch,
        host: gitlab.url,
        token: "glpat-wrong-secret",
        logger: log.logger,
      });
      const error = await failure(bad.listRepositories(PROJECT));
      expect(error.message).toBe(`GitLab rejected the token for ${gitlab.url} (401)`);
      expect(error.hint).toMatch(/--gitlab-token \/ GITLAB_TOKEN/);
      expect(error.hint).toMatch(/read_api/);
      expect(error.oneLine()).not.toMatch(/secret/);
      // Logged with its whole cause chain, the error still shows no token.
      log.logger.error({ err: error }, error.oneLine());
      expect(log.lines.join("")).toContain("401 Unauthorized");
      expect(log.lines.join("")).not.toMatch(/secret/);
    });

    it("explains a 403 as a missing role or scope", async () => {
      gitlab.injectFault({ match: "/registry/repositories", status: 403 });
      const error = await failure(client.listRepositories(PROJECT));
      expect(error.message).toBe(
        `GitLab denied access to the container registry of ${PROJECT} on ${gitlab.url} (403)`,
      );
      expect(error.hint).toMatch(/Reporter/);
    });

    it("says which project was not found", async () => {
      const error = await failure(client.listRepositories("hercules/nothing-here"));
      expect(error.message).toBe(`GitLab project hercules/nothing-here not found on ${gitlab.url}`);
      expect(error.hint).toMatch(/--gitlab-project/);
    });

    it("retries a 5xx and then succeeds, logging the retry", async () => {
      gitlab.injectFault({ match: "/registry/repositories", status: 503, times: 1 });
      const repos = await client.listRepositories(PROJECT);
      expect(repos).toHaveLength(2);
      expect(gitlab.requests.map((r) => r.status)).toEqual([503, 200]);
      const warnings = log.lines.map(
        (l) => JSON.parse(l) as { level: number; msg: string; status?: number },
      );
      expect(warnings.some((w) => w.level === 40 && w.status === 503)).toBe(true);
      expect(log.lines.join("")).not.toContain(TOKEN);
    });

    it("retries a dropped connection", async () => {
      gitlab.injectFault({ match: "/registry/repositories", cut: true });
      expect(await client.listRepositories(PROJECT)).toHaveLength(2);
      expect(gitlab.requests.map((r) => r.status)).toEqual([0, 200]);
    });

    it("honours retry-after on 429", async () => {
      gitlab.injectFault({
        match: "/registry/repositories",
        status: 429,
        headers: { "retry-after": "1" },
      });
      const started = Date.now();
      await client.listRepositories(PROJECT);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(gitlab.requests.map((r) => r.status)).toEqual([429, 200]);
    });

    it("gives up after the configured retries with a hint that GitLab is struggling", async () => {
      const impatient = new GitlabRegistryClient({
        fetch: globalThis.fetch,
        host: gitlab.url,
        token: TOKEN,
        logger: log.logger,
        retry: { attempts: 3, baseDelayMs: 5 },
      });
      gitlab.injectFault({ match: "/registry/repositories", status: 500, times: 10 });
      const error = await failure(impatient.listRepositories(PROJECT));
      expect(error.message).toBe(`GitLab at ${gitlab.url} answered 500: 500 Internal Server Error`);
      expect(error.hint).toMatch(/try again later/);
      expect(gitlab.requests).toHaveLength(3);
    });

    it("sends its requests through the fetch it is given", async () => {
      const seen: string[] = [];
      const counted = new GitlabRegistryClient({
        host: gitlab.url,
        token: TOKEN,
        logger: log.logger,
        fetch: (input, init) => {
          seen.push(input instanceof Request ? input.url : input.toString());
          return fetch(input, init);
        },
      });
      expect(await counted.listRepositories(PROJECT)).toHaveLength(2);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toContain("/api/v4/projects/hercules%2Fveloxtesting/registry/repositories");
    });

    it("names the URL and --gitlab-host when nothing listens there", async () => {
      const port = await freePort();
      const nowhere = new GitlabRegistryClient({
        fetch: globalThis.fetch,
        host: `http://127.0.0.1:${port}`,
        token: TOKEN,
        logger: log.logger,
      });
      const error = await failure(nowhere.listRepositories(PROJECT));
      expect(error.message).toBe(`Cannot reach GitLab at http://127.0.0.1:${port} (ECONNREFUSED)`);
      expect(error.hint).toMatch(/--gitlab-host/);
    });
  },
);
