import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedImages } from "../../src/domain/images.js";
import { addMissingBuild, singleBuild } from "../testbed/demo-data.js";
import { daemonOnceArgs, startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { STANDIN_USER_AGENT } from "../testbed/gitlab-standin.js";
import {
  PROXY_OUTGOING_ADDRESS,
  proxyGate,
  startTinyproxy,
  type ProxyRequest,
  type TinyProxy,
} from "../testbed/proxy.js";
import { metadataOf, type ScenarioRun } from "../testbed/scenario.js";
import { gitlabTags } from "./checks.js";
import { runBinary } from "./run-cli.js";

const gate = testbedGate();
const proxyCheck = proxyGate();

/** Two builds GitLab lacks: the newest is synced through the proxy, the older one around it. */
const BUILDS: ScenarioRun[] = [
  singleBuild(7101, "proxy-old"),
  singleBuild(7102, "proxy-new", "linux/arm64"),
];

describe.skipIf(gate.skip || proxyCheck.skip)(
  `every request through a real proxy (tinyproxy) ${gate.reason}${proxyCheck.reason}`,
  () => {
    let tb: Testbed;
    let proxy: TinyProxy;
    const hostOf = (url: string) => new URL(url).host;
    /**
     * One `daemon --once` over the newest `limit` runs with `env`; what the proxy was asked, and
     * the address every server saw each request of it come from (the registry: the tool's only,
     * not the GitLab stand-in's own reads).
     */
    const cycle = async (limit: number, env: Record<string, string>) => {
      const since = proxy.mark();
      const registryMark = tb.gitlab.registry.accessLog().length;
      tb.github.resetRequests();
      tb.gitlab.resetRequests();
      const result = await daemon(limit, env);
      expect(result.code, result.stderr).toBe(0);
      const registry = tb.gitlab.registry
        .accessLog()
        .slice(registryMark)
        .filter((e) => e.userAgent !== STANDIN_USER_AGENT);
      expect(tb.github.requests.some((r) => r.host === "blob")).toBe(true);
      expect(tb.gitlab.requests.length).toBeGreaterThan(0);
      expect(registry.length).toBeGreaterThan(0);
      const peers = [
        ...tb.github.requests.map((r) => r.peer),
        ...tb.gitlab.requests.map((r) => r.peer),
        ...registry.map((e) => e.remote),
      ];
      return { seen: proxy.requests(since), peers: new Set(peers) };
    };
    const synced = async (run: ScenarioRun, index: number) => {
      const present = await gitlabTags(tb);
      for (const image of expectedImages(metadataOf(run, index))) {
        expect(present).toContain(image.gitlabTag);
      }
    };
    const daemon = (limit: number, env: Record<string, string>) =>
      runBinary(daemonOnceArgs(tb, ["--limit", String(limit)]), {
        env: { ...tb.env, ...env },
        cwd: tb.dir,
        timeoutMs: 120_000,
      });
    const paths = (requests: ProxyRequest[], host: string) =>
      requests
        .filter((r) => r.host === host)
        .map((r) => (r.method === "CONNECT" ? "CONNECT" : new URL(r.target).pathname));

    beforeAll(async () => {
      tb = await startTestbed();
      proxy = await startTinyproxy({ dir: path.join(tb.dir, "proxy") });
      for (const [index, run] of BUILDS.entries()) await addMissingBuild(tb, run, index);
    });
    afterAll(async () => {
      await proxy?.stop();
      await tb?.stop();
    });

    it("HTTPS_PROXY/HTTP_PROXY: GitHub API, blob host, GitLab API, token realm and registry all go through it", async () => {
      const { seen, peers } = await cycle(1, {
        HTTPS_PROXY: proxy.url,
        HTTP_PROXY: proxy.url,
        NO_PROXY: "",
      });
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
      expect(peers).toEqual(new Set([PROXY_OUTGOING_ADDRESS]));
      // Nothing else was asked of the proxy.
      const known = new Set([
        hostOf(tb.github.url),
        hostOf(tb.github.blobUrl),
        hostOf(tb.gitlab.url),
        tb.gitlab.registryHost,
      ]);
      expect(seen.filter((r) => !known.has(r.host))).toEqual([]);

      await synced(BUILDS[1] as ScenarioRun, 1);
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
      const { seen: none, peers: direct } = await cycle(2, {
        https_proxy: proxy.url,
        http_proxy: proxy.url,
        no_proxy: "localhost,127.0.0.1",
      });
      expect(none).toEqual([]);
      expect(direct).toEqual(new Set(["127.0.0.1"]));
      await synced(BUILDS[0] as ScenarioRun, 0);
    });
  },
);
