import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * A CommonJS dependency loaded on first use. Every subcommand is registered at start-up, so a
 * heavy library imported at the top of a module (dockerode, the GitLab client, unzipper,
 * prom-client) would slow down every command, `retag` and `--help` included, by tens of ms each.
 */
export function lazyRequire<T>(id: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(id) as T);
}
