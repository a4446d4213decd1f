import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { DamagedInputError, REDOWNLOAD_HINT, SyncError, describeError } from "../errors.js";
import { limiter } from "../net/limit.js";
import { checkedGunzip, gzipFailure } from "./gzip-check.js";
import { stripDot } from "./image-stream.js";

/**
 * Some entries of a `docker save … | gzip` stream whose image is already known (a tarball that
 * prepare verified): the layers a push still needs, read in one pass and skipped past the rest.
 */

export interface SavedEntriesOptions {
  /** Opens the `.tar.gz` bytes from their start (a file, a zip entry). */
  open: () => Readable;
  /** Names the tarball in error messages. */
  label: string;
  /** Paths inside the tar to hand over. */
  wanted: Iterable<string>;
  /** Handlers running at once; the tar waits at an entry until one is free. Default 1. */
  concurrency?: number;
  signal?: AbortSignal | undefined;
}

/**
 * Streams the tarball once, handing each wanted entry's body to `handle` (at most `concurrency`
 * at once; the tar is read in order, so an entry waits for a free slot, and moves on once its
 * body is read while the handler may still be finishing). Stops reading as soon as every wanted
 * entry has been seen; throws the first handler failure, a one-line SyncError for a damaged
 * tarball, or says which wanted entries it never found.
 */
export async function readSavedEntries(
  options: SavedEntriesOptions,
  handle: (path: string, body: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const wanted = new Set(options.wanted);
  const slots = limiter(options.concurrency ?? 1);
  const jobs: Array<Promise<void>> = [];
  // Stops the read when every wanted entry is in or one failed; the caller's signal stops it too.
  const controller = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  let failure: Error | undefined;
  let allSeen = wanted.size === 0;
  if (allSeen) return;

  const extract = tar.extract();
  extract.on("entry", (header, body, next) => {
    body.on("error", () => undefined);
    const name = stripDot(header.name);
    if (!wanted.has(name) || failure !== undefined) {
      body.on("end", () => next());
      body.resume();
      return;
    }
    wanted.delete(name);
    // The tar stays where it is (no `next()`) until this entry has a slot and its body is read.
    const job = slots(async () => {
      // A failure or an abort ended the read while the entry waited: its body is gone.
      if (signal.aborted) return;
      body.on("end", () => {
        if (wanted.size > 0) return next();
        // Nothing more to read: the rest of the tar (often gigabytes of other layers) is skipped.
        allSeen = true;
        controller.abort();
      });
      await handle(name, body as AsyncIterable<Buffer>);
    });
    jobs.push(job);
    job.catch((err: unknown) => {
      failure ??= err instanceof Error ? err : new Error(String(err));
      controller.abort();
    });
  });

  const [magic, gunzip] = checkedGunzip();
  try {
    await pipeline(options.open(), magic, gunzip, extract, { signal });
  } catch (err) {
    if (!allSeen && failure === undefined && !options.signal?.aborted) {
      failure =
        gzipFailure(options.label, err) ??
        new SyncError(`cannot read ${options.label} (${describeError(err)})`, {
          hint: REDOWNLOAD_HINT,
          cause: err,
        });
    }
  }
  // Handlers are waited for after a stop too: an upload ends its chunk in flight whole, so that
  // the registry keeps the upload for the next run (registry/chunk-body.ts).
  await Promise.allSettled(jobs);
  options.signal?.throwIfAborted();
  if (failure !== undefined) throw failure;
  if (wanted.size > 0) {
    throw new DamagedInputError(
      `${options.label} changed since it was checked: ${[...wanted].join(", ")} is gone`,
      { hint: REDOWNLOAD_HINT },
    );
  }
}
