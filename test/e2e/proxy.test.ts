import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedImages } from "../../src/domain/images.js";
import { addArtifactRun } from "../testbed/artifacts.js";
import { startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { STANDIN_USER_AGENT } from "../testbed/gitlab-standin.js";
import {
  PROXY_OUTGOING_ADDRESS,
  proxyGate,
  startTinyproxy,
  type ProxyRequest,
  type TinyProxy,
} from "../testbed/proxy.js";
import { metadataOf, ref, type ScenarioRun } from "../testbed/scenario.js";
import { gitlabTags } from "./checks.js";
import { runBinary } from "./run-cli.js";

const gate = testbedGate();
const proxyCheck = proxyGate();

/** Two builds GitLab lacks: the newest is synced through the proxy, the older one around it. */
const BUILDS: ScenarioRun[] = [
  {
    id: 7101,
    presto: ref("proxy-old"),
    velox: ref("proxy-old"),
    platform: "linux/amd64",
    mode: "single",
  },
  {
    id: 7102,
    presto: ref("proxy-new"),
    velox: ref("proxy-new"),
    platform: "linux/arm64",
    mode: "single",
  },
];

describe.skipIf(gate.skip || proxyCheck.skip)(
  `every request through a real proxy (tinyproxy) ${gate.reason}${proxyCheck.reason}`,
  () => {
    let tb: Testbed;
    let proxy: TinyProxy;
    const hostOf = (url: string) => new URL(url).host;
    const daemon = (limit: number, env: Record<string, string>) =>
      runBinary(
        [
          "daemon",
          "--once",
          "--engine",
          "registry",
          "--limit",
          String(limit),
          "--downloads-dir",
          path.join(tb.dir, "downloads"),
          "--log-format",
          "json",
          ...tb.githubArgs,
          ...tb.gitlabArgs,
          ...tb.registryArgs,
        ],
        { env: { ...tb.env, ...env }, cwd: tb.dir, timeoutMs: 120_000 },
      );
    const paths = (requests: ProxyRequest[], host: string) =>
      requests
        .filter((r) => r.host === host)
        .map((r) => (r.method === "CONNECT" ? "CONNECT" : new URL(r.target).pathname));

    beforeAll(async () => {
      tb = await startTestbed();
      proxy = await startTinyproxy({ dir: path.join(tb.dir, "proxy") });
      for (const [index, run] of BUILDS.entries()) {
        const metadata = metadataOf(run, index);
        await addArtifactRun(tb.github, {
          id: run.id,
          metadata,
          dir: path.join(tb.dir, "fixtures", String(run.id)),
          createdAt: metadata["Generated at"] ?? "2025-10-01T00:00:00Z",
        });
      }
    });
    afterAll(async () => {
      await proxy?.stop();
      await tb?.stop();
    });

    it("HTTPS_PROXY/HTTP_PROXY: GitHub API, blob host, GitLab API, token realm and registry all go through it", async () => {
      const since = proxy.mark();
      const registryMark = tb.gitlab.registry.accessLog().length;
      tb.github.resetRequests();
      tb.gitlab.resetRequests();
      const result = await daemon(1, {
        HTTPS_PROXY: proxy.url,
        HTTP_PROXY: proxy.url,
        NO_PROXY: "",
      });
      expect(result.code, result.stderr).toBe(0);

      const seen = proxy.requests(since);
      const github = paths(seen, hostOf(tb.github.url));
      const blob = paths(seen, hostOf(tb.github.blobUrl));
      const gitlab = paths(seen, hostOf(tb.gitlab.url));
      const registry = paths(seen, tb.gitlab.registryHost);
      expect(github).toContainEqual(expect.stringMatching(/\/actions\/workflows\/.*\/runs$/));
      expect(github).toContainEqual(expect.stringMatching(/\/artifacts\/\d+\/zip$/));
      expect(blob.length).toBeGreaterThanOrEqual(2); // a job log and the artifact zip
      expect(gitlab).toContainEqual(expect.stringMatching(/^\/api\/v4\/projects\//));
      expect(gitlab).toContain("/jwt/auth");
      expect(registry).toContain("/v2/");
      expect(registry).toContainEqual(expect.stringMatching(/\/manifests\//));
      // Every request the servers answered came from the proxy's own address: none went around it.
      const around = <T extends { peer?: string; remote?: string }>(list: T[]) =>
        list.filter((r) => (r.peer ?? r.remote) !== PROXY_OUTGOING_ADDRESS);
      expect(tb.github.requests.length).toBeGreaterThan(0);
      expect(around(tb.github.requests)).toEqual([]);
      expect(around(tb.gitlab.requests)).toEqual([]);
      const tool = tb.gitlab.registry
        .accessLog()
        .slice(registryMark)
        .filter((e) => e.userAgent !== STANDIN_USER_AGENT);
      expect(tool.length).toBeGreaterThan(0);
      expect(around(tool)).toEqual([]);
      // Nothing else was asked of the proxy.
      const known = new Set([
        hostOf(tb.github.url),
        hostOf(tb.github.blobUrl),
        hostOf(tb.gitlab.url),
        tb.gitlab.registryHost,
      ]);
      expect(seen.filter((r) => !known.has(r.host))).toEqual([]);

      const newest = BUILDS[1] as ScenarioRun;
      const pushed = expectedImages(metadataOf(newest, 1)).map((i) => i.gitlabTag);
      const present = await gitlabTags(tb);
      for (const tag of pushed) expect(present).toContain(tag);
    });

    it("no_proxy (lowercase forms too): a covered host never reaches the proxy, by host:port or by name", async () => {
      // GitHub (both hosts) and GitLab covered by host:port; the rest of the way by lowercase vars.
      const since = proxy.mark();
      const partly = await runBinary(
        [
          "xref",
          "--state-dir",
          path.join(tb.dir, "xref-state"),
          "--log-format",
          "json",
          ...tb.githubArgs,
          ...tb.gitlabArgs,
        ],
        {
          env: {
            ...tb.env,
            http_proxy: proxy.url,
            no_proxy: `${hostOf(tb.github.url)},${hostOf(tb.github.blobUrl)}`,
          },
          cwd: tb.dir,
        },
      );
      expect(partly.code, partly.stderr).toBe(0);
      expect(proxy.hosts(since)).toEqual([hostOf(tb.gitlab.url)]);

      // Everything covered: the older build is synced and the proxy sees nothing at all.
      const before = proxy.mark();
      const registryMark = tb.gitlab.registry.accessLog().length;
      tb.github.resetRequests();
      tb.gitlab.resetRequests();
      const result = await daemon(2, {
        https_proxy: proxy.url,
        http_proxy: proxy.url,
        no_proxy: "localhost,127.0.0.1",
      });
      expect(result.code, result.stderr).toBe(0);
      expect(tb.github.requests.some((r) => r.host === "blob")).toBe(true);
      expect(proxy.requests(before)).toEqual([]);
      const direct = [
        ...tb.github.requests.map((r) => r.peer),
        ...tb.gitlab.requests.map((r) => r.peer),
        ...tb.gitlab.registry
          .accessLog()
          .slice(registryMark)
          .map((e) => e.remote),
      ];
      expect(new Set(direct)).toEqual(new Set(["127.0.0.1"]));
      const older = expectedImages(metadataOf(BUILDS[0] as ScenarioRun, 0)).map((i) => i.gitlabTag);
      const present = await gitlabTags(tb);
      for (const tag of older) expect(present).toContain(tag);
    });
  },
);
