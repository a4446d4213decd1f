import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedImages } from "../../src/domain/images.js";
import { addMissingBuild, singleBuild } from "../testbed/demo-data.js";
import { daemonOnceArgs, startTestbed, testbedGate, type Testbed } from "../testbed/index.js";
import { proxyGate, startTinyproxy, type TinyProxy } from "../testbed/proxy.js";
import { metadataOf } from "../testbed/scenario.js";
import { expectOneLineError, gitlabTags } from "./checks.js";
import { runBinary } from "./run-cli.js";

const gate = testbedGate();
const proxyCheck = proxyGate();

const BUILD = singleBuild(7201, "tls");

describe.skipIf(gate.skip || proxyCheck.skip)(
  `GitLab and its registry over https with an in-house CA ${gate.reason}${proxyCheck.reason}`,
  () => {
    let tb: Testbed;
    let proxy: TinyProxy;
    const withoutCa = () => ({ ...tb.env, NODE_EXTRA_CA_CERTS: undefined });

    beforeAll(async () => {
      tb = await startTestbed({ tls: true });
      proxy = await startTinyproxy({ dir: path.join(tb.dir, "proxy") });
      await addMissingBuild(tb, BUILD, 0);
    });
    afterAll(async () => {
      await proxy?.stop();
      await tb?.stop();
    });

    it("without NODE_EXTRA_CA_CERTS: one line naming the untrusted certificate and the variable", async () => {
      expect(tb.gitlabArgs[1]).toMatch(/^https:/);
      const listing = await runBinary(["gitlab-list", ...tb.gitlabArgs], { env: withoutCa() });
      expectOneLineError(
        listing,
        /Cannot verify the TLS certificate of GitLab at https:\/\/127\.0\.0\.1:\d+.*NODE_EXTRA_CA_CERTS/,
      );
      const retag = await runBinary(
        ["retag", "x86/presto-coordinator:a", "b", ...tb.gitlabArgs, ...tb.registryArgs],
        { env: withoutCa() },
      );
      expectOneLineError(
        retag,
        new RegExp(
          `registry ${tb.gitlab.registryHost}: cannot verify its TLS certificate .*NODE_EXTRA_CA_CERTS`,
        ),
      );
    });

    it("with NODE_EXTRA_CA_CERTS: daemon --once syncs over https, through the proxy as well", async () => {
      const since = proxy.mark();
      const result = await runBinary(daemonOnceArgs(tb), {
        env: { ...tb.env, HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url },
        cwd: tb.dir,
        timeoutMs: 120_000,
      });
      expect(result.code, result.stderr).toBe(0);
      // https goes through the proxy as a tunnel to GitLab (API and token realm) and the registry.
      const tunnels = proxy
        .requests(since)
        .filter((r) => r.method === "CONNECT")
        .map((r) => r.host);
      expect(tunnels).toContain(new URL(tb.gitlabArgs[1] ?? "").host);
      expect(tunnels).toContain(tb.gitlab.registryHost);
      const present = await gitlabTags(tb);
      for (const image of expectedImages(metadataOf(BUILD, 0))) {
        expect(present).toContain(image.gitlabTag);
      }
    });
  },
);
