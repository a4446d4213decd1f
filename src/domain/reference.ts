import { isIP } from "node:net";

/**
 * Image references, in the spirit of go-containerregistry's `pkg/name`: one grammar for tags,
 * repository paths, digests and registry hosts, one parser, one printer, and the rule for which
 * scheme a registry speaks. Every other module asks here instead of splitting strings itself.
 */

/** A tag (Docker's grammar), also the shape of the GitHub image tag that names a download directory. */
export const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const TAG_SOURCE = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";

/** One path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`. */
const COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
/** A repository path: `hercules/veloxtesting/x86/presto-coordinator`. */
export const REPOSITORY_PATTERN = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
/** The content digest this tool deals in (registries also accept others; it never writes them). */
export const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** `host[:port]` as in a reference: a DNS name, IPv4, or a bracketed IPv6 address. */
const HOST_SOURCE = "(?:\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)";
const REGISTRY_PATTERN = new RegExp(`^${HOST_SOURCE}(?::(\\d{1,5}))?$`);

export const DOCKER_HUB = "docker.io";

export interface ImageReference {
  /** `host[:port]`; absent for a path relative to a registry project (`x86/presto-coordinator:tag`). */
  registry?: string;
  /** The repository path inside the registry. */
  repository: string;
  tag?: string;
  digest?: string;
}

export function isTag(value: string): boolean {
  return TAG_PATTERN.test(value);
}

export function isRepositoryPath(value: string): boolean {
  return REPOSITORY_PATTERN.test(value);
}

export function isDigest(value: string): boolean {
  return DIGEST_PATTERN.test(value);
}

/** A valid `host[:port]`, the port within 1–65535. */
export function isRegistryHost(value: string): boolean {
  const match = REGISTRY_PATTERN.exec(value);
  if (!match) return false;
  const port = match[1];
  return port === undefined || (Number(port) >= 1 && Number(port) <= 65535);
}

/** Docker's rule: the first component names a registry when it has a `.` or `:`, or is `localhost`. */
function looksLikeRegistry(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

export interface ParseOptions {
  /**
   * The text is a path below a registry project (`x86/presto-coordinator:tag`): no registry is
   * looked for, and none is filled in.
   */
  relative?: boolean;
}

/**
 * `[registry/]repository[:tag][@digest]`, checked against the grammar; `undefined` when the text
 * is not a reference. A colon after the last slash is a tag; one before it is a registry's port.
 */
export function parseReference(
  text: string,
  options: ParseOptions = {},
): ImageReference | undefined {
  let rest = text.trim();
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) return undefined;
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isTag(tag)) return undefined;
  }
  let registry: string | undefined;
  const slash = rest.indexOf("/");
  if (!options.relative && slash > 0 && looksLikeRegistry(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    rest = rest.slice(slash + 1);
    if (!isRegistryHost(registry)) return undefined;
  }
  if (!isRepositoryPath(rest)) return undefined;
  return {
    ...(registry !== undefined ? { registry } : {}),
    repository: rest,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/** `registry/repository[:tag][@digest]`, or without the registry for a relative reference. */
export function formatReference(ref: ImageReference): string {
  const name = ref.registry ? `${ref.registry}/${ref.repository}` : ref.repository;
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/**
 * Docker's canonical spelling: `x:t` and `library/x:t` are short for `docker.io/library/x:t`, and
 * `index.docker.io` is the same registry. Only that equivalence is applied — a name under another
 * registry or namespace is a different image. Text that is no reference comes back unchanged.
 */
export function canonicalName(text: string): string {
  const ref = parseReference(text);
  if (!ref) return text;
  const registry =
    ref.registry === undefined || ref.registry === "index.docker.io" ? DOCKER_HUB : ref.registry;
  const repository =
    registry === DOCKER_HUB && !ref.repository.includes("/")
      ? `library/${ref.repository}`
      : ref.repository;
  return formatReference({ ...ref, registry, repository });
}

/** The host part of `host[:port]`, brackets removed from an IPv6 address. */
export function registryHostname(registry: string): string {
  if (registry.startsWith("[")) return registry.slice(1, registry.indexOf("]"));
  const colon = registry.lastIndexOf(":");
  return colon >= 0 && registry.indexOf(":") === colon ? registry.slice(0, colon) : registry;
}

/** `localhost`, 127.0.0.0/8 or ::1: where Docker itself speaks plain http without being told. */
export function isLoopbackHost(hostname: string): boolean {
  if (hostname === "localhost" || hostname === "::1") return true;
  return isIP(hostname) === 4 && hostname.startsWith("127.");
}

/** https, except for loopback registries or when the operator asks for plain http. */
export function registryScheme(registry: string, insecure = false): "http" | "https" {
  if (insecure) return "http";
  return isLoopbackHost(registryHostname(registry)) ? "http" : "https";
}

/** The grammar in words, for error messages. */
export const TAG_GRAMMAR = TAG_SOURCE;
