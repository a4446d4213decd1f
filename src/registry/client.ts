import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";

import { z } from "zod";
import { API_BODY_LIMIT, MANIFEST_BODY_LIMIT } from "../config/limits.js";
import { discardBody, readBody } from "../net/http.js";
import type { RetryPolicy } from "../net/retry.js";
import { pullScope, pushScope } from "./auth.js";
import { formatBytes } from "../util/bytes.js";
import { parseJsonBytes } from "../util/text.js";
import { ANY_MANIFEST, shortDigest } from "./media-types.js";
import { RegistryError } from "./registry-error.js";
import { BlobUploader, type StreamedBlob, type StreamUploadOptions } from "./blob-upload.js";
import {
  RegistryTransport,
  retryTransient,
  type Call,
  type TransportOptions,
} from "./transport.js";

export type RegistryClientOptions = TransportOptions;

const tagListSchema = z.object({ tags: z.array(z.string()).nullish() });

export interface ManifestResult {
  mediaType: string;
  /** `sha256:…` of `bytes`, computed here rather than trusted from a header. */
  digest: string;
  bytes: Buffer;
}

export type { StreamedBlob, StreamUploadOptions, UploadSession } from "./blob-upload.js";

/**
 * A client of the OCI distribution API for one registry: blobs, mounts, uploads and manifests.
 * Authentication, retries and the wording of failures are the {@link RegistryTransport}'s; every
 * failure raised here is a one-line {@link RegistryError} naming the registry, the repository
 * and the operation.
 */
export class RegistryClient {
  readonly registry: string;
  readonly retryPolicy: RetryPolicy;
  private readonly transport: RegistryTransport;
  private readonly uploader: BlobUploader;

  constructor(options: RegistryClientOptions) {
    this.transport = new RegistryTransport(options);
    this.uploader = new BlobUploader(this.transport, options.logger, (repository, digest, signal) =>
      this.blobSize(repository, digest, signal),
    );
    this.registry = this.transport.registry;
    this.retryPolicy = this.transport.retryPolicy;
  }

  /** Checks the credentials the way `docker login` does (see {@link RegistryTransport.login}). */
  login(signal?: AbortSignal): Promise<void> {
    return this.transport.login(signal);
  }

  async blobExists(repository: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.blobSize(repository, digest, signal)) !== undefined;
  }

  /** The blob's size when the repository holds it (HEAD), else `undefined`. */
  async blobSize(
    repository: string,
    digest: string,
    signal?: AbortSignal,
  ): Promise<number | undefined> {
    const operation = `checking blob ${shortDigest(digest)} in ${repository}`;
    const res = await this.send({
      method: "HEAD",
      url: this.transport.url(`/v2/${repository}/blobs/${digest}`),
      repository,
      scopes: [pushScope(repository)],
      operation,
      signal,
    });
    await discardBody(res);
    if (res.status === 404) return undefined;
    await this.transport.expectStatus(res, [200], operation, repository);
    return Number(res.headers.get("content-length") ?? "0");
  }

  /**
   * Asks the registry to link a blob it holds for `fromRepository` into `repository`: no bytes
   * move. `false` when it could not (unknown there, or no pull access to the source); the upload
   * session a refused mount opens is cancelled so it does not linger.
   */
  async mountBlob(
    repository: string,
    digest: string,
    fromRepository: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const operation = `mounting blob ${shortDigest(digest)} into ${repository} from ${fromRepository}`;
    const url = this.transport.url(`/v2/${repository}/blobs/uploads/`);
    url.searchParams.set("mount", digest);
    url.searchParams.set("from", fromRepository);
    const res = await this.send({
      method: "POST",
      url,
      repository,
      scopes: [pushScope(repository), pullScope(fromRepository)],
      operation,
      signal,
    });
    // A token without pull on the source repository makes the registry refuse the whole request.
    if (res.status === 401 || res.status === 403) {
      await discardBody(res);
      return false;
    }
    await this.transport.expectStatus(res, [201, 202], operation, repository);
    await discardBody(res);
    if (res.status === 201) return true;
    await this.cancelUpload(res, repository, signal);
    return false;
  }

  /**
   * Uploads a blob whose digest and size are known: POST, then one PUT with the whole body.
   * `body` is called again for each attempt, so a failed attempt is retried from the start.
   */
  async uploadBlob(
    repository: string,
    digest: string,
    size: number,
    body: () => Readable | Uint8Array,
    signal?: AbortSignal,
  ): Promise<void> {
    const operation = `uploading blob ${shortDigest(digest)} of ${repository}`;
    await this.retrying(signal, async () => {
      const { location } = await this.uploader.open(repository, operation, signal);
      location.searchParams.set("digest", digest);
      const res = await this.send({
        method: "PUT",
        url: location,
        repository,
        scopes: [pushScope(repository)],
        operation,
        headers: { "content-type": "application/octet-stream", "content-length": String(size) },
        body,
        attempts: 1,
        signal,
      });
      await this.expectCreated(res, operation, repository);
    });
  }

  /**
   * Uploads a blob as it is being produced, hashing it on the way, in chunks that survive a cut
   * (see {@link BlobUploader}). A transient failure is raised with `retryable`; the session
   * `onSession` was told of lets the caller's next attempt resume instead of starting over.
   */
  uploadBlobStream(
    repository: string,
    source: AsyncIterable<Uint8Array>,
    options: StreamUploadOptions = {},
  ): Promise<StreamedBlob> {
    return this.uploader.upload(repository, source, options);
  }

  /** The blob's bytes as a stream (used only when a blob cannot be mounted and must be copied). */
  async getBlob(repository: string, digest: string, signal?: AbortSignal): Promise<Readable> {
    const operation = `reading blob ${shortDigest(digest)} of ${repository}`;
    const res = await this.send({
      method: "GET",
      url: this.transport.url(`/v2/${repository}/blobs/${digest}`),
      repository,
      scopes: [pullScope(repository)],
      operation,
      signal,
    });
    // A 200 without a body is as unexpected as any other status.
    await this.transport.expectStatus(res, res.body ? [200] : [], operation, repository);
    return Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  }

  /**
   * A small blob (an image config) read whole, at most `limit` bytes, and checked against its
   * digest: what the registry says an image is made of is only trusted once its bytes match.
   */
  async getVerifiedBlob(
    repository: string,
    digest: string,
    limit: number,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    const body = await this.getBlob(repository, digest, signal);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        body.destroy();
        throw new RegistryError(
          `blob ${shortDigest(digest)} of ${repository} is over ${formatBytes(limit)}, more than such a blob holds`,
          { hint: "push that image again" },
        );
      }
      chunks.push(chunk as Buffer);
    }
    const bytes = Buffer.concat(chunks, size);
    if (sha256Digest(bytes) !== digest) {
      throw new RegistryError(
        `registry ${this.registry} sent blob ${shortDigest(digest)} of ${repository} with other bytes than its digest names`,
        { hint: "the registry is not serving what it stores; ask its administrator" },
      );
    }
    return bytes;
  }

  /**
   * The repository's tags as the registry lists them (`GET /v2/<name>/tags/list`, its first
   * `limit`); none when the registry does not know the repository.
   */
  async listTags(repository: string, limit = 1000, signal?: AbortSignal): Promise<string[]> {
    const operation = `listing the tags of ${repository}`;
    const url = this.transport.url(`/v2/${repository}/tags/list`);
    url.searchParams.set("n", String(limit));
    const res = await this.send({
      method: "GET",
      url,
      repository,
      scopes: [pullScope(repository)],
      operation,
      signal,
    });
    if (res.status === 404) {
      await discardBody(res);
      return [];
    }
    await this.transport.expectStatus(res, [200], operation, repository);
    const body = tagListSchema.safeParse(
      parseJsonBytes(await readBody(res, API_BODY_LIMIT, operation)),
    );
    return body.success ? (body.data.tags ?? []).slice(0, limit) : [];
  }

  /** The manifest under a tag or digest, or `undefined` when the registry has none there. */
  async getManifest(
    repository: string,
    reference: string,
    accept: readonly string[] = ANY_MANIFEST,
    signal?: AbortSignal,
  ): Promise<ManifestResult | undefined> {
    const operation = `reading manifest ${repository}:${reference}`;
    const res = await this.send({
      method: "GET",
      url: this.transport.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      scopes: [pullScope(repository)],
      operation,
      headers: { accept: accept.join(", ") },
      signal,
    });
    if (res.status === 404) {
      await discardBody(res);
      return undefined;
    }
    await this.transport.expectStatus(res, [200], operation, repository);
    const bytes = await readBody(res, MANIFEST_BODY_LIMIT, `manifest ${repository}:${reference}`);
    const mediaType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    return { mediaType, digest: sha256Digest(bytes), bytes };
  }

  /** Digest of the manifest under a tag or digest (HEAD, no body), or `undefined` if absent. */
  async manifestDigest(
    repository: string,
    reference: string,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const operation = `checking manifest ${repository}:${reference}`;
    const res = await this.send({
      method: "HEAD",
      url: this.transport.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      scopes: [pullScope(repository)],
      operation,
      headers: { accept: ANY_MANIFEST.join(", ") },
      signal,
    });
    await discardBody(res);
    if (res.status === 404) return undefined;
    await this.transport.expectStatus(res, [200], operation, repository);
    return res.headers.get("docker-content-digest") ?? undefined;
  }

  /** Stores a manifest under `reference` (a tag, or a digest for a list's children); returns its digest. */
  async putManifest(
    repository: string,
    reference: string,
    bytes: Uint8Array,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<string> {
    const operation = `writing manifest ${repository}:${reference}`;
    const res = await this.send({
      method: "PUT",
      url: this.transport.url(`/v2/${repository}/manifests/${reference}`),
      repository,
      scopes: [pushScope(repository)],
      operation,
      headers: { "content-type": mediaType },
      body: () => bytes,
      signal,
    });
    await this.expectCreated(res, operation, repository);
    return res.headers.get("docker-content-digest") ?? sha256Digest(bytes);
  }

  // ---------------------------------------------------------------------------------------------

  private send(call: Call): Promise<Response> {
    return this.transport.send(call);
  }

  private async cancelUpload(
    res: Response,
    repository: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const location = res.headers.get("location");
    if (location) await this.uploader.cancel(this.transport.url(location), repository, signal);
  }

  private async expectCreated(res: Response, operation: string, repository: string) {
    await this.transport.expectStatus(res, [201], operation, repository);
    await discardBody(res);
  }

  /** Runs a multi-request sequence again from its start after a transient failure. */
  private retrying<T>(signal: AbortSignal | undefined, sequence: () => Promise<T>): Promise<T> {
    return retryTransient(sequence, { policy: this.retryPolicy, signal });
  }
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
