/**
 * The registry's side of authentication: parsing `WWW-Authenticate` challenges and naming the
 * scopes a request needs. The token exchange itself lives in the client, which owns the
 * credentials and the transport.
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
