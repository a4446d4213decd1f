import { createHash } from "node:crypto";
import { describeError } from "../errors.js";
import { discardBody } from "../net/http.js";
import type { Logger } from "../report/logger.js";
import { MiB } from "../util/bytes.js";
import { pushScope } from "./auth.js";
import { Link, chunkBody, heldBy } from "./chunk-body.js";
import { shortDigest } from "./media-types.js";
import { RegistryError, isTransient } from "./registry-error.js";
import { retryTransient, type Call, type RegistryTransport } from "./transport.js";

/**
 * A blob uploaded as it is produced, in chunks that survive a cut connection: the distribution
 * API's chunked upload (`PATCH` with `Content-Range`, then a `PUT` naming the digest).
 *
 * A cut costs at most the chunk in flight. After a failed `PATCH` the upload's address answers
 * `GET` with `Range: 0-N`, what the registry holds, and the chunk is sent again from there (the
 * chunk is still in memory). An upload an earlier pass left (the pass over the tarball starts
 * again after a failure it could not ride out) is taken up the same way: the deterministic
 * compression regenerates the same bytes, the first N are hashed but not sent. Where the
 * registry has lost the upload (Distribution discards one whose `PATCH` reached it only in
 * part, as happens with nothing buffering in front of it), the blob starts again from byte 0.
 * A stop never cuts one: it ends the chunk in flight early and whole (chunk-body.ts).
 *
 * Chunk size: a cut re-sends up to one chunk, and each chunk is one round trip. Layers pick
 * theirs by size (layer-upload.ts: a 64th of the layer, 4–16 MiB); 4 MiB is what a blob of
 * unknown size gets. The next chunk is assembled (compressed) while the current one is in
 * flight, so the compressor never waits on the network.
 */
export const DEFAULT_CHUNK_SIZE = 4 * MiB;

export interface UploadSession {
  repository: string;
  /** The upload's address as the registry last gave it (its `_state` carries the offset). */
  location: URL;
  /** Bytes the registry holds. */
  offset: number;
}

export interface StreamedBlob {
  digest: string;
  size: number;
}

export interface StreamUploadOptions {
  signal?: AbortSignal | undefined;
  /** What the bytes are, for error messages: "layer sha256:…" (the digest is not known yet). */
  description?: string;
  /** Runs once the source has ended and before the upload is committed; throwing cancels it. */
  beforeCommit?: (blob: StreamedBlob) => void | Promise<void>;
  /** Called with the running count of the source's bytes (those skipped on a resume included). */
  onBytes?: (read: number) => void;
  /** An upload an earlier attempt left, taken up where the registry says it stands. */
  session?: UploadSession | undefined;
  /**
   * Told of the upload once it is open (the object is kept up to date chunk by chunk) and of
   * `undefined` once there is nothing left to take up: committed, cancelled or lost.
   */
  onSession?: (session: UploadSession | undefined) => void;
  chunkSize?: number;
}

/**
 * The registry no longer has the upload (or holds other bytes than ours). Not worth another try
 * of the same request; {@link BlobUploader.upload} hands it on as retryable, so that the pass
 * over the tarball starts this blob again from byte 0.
 */
class UploadLostError extends RegistryError {
  constructor(message: string, status?: number) {
    super(message, { hint: "rerun; the blob is uploaded again from its start", status });
  }

  /** At once: nothing is wrong with the link, and the registry did not ask for a pause. */
  startAgain(): RegistryError {
    const { hint } = this;
    return new RegistryError(this.message, { hint, cause: this, retryable: true, retryAfterMs: 0 });
  }
}

interface Piece {
  bytes: Buffer;
  /** Offset of its first byte in the blob. */
  start: number;
}

export class BlobUploader {
  /** The link's rate, which a stop's wait for the chunks on their way is measured by. */
  private readonly link = new Link();

  constructor(
    private readonly transport: RegistryTransport,
    private readonly logger: Logger,
    /** The blob's size when the repository holds it (the client's HEAD), else `undefined`. */
    private readonly blobSize: (
      repository: string,
      digest: string,
      signal: AbortSignal | undefined,
    ) => Promise<number | undefined>,
  ) {}

  /**
   * Uploads `source` to `repository`, hashing it on the way; returns its digest and size. A
   * transient failure leaves the session (reported through `onSession`) for the caller to take
   * up on its next attempt, and is raised still retryable; anything else cancels the upload.
   */
  async upload(
    repository: string,
    source: AsyncIterable<Uint8Array>,
    options: StreamUploadOptions = {},
  ): Promise<StreamedBlob> {
    const operation = `uploading ${options.description ?? "a blob"} of ${repository}`;
    const { signal } = options;
    const resumed = options.session
      ? await this.takeUp(options.session, operation, signal)
      : undefined;
    const session =
      resumed ??
      (await retryTransient(() => this.open(repository, operation, signal), {
        policy: this.transport.retryPolicy,
        signal,
      }));
    options.onSession?.(session);
    try {
      const blob = await this.send(session, source, options, operation);
      await options.beforeCommit?.(blob);
      await this.commit(session, blob, operation, signal, resumed !== undefined);
      options.onSession?.(undefined);
      return blob;
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof UploadLostError) {
        options.onSession?.(undefined);
        throw err.startAgain();
      }
      if (isTransient(err)) throw err;
      options.onSession?.(undefined);
      await this.cancel(session.location, repository, signal);
      throw err;
    }
  }

  /** Streams the source in chunks from the session's offset; the bytes before it are only hashed. */
  private async send(
    session: UploadSession,
    source: AsyncIterable<Uint8Array>,
    options: StreamUploadOptions,
    operation: string,
  ): Promise<StreamedBlob> {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const hash = createHash("sha256");
    let size = 0;
    const skip = session.offset;
    /** Exactly `chunkSize` bytes each (the last one less), whatever sizes the source yields. */
    async function* chunks(): AsyncGenerator<Piece, void> {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      // Whole chunks are assembled in two buffers in turn rather than a fresh one each (V8 frees
      // those only at a major collection: B4's peak RSS). Chunk k is assembled once chunk k-2 is
      // sent: the loop below asks for the next chunk only when it starts sending the current one.
      const ring: Buffer[] = [];
      let whole = 0;
      const take = (): Piece => {
        let bytes: Buffer;
        if (pendingBytes === chunkSize) {
          const slot = whole++ % 2;
          bytes = ring[slot] ??= Buffer.allocUnsafeSlow(chunkSize);
          let at = 0;
          for (const part of pending) at += part.copy(bytes, at);
        } else bytes = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        return { bytes, start: size - bytes.length };
      };
      for await (const input of source) {
        const piece = Buffer.isBuffer(input)
          ? input
          : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
        hash.update(piece);
        options.onBytes?.(size + piece.length);
        // What the registry already holds is regenerated and hashed, not sent again.
        let rest = piece.subarray(Math.min(piece.length, Math.max(0, skip - size)));
        size += piece.length - rest.length;
        while (rest.length > 0) {
          const room = chunkSize - pendingBytes;
          const part = rest.subarray(0, room);
          pending.push(part);
          pendingBytes += part.length;
          size += part.length;
          rest = rest.subarray(part.length);
          if (pendingBytes === chunkSize) yield take();
        }
      }
      if (pendingBytes > 0) yield take();
    }
    const iterator = chunks();
    let next = iterator.next();
    for (;;) {
      const result: IteratorResult<Piece, void> = await next;
      if (result.done) break;
      // The next chunk is compressed while this one travels; its failure surfaces when awaited.
      next = iterator.next();
      next.catch(() => undefined);
      await this.patch(session, result.value, operation, options.signal);
      options.signal?.throwIfAborted();
    }
    if (size < skip) {
      throw new UploadLostError(
        `the ${options.description ?? "blob"} came out shorter than the upload to ${session.repository} it resumes`,
      );
    }
    return { digest: `sha256:${hash.digest("hex")}`, size };
  }

  /** One chunk, sent again from where the registry stands after each transient failure. */
  private async patch(
    session: UploadSession,
    piece: Piece,
    operation: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const end = piece.start + piece.bytes.length;
    await retryTransient(
      async (attempt) => {
        if (attempt > 1) {
          const held = await this.status(session, operation, signal);
          if (held < piece.start || held > end) {
            throw new UploadLostError(
              `registry ${this.transport.registry} holds ${held} bytes of an upload to ${session.repository} that had ${piece.start} (${operation})`,
            );
          }
          session.offset = held;
          if (held === end) return;
        }
        const from = session.offset - piece.start;
        const chunk = chunkBody(piece.bytes.subarray(from), signal, this.link, this.logger);
        try {
          const res = await this.onSession(session, operation, chunk.signal, {
            method: "PATCH",
            headers: {
              "content-type": "application/octet-stream",
              "content-range": `${session.offset}-${end - 1}`,
            },
            body: chunk.body,
            attempts: 1,
          });
          if (res.status === 404 || res.status === 416) throw await this.refused(res, session);
          await this.transport.expectStatus(res, [202], operation, session.repository);
          await discardBody(res);
          session.location = this.locationOf(res, operation);
          // Ended early: what the registry holds is in the new address; the next push asks.
          session.offset = chunk.cut ? (heldBy(res) ?? session.offset) : end;
          chunk.delivered();
        } finally {
          chunk.dispose();
        }
      },
      {
        policy: this.transport.retryPolicy,
        signal,
        handOver: true,
        onRetry: ({ attempt, delayMs, error }) =>
          this.logger.warn(
            {
              repository: session.repository,
              offset: session.offset,
              attempt,
              delayMs,
              err: describeError(error),
            },
            `chunk upload interrupted; resuming from what the registry holds`,
          ),
      },
    );
  }

  /**
   * A chunk the registry would not take. 404: the upload is gone, and the bytes before this
   * chunk are no longer in memory, so the blob starts over. 416: the registry disputes the
   * offset; the next attempt, at once, reads where it stands and goes on from there.
   */
  private async refused(res: Response, session: UploadSession): Promise<RegistryError> {
    await discardBody(res);
    const what = `registry ${this.transport.registry} answered ${res.status} to the chunk at byte ${session.offset} of an upload to ${session.repository}`;
    if (res.status === 404) return new UploadLostError(`${what} (the upload is gone)`, 404);
    const hint = "the registry disputes the upload's offset; rerun to resume";
    return new RegistryError(what, { hint, status: 416, retryable: true, retryAfterMs: 0 });
  }

  /**
   * Bytes the registry holds of the upload (`GET` → 204 with `Range: 0-<last byte>`), with the
   * address refreshed from its answer. An upload it no longer knows is lost.
   */
  private async status(
    session: UploadSession,
    operation: string,
    signal: AbortSignal | undefined,
  ): Promise<number> {
    const res = await this.onSession(session, operation, signal, { method: "GET", attempts: 1 });
    await discardBody(res);
    const held = heldBy(res);
    if (res.status !== 204 || held === undefined) {
      throw new UploadLostError(
        `registry ${this.transport.registry} lost the upload to ${session.repository} (${res.status}) while ${operation}`,
        res.status,
      );
    }
    const location = res.headers.get("location");
    if (location) session.location = this.transport.url(location);
    return held;
  }

  /** An earlier attempt's upload, if the registry still has it; `undefined` means start afresh. */
  private async takeUp(
    session: UploadSession,
    operation: string,
    signal: AbortSignal | undefined,
  ): Promise<UploadSession | undefined> {
    try {
      const offset = await retryTransient(() => this.status(session, operation, signal), {
        policy: this.transport.retryPolicy,
        signal,
        handOver: true,
      });
      this.logger.info(
        { repository: session.repository, offset },
        `resuming an upload to ${session.repository} at byte ${offset}`,
      );
      return { ...session, offset };
    } catch (err) {
      if (signal?.aborted || !(err instanceof UploadLostError)) throw err;
      this.logger.info(
        { repository: session.repository, err: describeError(err) },
        "the registry lost the upload; starting the blob again",
      );
      return undefined;
    }
  }

  /** A request to the upload's address (or `call.url`), with the push scope of its repository. */
  private onSession(
    session: UploadSession,
    operation: string,
    signal: AbortSignal | undefined,
    call: Pick<Call, "method" | "headers" | "body" | "attempts"> & { url?: URL },
  ): Promise<Response> {
    return this.transport.send({
      url: session.location,
      repository: session.repository,
      scopes: [pushScope(session.repository)],
      operation,
      signal,
      ...call,
    });
  }

  /** Opens an upload session (`POST …/blobs/uploads/`). */
  async open(
    repository: string,
    operation: string,
    signal: AbortSignal | undefined,
  ): Promise<UploadSession> {
    const res = await this.transport.send({
      method: "POST",
      url: this.transport.url(`/v2/${repository}/blobs/uploads/`),
      repository,
      scopes: [pushScope(repository)],
      operation,
      attempts: 1,
      signal,
    });
    await this.transport.expectStatus(res, [202], operation, repository);
    await discardBody(res);
    return { repository, location: this.locationOf(res, operation), offset: 0 };
  }

  /**
   * `PUT ?digest=` ends the upload. A commit whose answer was lost shows as an unknown upload
   * on the retry while the blob is in fact there; a resumed upload whose bytes the registry
   * finds not to match was fed other bytes before the cut, and starts again.
   */
  private async commit(
    session: UploadSession,
    blob: StreamedBlob,
    operation: string,
    signal: AbortSignal | undefined,
    resumed: boolean,
  ): Promise<void> {
    // Named as the whole upload is (the layer by its diff-id), whichever of its requests fails.
    const url = new URL(session.location);
    url.searchParams.set("digest", blob.digest);
    const res = await this.onSession(session, operation, signal, { method: "PUT", url });
    if (res.status === 201) {
      await discardBody(res);
      return;
    }
    if (
      res.status === 404 &&
      (await this.blobSize(session.repository, blob.digest, signal)) === blob.size
    ) {
      await discardBody(res);
      return;
    }
    if (resumed && res.status === 400) {
      await discardBody(res);
      throw new UploadLostError(
        `registry ${this.transport.registry} found the resumed upload of ${shortDigest(blob.digest)} to ${session.repository} damaged while ${operation}`,
        400,
      );
    }
    await this.transport.expectStatus(res, [201], operation, session.repository);
  }

  private locationOf(res: Response, operation: string): URL {
    const location = res.headers.get("location");
    if (!location) {
      throw new RegistryError(
        `registry ${this.transport.registry} gave no upload location while ${operation}`,
        {
          hint: "the registry does not speak the distribution API as expected",
          status: res.status,
        },
      );
    }
    return this.transport.url(location);
  }

  /**
   * Best effort, and brief: an upload session left open is purged by the registry later anyway,
   * and a registry that does not answer must not hold up the failure being reported.
   */
  async cancel(location: URL, repository: string, signal?: AbortSignal): Promise<void> {
    const limit = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
    try {
      const res = await this.transport.send({
        method: "DELETE",
        url: location,
        repository,
        scopes: [pushScope(repository)],
        operation: `cancelling an upload to ${repository}`,
        attempts: 1,
        signal: signal ? AbortSignal.any([signal, limit]) : limit,
      });
      await discardBody(res);
    } catch (err) {
      this.logger.debug({ repository, err: describeError(err) }, "could not cancel an upload");
    }
  }
}

const CANCEL_TIMEOUT_MS = 5_000;
