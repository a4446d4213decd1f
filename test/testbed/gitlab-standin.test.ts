import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startGitlabStandIn, type GitlabStandIn } from "./gitlab-standin.js";
import { pushImage, seedImage, type SeededImage } from "./registry-seed.js";
import { registryAvailability } from "./system.js";

const availability = registryAvailability();
const TOKEN = "glpat-standin-test-token";
const TAGS = Array.from({ length: 130 }, (_, i) => `presto-${String(i).padStart(3, "0")}-velox-x`);

describe.skipIf(!availability.ok)(
  `GitLab stand-in backed by the real registry${availability.ok ? "" : ` (skipped: ${availability.reason})`}`,
  () => {
    let dir: string;
    let gitlab: GitlabStandIn;
    let coordinator: SeededImage;
    let coordinatorId: number;

    const api = async (
      path: string,
      headers: Record<string, string> = { "private-token": TOKEN },
    ) => {
      const res = await fetch(`${gitlab.url}/api/v4${path}`, { headers });
      return { res, body: (await res.json()) as unknown };
    };

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "standin-test-"));
      gitlab = await startGitlabStandIn({ token: TOKEN, dir });
      coordinator = await seedImage(gitlab, "x86/presto-coordinator", TAGS, {
        created: "2025-10-01T12:00:00Z",
      });
      await seedImage(gitlab, "arm/presto-native-worker-cpu", ["only"]);
      // Outside the project: must not show up in its listing.
      await pushImage(gitlab, "elsewhere/image", ["x"]);
      const { body } = await api("/projects/42/registry/repositories");
      const repos = body as Array<{ id: number; name: string }>;
      coordinatorId = repos.find((r) => r.name === "x86/presto-coordinator")?.id ?? -1;
    });

    afterAll(async () => {
      await gitlab?.close();
      await rm(dir, { recursive: true, force: true });
    });

    beforeEach(() => {
      gitlab.resetRequests();
      gitlab.clearFaults();
    });

    it("lists the project's repositories by URL-encoded path and by id, like GitLab", async () => {
      const byPath = await api(
        "/projects/hercules%2Fveloxtesting/registry/repositories?tags_count=true",
      );
      const byId = await api("/projects/42/registry/repositories?tags_count=true");
      expect(byPath.res.status).toBe(200);
      expect(byId.body).toEqual(byPath.body);
      const repos = byPath.body as Array<Record<string, unknown>>;
      expect(repos).toHaveLength(2);
      expect(repos).toContainEqual(
        expect.objectContaining({
          id: coordinatorId,
          name: "x86/presto-coordinator",
          path: "hercules/veloxtesting/x86/presto-coordinator",
          project_id: 42,
          location: `${gitlab.registryHost}/hercules/veloxtesting/x86/presto-coordinator`,
          tags_count: 130,
        }),
      );
      expect(Number.isNaN(Date.parse(String(repos[0]?.created_at)))).toBe(false);
    });

    it("paginates more than 100 tags with GitLab's headers", async () => {
      const base = `/projects/42/registry/repositories/${coordinatorId}/tags`;
      const first = await api(`${base}?per_page=100`);
      expect(first.body).toHaveLength(100);
      expect(
        Object.fromEntries(
          ["x-total", "x-total-pages", "x-page", "x-per-page", "x-next-page", "x-prev-page"].map(
            (h) => [h, first.res.headers.get(h)],
          ),
        ),
      ).toEqual({
        "x-total": "130",
        "x-total-pages": "2",
        "x-page": "1",
        "x-per-page": "100",
        "x-next-page": "2",
        "x-prev-page": "",
      });
      const link = first.res.headers.get("link") ?? "";
      expect(link).toContain(`<${gitlab.url}/api/v4${base}?per_page=100&page=2>; rel="next"`);
      expect(link).toContain('rel="first"');
      expect(link).toContain('rel="last"');
      expect(link).not.toContain('rel="prev"');

      const second = await api(`${base}?per_page=100&page=2`);
      const page2 = second.body as Array<{ name: string; path: string; location: string }>;
      expect(page2).toHaveLength(30);
      expect(second.res.headers.get("x-next-page")).toBe("");
      expect(second.res.headers.get("x-prev-page")).toBe("1");
      expect(second.res.headers.get("link")).toContain('rel="prev"');
      expect(second.res.headers.get("link")).not.toContain('rel="next"');
      const names = [...(first.body as Array<{ name: string }>), ...page2].map((t) => t.name);
      expect(names).toEqual(TAGS);
      expect(page2[29]).toEqual({
        name: "presto-129-velox-x",
        path: "hercules/veloxtesting/x86/presto-coordinator:presto-129-velox-x",
        location: `${gitlab.registryHost}/hercules/veloxtesting/x86/presto-coordinator:presto-129-velox-x`,
      });

      const defaults = await api(base);
      expect(defaults.body).toHaveLength(20);
      expect(defaults.res.headers.get("x-total-pages")).toBe("7");
      const clamped = await api(`${base}?per_page=500`);
      expect(clamped.res.headers.get("x-per-page")).toBe("100");
    });

    it("reads tag details from the registry's manifest and config", async () => {
      const { res, body } = await api(
        `/projects/42/registry/repositories/${coordinatorId}/tags/presto-007-velox-x`,
      );
      expect(res.status).toBe(200);
      const revision = coordinator.configDigest.replace("sha256:", "");
      expect(body).toEqual({
        name: "presto-007-velox-x",
        path: "hercules/veloxtesting/x86/presto-coordinator:presto-007-velox-x",
        location: `${gitlab.registryHost}/hercules/veloxtesting/x86/presto-coordinator:presto-007-velox-x`,
        revision,
        short_revision: revision.slice(0, 9),
        digest: coordinator.manifestDigest,
        created_at: "2025-10-01T12:00:00Z",
        total_size: coordinator.totalSize,
      });
      const missing = await api(`/projects/42/registry/repositories/${coordinatorId}/tags/nope`);
      expect(missing.res.status).toBe(404);
      expect(missing.body).toEqual({ message: "404 Tag Not Found" });
    });

    it("answers 404 for an unknown project and 401 for a bad or missing token", async () => {
      const unknown = await api("/projects/nobody%2Fnothing/registry/repositories");
      expect(unknown.res.status).toBe(404);
      expect(unknown.body).toEqual({ message: "404 Project Not Found" });
      const wrong = await api("/projects/42/registry/repositories", { "private-token": "nope" });
      expect(wrong.res.status).toBe(401);
      expect(wrong.body).toEqual({ message: "401 Unauthorized" });
      const none = await api("/projects/42/registry/repositories", {});
      expect(none.res.status).toBe(401);
      const job = await api("/projects/42/registry/repositories", { "job-token": TOKEN });
      expect(job.res.status).toBe(200);
    });

    it("injects faults a given number of times and records every request", async () => {
      gitlab.injectFault({
        match: /\/registry\/repositories$/,
        status: 503,
        headers: { "retry-after": "3" },
        times: 2,
      });
      const first = await api("/projects/42/registry/repositories");
      expect(first.res.status).toBe(503);
      expect(first.res.headers.get("retry-after")).toBe("3");
      expect(first.body).toEqual({ message: "503 Service Unavailable" });
      expect((await api("/projects/42/registry/repositories")).res.status).toBe(503);
      expect((await api("/projects/42/registry/repositories")).res.status).toBe(200);
      expect(gitlab.requests.map((r) => r.status)).toEqual([503, 503, 200]);
      expect(gitlab.requests[0]).toEqual({
        method: "GET",
        path: "/api/v4/projects/42/registry/repositories",
        status: 503,
        // Who asked: a proxy's outgoing address tells carried requests from direct ones.
        peer: "127.0.0.1",
      });
    });
  },
);
