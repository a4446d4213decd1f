import type { Env } from "../config/tokens.js";
import type { ProgressListener } from "../domain/events.js";
import type { HttpClient } from "../net/http.js";
import type { Logger } from "../report/logger.js";
import type { Output } from "../report/output.js";

/** Everything a command may touch of the outside world, handed in so tests can replace it. */
export interface CommandContext {
  logger: Logger;
  out: Output;
  env: Env;
  /** Aborted on SIGINT/SIGTERM: long operations stop promptly and leave nothing half-written. */
  signal: AbortSignal;
  /** The one way out to HTTP (proxies, timeouts, safe redirects): every client sends through it. */
  http: HttpClient;
  /**
   * Where transfers report how they move, logging through `logger`: bars on a terminal, log
   * lines otherwise.
   */
  progress: (logger: Logger) => ProgressListener;
  /** A person reads stderr: a terminal with pretty logs, where bars are drawn. */
  terminal?: boolean;
}
