import { SyncError, describeError, isAbortError } from "../errors.js";
import { formatBytes } from "../util/bytes.js";
import type { MetadataSource, RunMetadata } from "../domain/metadata.js";
import type { Logger } from "../report/logger.js";
import type { BlobAccess, GithubClient } from "./client.js";
import { GithubError, redactUrl } from "./errors.js";
import { MetadataBlockParser, type BlockConflict } from "./metadata-parser.js";
import type { RepoRef } from "./runs.js";

/**
 * What the two routes to a run's metadata (the job logs, the run-log zip) share: the run they
 * read, the shape of their answer, and reading a signed log address.
 */

/** Where a run's block was found. */
export type LogSource = MetadataSource;

/** A step whose name says "metadata": the step that prints the block, or a file of its output. */
export const METADATA_STEP = /metadata/i;

export interface RunContext extends RepoRef {
  runId: number;
  client: GithubClient;
  logger: Logger;
  limits: LogLimits;
}

/** How much of a run's logs is read at most (config/limits.ts; smaller in tests). */
export interface LogLimits {
  /** Bytes of one job log, or of one log file in the run-log zip. */
  jobLog: number;
  /** Bytes of the run-log zip spooled to disk. */
  runLogZip: number;
}

/** What a log held: the block, two different blocks, or neither. */
export interface BlockFound {
  metadata?: RunMetadata;
  conflict?: BlockConflict;
}

/** How much a route read, and whether it found the block. */
export interface RouteOutcome extends BlockFound {
  source?: LogSource;
  bytes: number;
  /** No whole block, but some of its keys (no `Image tag`): what gh-list shows, as the original. */
  partial?: { metadata: RunMetadata; source: LogSource };
}

/** Thrown by a route that read something before failing, so its bytes still count. */
export class RouteError extends Error {
  constructor(
    readonly error: SyncError,
    readonly bytes: number,
  ) {
    super(error.message);
  }
}

export function httpStatusOf(err: unknown): number | undefined {
  return err instanceof GithubError ? err.status : undefined;
}

/** Opens a signed log address; a 416 on a range comes back as it is (the log ended there). */
export async function openBlob(
  blobs: BlobAccess,
  url: string,
  what: string,
  signal: AbortSignal | undefined,
  range?: string,
): Promise<Response> {
  let response: Response;
  try {
    // No credentials on purpose: the signed URL is the credential, the GitHub token stays home.
    response = await blobs.fetch(url, {
      ...(signal ? { signal } : {}),
      ...(range ? { headers: { range } } : {}),
    });
  } catch (err) {
    throw blobError(err, url, what);
  }
  // A range past the end: the log ended exactly where the previous range did.
  if (range && response.status === 416) return response;
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => undefined);
    const expired = response.status === 403 || response.status === 410;
    throw new SyncError(
      `downloading ${what} from ${redactUrl(url)} failed: HTTP ${response.status}`,
      {
        hint: expired
          ? "the signed download address may have expired; try again"
          : "try again later",
      },
    );
  }
  return response;
}

/** More log than any build prints before its block: a server sending without end. */
export function logTooLarge(what: string, limit: number): SyncError {
  return new SyncError(
    `${what} goes on past ${formatBytes(limit)} without a complete metadata block; stopped reading`,
    { hint: "the log server sent far more than a build log holds; try again later" },
  );
}

export function blobError(err: unknown, url: string, what: string): SyncError {
  if (err instanceof SyncError) return err;
  if (isAbortError(err)) {
    return new SyncError(`downloading ${what} was cancelled`, { cause: err });
  }
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
  return new SyncError(
    `downloading ${what} from ${redactUrl(url)} failed: ${describeError(err)}${cause}`,
    {
      hint: "the connection broke; try again",
      cause: err,
    },
  );
}

/** Log bytes in, the block out: decodes UTF-8 across chunk borders for the parser. */
export class BlockReader {
  private readonly parser = new MetadataBlockParser();
  private readonly decoder = new TextDecoder("utf-8");

  /** Feeds a chunk; true once the block is whole and the rest of the log can be skipped. */
  push(chunk: Uint8Array): boolean {
    this.parser.push(this.decoder.decode(chunk, { stream: true }));
    return this.parser.complete;
  }

  get complete(): boolean {
    return this.parser.complete;
  }

  /** The end of the log (or of reading it): the block if it was there, or the two that clash. */
  finish(): BlockFound {
    if (!this.parser.complete) {
      this.parser.push(this.decoder.decode());
      this.parser.end();
    }
    const conflict = this.parser.conflict;
    if (conflict) return { conflict };
    return this.parser.complete ? { metadata: this.parser.metadata } : {};
  }

  /** After `finish`, the keys of a block that never got its `Image tag`, if any were printed. */
  partial(): RunMetadata | undefined {
    if (this.parser.complete) return undefined;
    const keys = this.parser.metadata;
    return Object.keys(keys).length > 0 ? keys : undefined;
  }
}
