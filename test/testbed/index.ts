import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { silentLogger } from "../../src/report/logger.js";
import { RegistryClient, type RegistryClientOptions } from "../../src/registry/client.js";
import { startGithubStandIn, type GithubStandIn } from "./github-standin.js";
import { startGitlabStandIn, type GitlabStandIn } from "./gitlab-standin.js";
import { registryAvailability } from "./system.js";
import { makeTestCa, type TestCa } from "./tls.js";

export const GITHUB_TOKEN = "ghp_testbedToken0123456789";
export const GITLAB_TOKEN = "glpat-testbedToken0123";
export const REGISTRY_USER = "ci-bot";
export const REGISTRY_PASSWORD = "registry-secret-42";
export const PROJECT_PATH = "hercules/veloxtesting";

/** Everything the tool talks to, on loopback: GitHub and GitLab stand-ins and a real registry. */
export interface Testbed {
  dir: string;
  github: GithubStandIn;
  gitlab: GitlabStandIn;
  /** Environment for the CLI: tokens only; addresses go in as flags, as an operator would pass them. */
  env: Record<string, string>;
  /** Flags pointing the CLI at this testbed. */
  githubArgs: string[];
  gitlabArgs: string[];
  registryArgs: string[];
  stop(): Promise<void>;
}

export interface TestbedOptions {
  dir?: string;
  /**
   * Serve GitLab and the registry over https with a certificate from a CA made for the run;
   * `env` then carries NODE_EXTRA_CA_CERTS, and the flags point at the https addresses.
   */
  tls?: boolean;
}

export async function startTestbed(options: TestbedOptions = {}): Promise<Testbed> {
  const dir = options.dir ?? (await mkdtemp(path.join(tmpdir(), "gh-gitlab-sync-testbed-")));
  const github = await startGithubStandIn({ token: GITHUB_TOKEN });
  let gitlab: GitlabStandIn;
  let ca: TestCa | undefined;
  try {
    ca = options.tls ? await makeTestCa(path.join(dir, "tls")) : undefined;
    gitlab = await startGitlabStandIn({
      token: GITLAB_TOKEN,
      registryUsers: { [REGISTRY_USER]: REGISTRY_PASSWORD },
      projectPath: PROJECT_PATH,
      dir: path.join(dir, "gitlab"),
      ...(ca ? { tls: ca } : {}),
    });
  } catch (err) {
    await github.close();
    if (!options.dir) await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    github,
    gitlab,
    env: {
      GH_TOKEN: GITHUB_TOKEN,
      GITLAB_TOKEN,
      ...(ca ? { NODE_EXTRA_CA_CERTS: ca.caPath } : {}),
    },
    githubArgs: ["--github-api-url", github.url],
    gitlabArgs: ["--gitlab-host", gitlab.tlsUrl ?? gitlab.url, "--gitlab-project", PROJECT_PATH],
    registryArgs: [
      "--registry",
      gitlab.registryHost,
      "--registry-username",
      REGISTRY_USER,
      "--registry-password",
      REGISTRY_PASSWORD,
    ],
    async stop() {
      await Promise.allSettled([github.close(), gitlab.close()]);
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A distribution-API client of the testbed's registry, logged in as its CI user; `options`
 * replace any of that (a front's address, a logger to read, a quicker retry).
 */
export function testbedRegistryClient(
  tb: Pick<Testbed, "gitlab">,
  options: Partial<RegistryClientOptions> = {},
): RegistryClient {
  return new RegistryClient({
    fetch: globalThis.fetch,
    registry: tb.gitlab.registryHost,
    username: REGISTRY_USER,
    password: REGISTRY_PASSWORD,
    logger: silentLogger(),
    ...options,
  });
}

/** `daemon` on the testbed with the registry engine and JSON logs, downloading to `downloads`; `extra` last. */
export function daemonArgs(tb: Testbed, downloads: string, extra: string[] = []): string[] {
  return [
    "daemon",
    "--engine",
    "registry",
    "--downloads-dir",
    downloads,
    "--log-format",
    "json",
    ...tb.githubArgs,
    ...tb.gitlabArgs,
    ...tb.registryArgs,
    ...extra,
  ];
}

/** `daemon --once` on the testbed, as `daemonArgs` has it, downloading to the testbed's directory. */
export function daemonOnceArgs(tb: Testbed, extra: string[] = []): string[] {
  return daemonArgs(tb, path.join(tb.dir, "downloads"), ["--once", ...extra]);
}

/**
 * The variables a person exports to use the testbed by hand (`npm run testbed` prints them):
 * the same names the tool reads on a real host, so every command runs without address flags.
 */
export function testbedExports(tb: Testbed): Record<string, string> {
  return {
    GITHUB_API_URL: tb.github.url,
    GH_TOKEN: GITHUB_TOKEN,
    GITLAB_HOST: tb.gitlab.tlsUrl ?? tb.gitlab.url,
    GITLAB_TOKEN,
    CI_REGISTRY: tb.gitlab.registryHost,
    GITLAB_REGISTRY_USERNAME: REGISTRY_USER,
    GITLAB_REGISTRY_PASSWORD: REGISTRY_PASSWORD,
    ...(tb.env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: tb.env.NODE_EXTRA_CA_CERTS } : {}),
  };
}

/**
 * Whether the real parts can run here. Off CI a missing part skips the tests that need it, with the
 * reason in the summary; under CI=true a missing part is a failure, so a green CI means tested.
 */
export function testbedGate(): { skip: boolean; reason: string } {
  const availability = registryAvailability();
  if (availability.ok) return { skip: false, reason: "" };
  const reason = availability.reason ?? "testbed parts missing";
  if (process.env.CI)
    throw new Error(`CI=true but the testbed cannot run: ${reason} (run scripts/setup-system.sh)`);
  return { skip: true, reason: `skipped: ${reason} — run \`npm run setup:system\`` };
}
