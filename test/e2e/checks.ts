import { setTimeout as sleep } from "node:timers/promises";
import { expect } from "vitest";
import type { RegistryClient } from "../../src/registry/client.js";
import { FlakyProxy } from "../testbed/flaky-proxy.js";
import type { Testbed } from "../testbed/index.js";
import {
  plainStderrLines,
  runBinary,
  startBinary,
  type CliResult,
  type RunOptions,
} from "./run-cli.js";

/** One clear line on stderr, no stack trace: what every failure must look like to an operator. */
export function expectOneLineError(result: CliResult, pattern: RegExp, code = 1): void {
  expect(result.code, result.stdout + result.stderr).toBe(code);
  const errors = plainStderrLines(result.stderr).filter(
    (l) => l.startsWith("Error: ") || l.startsWith("error: "),
  );
  expect(errors, result.stderr).toHaveLength(1);
  expect(errors[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

/** Every `repo:tag` GitLab lists for the testbed's project, read through `gitlab-list --json`. */
export async function gitlabTags(tb: Testbed): Promise<Set<string>> {
  const result = await runBinary(["gitlab-list", ...tb.gitlabArgs, "--json"], { env: tb.env });
  expect(result.code, result.stderr).toBe(0);
  const json = JSON.parse(result.stdout) as {
    repositories: Array<{ name: string; tags: Array<{ name: string }> }>;
  };
  return new Set(json.repositories.flatMap((r) => r.tags.map((t) => `${r.name}:${t.name}`)));
}

/**
 * What a person does to a registry-engine `push` or `sync` (`command(registry)` its arguments):
 * Ctrl-C once two upload chunks are in the registry, and the same command again. It goes through
 * a link that buffers nothing, so that a chunk cut on the way reaches the registry cut, as with
 * a registry reached directly, slowed down so that another chunk is on its way at the Ctrl-C.
 * Checks that the rerun took the upload up and that nothing went twice: both runs together sent
 * the blobs of `repositories:tag` once, plus the requests' headers. Returns what each sent.
 */
export async function expectResumedAfterStop(
  tb: Testbed,
  registry: RegistryClient,
  command: (registry: string) => string[],
  options: RunOptions,
  images: { repositories: string[]; tag: string },
): Promise<{ sentBefore: number; sentByRerun: number; total: number }> {
  const [host, port] = tb.gitlab.registryHost.split(":");
  const link = new FlakyProxy({ host: host ?? "127.0.0.1", port: Number(port) });
  await link.start();
  try {
    const args = [...command(link.host), "--log-format", "json"];
    link.throttle(6 << 20);
    const mark = tb.gitlab.registry.accessLog().length;
    const first = startBinary(args, options);
    const chunksIn = () =>
      tb.gitlab.registry
        .accessLog()
        .slice(mark)
        .filter((e) => e.method === "PATCH" && e.status === 202).length;
    for (const deadline = Date.now() + 60_000; chunksIn() < 2; await sleep(20)) {
      if (Date.now() > deadline) throw new Error(`no chunk went up: ${first.output().stderr}`);
    }
    first.child.kill("SIGINT");
    const stopped = await first.result;
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(stopped.stderr).toContain("Interrupted by SIGINT");
    const sentBefore = link.bytesUp;
    link.throttle(Infinity);
    link.resetCounts();
    const rerun = await runBinary(args, options);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toContain("resuming an upload");
    expect(rerun.stderr).not.toContain("the registry lost the upload");
    const sentByRerun = link.bytesUp;
    const total = await blobBytes(registry, images.repositories, images.tag);
    expect(sentByRerun).toBeLessThan(total - (4 << 20));
    expect(sentBefore + sentByRerun).toBeLessThan(total + (1 << 20));
    return { sentBefore, sentByRerun, total };
  } finally {
    await link.stop();
  }
}

/** Bytes of the blobs (configs and layers) of the images `repositories:tag`, each blob once. */
async function blobBytes(
  registry: RegistryClient,
  repositories: string[],
  tag: string,
): Promise<number> {
  const blobs = new Map<string, number>();
  for (const repository of repositories) {
    const manifest = await registry.getManifest(repository, tag);
    const parsed = JSON.parse(manifest?.bytes.toString() ?? "{}") as {
      config: { digest: string; size: number };
      layers: Array<{ digest: string; size: number }>;
    };
    for (const blob of [parsed.config, ...parsed.layers]) blobs.set(blob.digest, blob.size);
  }
  return [...blobs.values()].reduce((sum, size) => sum + size, 0);
}
