import { homedir } from "node:os";
import path from "node:path";
import { z } from "zod";
import { UsageError } from "../errors.js";
import { IMAGE_TAG_GRAMMAR, isImageTag } from "../domain/images.js";
import { isRegistryHost, isRepositoryPath } from "../domain/reference.js";
import { CACHE_SUBDIR, DEFAULT_DOWNLOADS_DIR, MAX_LIMIT, STATE_SUBDIR } from "./defaults.js";

export const imageTagSchema = z
  .string()
  .refine(isImageTag, `must match ${IMAGE_TAG_GRAMMAR}, like presto-<sha>-velox-<sha>-linux-amd64`);

const ownerRepo = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, "must be owner/name, like rapidsai/velox-testing");

const httpUrl = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}, "must be an http(s) URL");

const optionalText = z
  .string()
  .optional()
  .transform((value) => (value && value.trim() ? value.trim() : undefined));

/**
 * A whole number as commander hands it over: a string of decimal digits, so `0x10` and `1e3`
 * are refused rather than read as 16 and 1000. One message covers every way to get it wrong.
 */
const wholeNumber = (
  min: number,
  max: number,
  message = `must be a whole number from ${min} to ${max}`,
) =>
  z
    .string({ error: message })
    .trim()
    .regex(/^\d+$/, message)
    .transform(Number)
    .pipe(z.number().min(min, message).max(max, message));

export const githubOptionsSchema = z.object({
  repo: ownerRepo,
  workflow: z.string().trim().min(1, "must name a workflow file"),
  branch: optionalText,
  limit: wholeNumber(1, MAX_LIMIT),
  ghToken: optionalText,
  githubApiUrl: httpUrl,
});
export type GithubOptions = z.infer<typeof githubOptionsSchema>;

export const gitlabOptionsSchema = z.object({
  gitlabHost: z.string().trim().min(1, "must name a GitLab host or URL"),
  gitlabProject: z.string().trim().min(1, "must name a project path or id"),
  gitlabToken: optionalText,
});
export type GitlabOptions = z.infer<typeof gitlabOptionsSchema>;

/** A registry address as it appears in an image reference: `host[:port]`, no scheme, no path. */
const registryHost = z
  .string()
  .trim()
  .refine(
    isRegistryHost,
    "must be host[:port] without a scheme (port 1–65535), like gitlab-master.nvidia.com:5005",
  );

/** A project path inside the registry: lowercase path segments, as Docker references require. */
const registryPath = z
  .string()
  .trim()
  .refine(isRepositoryPath, "must be a lowercase registry path like hercules/veloxtesting");

export const registryOptionsSchema = z.object({
  registry: registryHost,
  registryUsername: optionalText,
  registryPassword: optionalText,
  insecureRegistry: z.boolean().default(false),
  registryProject: registryPath.optional(),
  engine: z.enum(["docker", "registry"]).default("docker"),
});
export type RegistryOptions = z.infer<typeof registryOptionsSchema>;

const WEEK_SECONDS = 7 * 86_400;
const seconds = wholeNumber(
  1,
  WEEK_SECONDS,
  `must be a whole number of seconds, at least 1 and at most a week (${WEEK_SECONDS})`,
);

/** The daemon's timing: every wait is whole seconds, from one second to a week. */
export const daemonOptionsSchema = z.object({
  interval: seconds,
  /** 0 turns polling off: only the full cycle every --interval. */
  pollInterval: wholeNumber(
    0,
    WEEK_SECONDS,
    `must be a whole number of seconds from 0 (no polling) to a week (${WEEK_SECONDS})`,
  ),
  retryBackoff: seconds,
  retryBackoffMax: seconds,
});

/** `--http-timeout`: whole seconds, one to a day. */
export const httpOptionsSchema = z.object({
  httpTimeout: wholeNumber(1, 86_400, "must be a whole number of seconds from 1 to 86400"),
});

/** A path may hold anything but a NUL byte, which no file system accepts (Node throws a TypeError). */
const NO_NUL = "must not hold a NUL byte";
const noNul = (p: string | undefined): boolean => p === undefined || !p.includes("\0");

export const workspaceOptionsSchema = z.object({
  downloadsDir: z.string().trim().min(1).refine(noNul, NO_NUL).default(DEFAULT_DOWNLOADS_DIR),
  stateDir: optionalText.refine(noNul, NO_NUL),
});
export type WorkspaceOptions = z.infer<typeof workspaceOptionsSchema>;

/**
 * A yes/no environment variable, as a systemd unit's `Environment=` sets it: `1`, `true`, `yes`,
 * `on` or `0`, `false`, `no`, `off`, empty (any case); anything else is a usage error naming it.
 */
export function envFlag(env: Readonly<Record<string, string | undefined>>, name: string): boolean {
  const value = env[name]?.trim().toLowerCase();
  if (value === undefined || ["", "0", "false", "no", "off"].includes(value)) return false;
  if (["1", "true", "yes", "on"].includes(value)) return true;
  throw new UsageError(
    `${name} must be 1 or 0 (got '${env[name] ?? ""}')`,
    `set ${name}=1 to turn it on, or unset it`,
  );
}

function flagName(key: PropertyKey | undefined): string {
  if (typeof key !== "string") return "an option";
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function shown(value: unknown): string {
  return typeof value === "string" ? `'${value}'` : JSON.stringify(value);
}

/**
 * Validates raw commander options against a schema. The first problem becomes a UsageError naming
 * the flag and the value it got, so the operator sees exactly what to retype.
 */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  raw: Record<string, unknown>,
): z.infer<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const key = issue?.path[0];
  const flag = flagName(key);
  const got = typeof key === "string" && key in raw ? ` (got ${shown(raw[key])})` : "";
  throw new UsageError(`${flag} ${issue?.message ?? "is invalid"}${got}`, `see --help for ${flag}`);
}

export function parseImageTag(value: string): string {
  const result = imageTagSchema.safeParse(value);
  if (!result.success) {
    throw new UsageError(
      `invalid image tag '${value}': ${result.error.issues[0]?.message ?? "bad format"}`,
      "copy the tag from `xref` or `gh-list` output",
    );
  }
  return result.data;
}

/**
 * The user's cache directory for this tool, as the XDG base-directory spec places it:
 * `$XDG_CACHE_HOME/gh-gitlab-sync` when that is an absolute path, else `~/.cache/gh-gitlab-sync`.
 */
export function userCacheDir(env: Readonly<Record<string, string | undefined>>): string {
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, CACHE_SUBDIR);
  return path.join(env.HOME || homedir(), ".cache", CACHE_SUBDIR);
}

/**
 * Where a command keeps its metadata cache: `--state-dir`; else `<downloads>/.state` when a
 * downloads directory is in play (every command that downloads has one, by default
 * `./downloads`); else — the listing commands, run from anywhere — the user's cache directory.
 */
export function cacheDirFor(
  raw: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>>,
): string {
  if (raw.stateDir === undefined && raw.downloadsDir === undefined) return userCacheDir(env);
  return stateDirFor(parseOptions(workspaceOptionsSchema, raw));
}

/** The state directory (metadata cache, failures, locks): `--state-dir`, else `<downloads>/.state`. */
export function stateDirFor(options: WorkspaceOptions): string {
  return path.resolve(options.stateDir ?? path.join(options.downloadsDir, STATE_SUBDIR));
}
