import { isHttp } from "../net/http.js";
import { RegistryError } from "./registry-error.js";

/**
 * The registry's side of authentication: parsing `WWW-Authenticate` challenges, naming the
 * scopes a request needs, and judging the token service a registry names. The token exchange
 * itself lives in the transport, which owns the credentials.
 */

export interface Challenge {
  scheme: "bearer" | "basic";
  /** Token endpoint (Bearer only). */
  realm?: string;
  service?: string;
  /** The scope the registry asked for, e.g. `repository:x86/presto:pull,push`. */
  scope?: string;
  /** `insufficient_scope` when a token was sent but does not cover the request. */
  error?: string;
}

/**
 * Parses `Bearer realm="…",service="…",scope="…"` (or `Basic realm="…"`). Values are quoted
 * strings that may hold commas (`pull,push`), so a plain split on `,` would cut them.
 */
export function parseChallenge(header: string | null | undefined): Challenge | undefined {
  if (!header) return undefined;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  const scheme = match?.[1]?.toLowerCase();
  if (scheme !== "bearer" && scheme !== "basic") return undefined;
  const params: Record<string, string> = {};
  const paramPattern = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))/g;
  for (const m of (match?.[2] ?? "").matchAll(paramPattern)) {
    const key = (m[1] ?? "").toLowerCase();
    params[key] = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : (m[3] ?? "");
  }
  return {
    scheme,
    ...(params.realm !== undefined ? { realm: params.realm } : {}),
    ...(params.service !== undefined ? { service: params.service } : {}),
    ...(params.scope !== undefined ? { scope: params.scope } : {}),
    ...(params.error !== undefined ? { error: params.error } : {}),
  };
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

/**
 * One key per set of scopes, whatever order the caller listed them in: a token fetched for
 * "push A + pull B" serves every later request that needs exactly that.
 */
export function scopeKey(scopes: readonly string[]): string {
  return [...new Set(scopes)].sort().join(" ");
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

/**
 * The token service the registry names gets the registry's credentials, as Docker does; but
 * over plain http only when the registry itself is spoken to over plain http (loopback, or
 * --insecure-registry): an https registry naming an http realm would have the password cross
 * the network in the clear.
 */
export function realmUrl(realm: string, registry: string, registryIsHttp: boolean): URL {
  let url: URL | undefined;
  try {
    url = new URL(realm);
  } catch {
    url = undefined;
  }
  if (!url || !isHttp(url)) {
    throw new RegistryError(
      `registry ${registry} names a token service that is not an http(s) address`,
      { hint: "the registry's auth configuration looks broken; ask its administrator" },
    );
  }
  if (url.protocol === "http:" && !registryIsHttp) {
    throw new RegistryError(
      `registry ${registry} is https but names a plain-http token service (${url.origin}); refused to send the credentials there`,
      {
        hint: "the registry's auth configuration should name an https realm; ask its administrator (only a registry spoken to over plain http, with --insecure-registry, may use one)",
      },
    );
  }
  return url;
}

export interface TokenAnswer {
  token?: unknown;
  access_token?: unknown;
  expires_in?: unknown;
}

/** The realm's JSON; anything else counts as an answer without a token. */
export function parseTokenAnswer(bytes: Buffer): TokenAnswer {
  try {
    const value: unknown = JSON.parse(bytes.toString("utf8"));
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}
