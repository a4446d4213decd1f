/** Image references as the engine spells them: `[registry/]path[:tag][@digest]`. */

export interface ImageReference {
  /** Everything before the tag: `127.0.0.1:5000/group/app`. */
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseReference(reference: string): ImageReference {
  let rest = reference;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  // A colon after the last slash is the tag; one before it is a registry port.
  const colon = rest.lastIndexOf(":");
  const tag = colon > rest.lastIndexOf("/") ? rest.slice(colon + 1) : undefined;
  const repository = tag === undefined ? rest : rest.slice(0, colon);
  return { repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The registry a reference points at, by the engine's rule: a first part with `.`, `:` or `localhost`. */
export function registryOf(reference: string): string {
  const first = reference.split("/")[0] ?? "";
  const hasRegistry =
    reference.includes("/") &&
    (first.includes(".") || first.includes(":") || first === "localhost");
  return hasRegistry ? first : "docker.io";
}
