import { Readable } from "node:stream";

/**
 * The body of one upload chunk's `PATCH`, made so that a stop (Ctrl-C, SIGTERM) never cuts it
 * mid-way. Distribution throws away an upload whose `PATCH` reached it in part (see BENCH.md), so
 * aborting the request as every other one is aborted would lose the whole upload, and the next
 * push would start the blob again. Instead, once `stop` aborts, the body ends cleanly after the
 * slice on its way (it goes chunked, its length unstated, so a shorter body is a whole request);
 * the registry keeps what arrived and answers with the upload's new address, which the next push
 * takes up. Only a registry that does not answer within {@link ANSWER_GRACE_MS} of the stop has
 * the request cut, so a stop stays prompt.
 */
export interface ChunkBody {
  /** A fresh stream of the chunk's bytes per call (a request sent again re-reads them). */
  body: () => Readable;
  /** The request's own signal: aborts once the grace after `stop` has passed. */
  signal: AbortSignal;
  /** The body was ended before its last byte: the registry holds less than the chunk. */
  readonly cut: boolean;
  /** Ends the grace timer; call once the request is over. */
  dispose(): void;
}

/** Small enough that a stop ends the body soon; large enough that a slice costs no overhead. */
const SLICE = 256 << 10;
/** How long a stopped upload waits for the registry to answer the chunk it ended. */
export const ANSWER_GRACE_MS = 1_000;

export function chunkBody(bytes: Buffer, stop: AbortSignal | undefined): ChunkBody {
  const request = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let cut = false;
  const onStop = () => {
    timer = setTimeout(() => request.abort(stop?.reason), ANSWER_GRACE_MS);
  };
  if (stop?.aborted) onStop();
  else stop?.addEventListener("abort", onStop, { once: true });
  return {
    body() {
      let at = 0;
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
          this.push(slice);
        },
      });
    },
    signal: request.signal,
    get cut() {
      return cut;
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
