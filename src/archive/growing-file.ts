import { open, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { SyncError } from "../errors.js";

/**
 * A file another part of this process is still writing (the artifact's `.part` while it
 * downloads), read front to back as its bytes arrive: a read past what is written so far waits
 * until the writer adds more, finishes, or fails. The file is opened once, so the writer's
 * rename into place at the end does not disturb the reader; the writer appends (or, when a
 * server ignores `Range`, writes the same bytes again from the start), so bytes once read stay
 * what they were — and what is finally published is checked against the artifact's digest anyway.
 */

const READ_CHUNK = 1 << 20;
/** A wake-up the writer does not send (a write the hint ran ahead of) is noticed this soon. */
const POLL_MS = 20;

type Outcome = { ok: true } | { ok: false; error: unknown };

export class GrowingFile {
  private outcome: Outcome | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly handle: FileHandle,
    /** What the file is called, for messages. */
    readonly path: string,
    /** Its size once complete. */
    readonly size: number,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** Opens `path` (it must exist: create it empty before the writer starts). */
  static async open(path: string, size: number, signal?: AbortSignal): Promise<GrowingFile> {
    return new GrowingFile(await open(path, "r"), path, size, signal);
  }

  /** The writer added bytes: a waiting read looks again at once. */
  wake(): void {
    for (const wake of this.waiters) wake();
  }

  /** The writer is done (the file is complete) or has failed (what is missing never comes). */
  settle(outcome: Outcome): void {
    this.outcome ??= outcome;
    this.wake();
  }

  /** Whether every byte is there: the writer finished, successfully. */
  get complete(): boolean {
    return this.outcome?.ok === true;
  }

  /** Resolves once the writer has finished; rejects with its failure. */
  async finished(): Promise<void> {
    while (!this.outcome) await this.pause();
    if (!this.outcome.ok) throw this.outcome.error;
  }

  /**
   * Up to `length` bytes at `position`, at least one unless `position` is the end: waits for
   * the writer when they are not written yet.
   */
  async read(position: number, length = READ_CHUNK): Promise<Buffer> {
    const want = Math.min(length, this.size - position);
    if (want <= 0) return Buffer.alloc(0);
    const buffer = Buffer.allocUnsafe(want);
    for (;;) {
      this.signal?.throwIfAborted();
      const { bytesRead } = await this.handle.read(buffer, 0, want, position);
      if (bytesRead > 0) return buffer.subarray(0, bytesRead);
      const outcome = this.outcome;
      if (outcome && !outcome.ok) throw outcome.error;
      if (outcome?.ok) {
        throw new SyncError(`${this.path} ends at byte ${position} of ${this.size}`, {
          hint: "the download is shorter than the artifact; rerun to fetch it again",
        });
      }
      await this.pause();
    }
  }

  /** Bytes `start` to `end` (exclusive; default the end), as a stream. */
  stream(start: number, end = this.size): Readable {
    const read = (at: number, length: number): Promise<Buffer> => this.read(at, length);
    async function* bytes(): AsyncGenerator<Buffer> {
      for (let at = start; at < end;) {
        const chunk = await read(at, Math.min(READ_CHUNK, end - at));
        at += chunk.length;
        yield chunk;
      }
    }
    return Readable.from(bytes(), { objectMode: false, highWaterMark: READ_CHUNK });
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private pause(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        this.signal?.removeEventListener("abort", aborted);
      };
      const done = (): void => {
        cleanup();
        resolve();
      };
      const aborted = (): void => {
        cleanup();
        const reason: unknown = this.signal?.reason;
        reject(reason instanceof Error ? reason : new Error(String(reason)));
      };
      const timer = setTimeout(done, POLL_MS);
      this.waiters.add(done);
      if (this.signal?.aborted) aborted();
      else this.signal?.addEventListener("abort", aborted, { once: true });
    });
  }
}
