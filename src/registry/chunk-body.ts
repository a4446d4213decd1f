import { Readable } from "node:stream";
import type { Logger } from "../report/logger.js";

/**
 * The body of one upload chunk's `PATCH`, made so that a stop (Ctrl-C, SIGTERM) never cuts it
 * mid-way. Distribution throws away an upload whose `PATCH` reached it in part (see BENCH.md), so
 * aborting the request as every other one is aborted would lose the whole upload, and the next
 * push would start the blob again. Instead, once `stop` aborts, the body ends cleanly after the
 * slice on its way (it goes chunked, its length unstated, so a shorter body is a whole request);
 * the registry keeps what arrived and answers with the upload's new address, which the next push
 * takes up.
 *
 * What was handed to the socket before the stop still has to cross the link: the request is
 * given the time that takes at the rate earlier chunks went (the {@link Link}), plus
 * {@link ANSWER_GRACE_MS} for the answer, and is cut only after that — so a registry that does
 * not answer at all still has the stop end within about a second, and a slow link at most
 * {@link MAX_DRAIN_MS} later. A second Ctrl-C ends the process at once (cli.ts).
 */
export interface ChunkBody {
  /** A fresh stream of the chunk's bytes per call (a request sent again re-reads them). */
  body: () => Readable;
  /** The request's own signal: aborts once the grace after `stop` has passed. */
  signal: AbortSignal;
  /** The body was ended before its last byte: the registry holds less than the chunk. */
  readonly cut: boolean;
  /** The registry took the request: unless it was cut, its time measures the link. */
  delivered(): void;
  /** Ends the grace timer; call once the request is over. */
  dispose(): void;
}

/** The link to one registry, as the chunks sent over it measured it. */
export class Link {
  /** Bytes per millisecond of the last whole chunk; undefined before the first. */
  rate: number | undefined;
  /** Whether the operator was told that a stop waits for chunks on their way. */
  told = false;
}

/** Small enough that a stop ends the body soon; large enough that a slice costs no overhead. */
const SLICE = 256 << 10;
/** How long a stopped upload waits for the registry to answer once its bytes should be there. */
export const ANSWER_GRACE_MS = 1_000;
/** The longest a stop waits for a chunk's bytes to cross a slow link. */
export const MAX_DRAIN_MS = 30_000;

export function chunkBody(
  bytes: Buffer,
  stop: AbortSignal | undefined,
  link: Link,
  logger: Logger,
): ChunkBody {
  const request = new AbortController();
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let cut = false;
  let handed = 0;
  const onStop = () => {
    // When the bytes already handed over should have crossed, at the rate the link went so far.
    const due = link.rate ? started + handed / link.rate : Date.now();
    const drain = Math.min(MAX_DRAIN_MS, Math.max(0, due - Date.now()));
    if (drain > ANSWER_GRACE_MS && !link.told) {
      link.told = true;
      logger.warn(
        `finishing the upload chunk on its way (about ${Math.ceil(drain / 1000)} s) so that the next run resumes it; interrupt again to stop at once`,
      );
    }
    timer = setTimeout(() => request.abort(stop?.reason), drain + ANSWER_GRACE_MS);
  };
  if (stop?.aborted) onStop();
  else stop?.addEventListener("abort", onStop, { once: true });
  return {
    body() {
      let at = 0;
      handed = 0;
      // One slice per read: nothing is queued ahead, so a stop ends the body where it stands.
      return new Readable({
        highWaterMark: 0,
        read() {
          if (at >= bytes.length) return void this.push(null);
          if (stop?.aborted) {
            cut = true;
            return void this.push(null);
          }
          const slice = bytes.subarray(at, at + SLICE);
          at += slice.length;
          handed = at;
          this.push(slice);
        },
      });
    },
    signal: request.signal,
    get cut() {
      return cut;
    },
    delivered() {
      const ms = Date.now() - started;
      if (!cut && ms > 0) link.rate = bytes.length / ms;
    },
    dispose() {
      clearTimeout(timer);
      stop?.removeEventListener("abort", onStop);
    },
  };
}

/**
 * Bytes the upload holds by an answer's `Range: 0-<last byte>`. Distribution answers `0-0` both
 * for nothing yet and for one byte; only whole chunks and whole slices of one (see above)
 * ever reach it, never a single byte, so `0-0` means nothing.
 */
export function heldBy(res: Response): number | undefined {
  const range = /^(?:bytes=)?0-(\d+)$/.exec(res.headers.get("range")?.trim() ?? "");
  if (!range) return undefined;
  const last = Number(range[1]);
  return last === 0 ? 0 : last + 1;
}
