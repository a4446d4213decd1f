/**
 * The Docker engine, through its HTTP API (dockerode): load a `docker save` tarball, tag, push and
 * pull with streamed progress. No `docker` CLI is needed, and registry credentials travel with
 * each call (the X-Registry-Auth header) instead of being written to ~/.docker/config.json.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline, Readable, Transform } from "node:stream";
import type Docker from "dockerode";
import { lazyRequire } from "../lazy.js";
import { DOCKER_HUB, formatReference, parseReference } from "../domain/reference.js";
import { SyncError, describeError, isSyncError } from "../errors.js";
import type { Logger } from "../report/logger.js";
import { oneLine } from "../util/text.js";
import {
  connectionCode,
  engineDetail,
  httpStatus,
  registryFailure,
  unreachable,
  type RegistryFailureContext,
} from "./failures.js";
import { resolveDockerHost } from "./host.js";
import { EngineStreamError, followMessages, type EngineMessage } from "./messages.js";
import { toProgressEvent, type EngineProgress } from "./progress.js";

const loadDockerode = lazyRequire<typeof Docker>("dockerode");

/**
 * The tarball as a stream that counts what the engine has taken. A pass-through rather than a
 * `data` listener on the file: a listener would start the file flowing before the request is
 * piped, and lose the first chunks.
 */
function readCounting(
  file: string,
  size: number,
  onRead: ((bytes: number, total: number) => void) | undefined,
): Readable {
  const source = createReadStream(file);
  if (!onRead) return source;
  let read = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      read += chunk.length;
      onRead(read, size);
      done(null, chunk);
    },
  });
  // A read failure ends the counter with the same error, so the load fails as it would have.
  pipeline(source, counter, () => undefined);
  return counter;
}

export interface DockerEngineOptions {
  /** A DOCKER_HOST-style address; defaults to $DOCKER_HOST, then unix:///var/run/docker.sock. */
  dockerHost?: string;
  logger: Logger;
  /** Where DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are read (tests pass their own). */
  env?: NodeJS.ProcessEnv;
}

/** Credentials for one registry, handed to the engine per call. */
export interface RegistryAuth {
  username: string;
  password: string;
  /** The registry host, e.g. `registry.gitlab.com` or `127.0.0.1:5000`. */
  serveraddress: string;
}

export interface StreamOptions {
  onProgress?: (event: EngineProgress) => void;
  signal?: AbortSignal;
}

export interface LoadOptions extends StreamOptions {
  /**
   * Bytes of the tarball read so far and its size: the engine reads the upload as it imports
   * it, so this is the load's progress (its own per-layer counts only come one layer at a time).
   */
  onRead?: (bytes: number, total: number) => void;
}

export interface LoadedImages {
  /** `repo:tag` of every tagged image the tarball held ("Loaded image: …"). */
  references: string[];
  /** Image IDs of untagged images ("Loaded image ID: sha256:…"). */
  imageIds: string[];
}

export interface PushedImage {
  reference: string;
  /** `sha256:…` of the manifest the registry now holds under the tag. */
  digest: string;
  /** Manifest size in bytes, when the engine says. */
  size?: number;
}

const PING_TIMEOUT_MS = 10_000;
const LOADED_IMAGE = /^Loaded image: (.+)$/;
const LOADED_IMAGE_ID = /^Loaded image ID: (sha256:[0-9a-f]{64})$/;
const PUSH_DIGEST = /digest: (sha256:[0-9a-f]{64})(?: size: (\d+))?/;
const PULL_DIGEST = /^Digest: (sha256:[0-9a-f]{64})$/;

export class DockerEngine {
  /** The address in use, as error messages show it. */
  readonly address: string;
  private readonly docker: Docker;
  private readonly logger: Logger;

  constructor(options: DockerEngineOptions) {
    const host = resolveDockerHost(options.dockerHost, options.env);
    this.address = host.address;
    this.logger = options.logger;
    try {
      const Dockerode = loadDockerode();
      this.docker = new Dockerode(host.options);
    } catch (err) {
      // dockerode parses $DOCKER_HOST itself even when given an address, and throws on a bad one.
      throw new SyncError(
        `Cannot use the Docker engine at ${this.address}: ${describeError(err)}`,
        {
          hint: "fix or unset DOCKER_HOST",
          cause: err,
        },
      );
    }
  }

  /** Fails with a SyncError unless the engine answers. */
  async ping(): Promise<void> {
    try {
      // dockerode takes an abortSignal here, but its type declarations only know ping().
      const ping = this.docker.ping.bind(this.docker) as unknown as (options: {
        abortSignal: AbortSignal;
      }) => Promise<unknown>;
      await ping({ abortSignal: AbortSignal.timeout(PING_TIMEOUT_MS) });
    } catch (err) {
      throw this.failure(err, () => {
        const status = httpStatus(err);
        return unreachable(this.address, status ? `HTTP ${status}` : engineDetail(err), err);
      });
    }
  }

  /**
   * Streams a `docker save` tarball (gzipped or not: the engine detects compression) into the
   * engine and returns what it loaded.
   */
  async loadImage(tarball: string, options: LoadOptions = {}): Promise<LoadedImages> {
    let size: number;
    try {
      size = (await stat(tarball)).size;
    } catch (err) {
      throw new SyncError(`Cannot read image tarball ${tarball} (${describeError(err)})`, {
        hint: "run the prepare step again to extract it from the artifact",
        cause: err,
      });
    }
    return this.loadFrom(readCounting(tarball, size, options.onRead), tarball, options);
  }

  /**
   * The same load, of a tarball's bytes as they arrive (the streaming sync hands over each
   * tarball as it comes out of the artifact). `label` names it in messages.
   */
  loadImageStream(
    stream: Readable,
    label: string,
    options: StreamOptions = {},
  ): Promise<LoadedImages> {
    return this.loadFrom(stream, label, options);
  }

  private async loadFrom(
    input: Readable,
    tarball: string,
    options: StreamOptions,
  ): Promise<LoadedImages> {
    const loaded: LoadedImages = { references: [], imageIds: [] };
    const failed = (detail: string, cause: unknown): SyncError =>
      new SyncError(`Docker engine could not load ${tarball}: ${oneLine(detail)}`, {
        hint: "check that the file is a complete `docker save` archive (the prepare step verifies it), or use --engine registry",
        cause,
      });
    this.logger.debug({ tarball, dockerHost: this.address }, "loading image tarball");
    try {
      const stream = await this.docker.loadImage(input, {
        quiet: false,
        ...(options.signal ? { abortSignal: options.signal } : {}),
      });
      await followMessages(
        stream,
        (message) => {
          const text = (message.stream ?? message.status ?? "").trim();
          const reference = LOADED_IMAGE.exec(text)?.[1];
          if (reference) loaded.references.push(reference);
          const id = LOADED_IMAGE_ID.exec(text)?.[1];
          if (id) loaded.imageIds.push(id);
          this.report(message, options.onProgress);
        },
        options.signal,
      );
    } catch (err) {
      throw this.failure(
        err,
        () => failed(err instanceof EngineStreamError ? err.message : engineDetail(err), err),
        options.signal,
      );
    }
    if (loaded.references.length === 0 && loaded.imageIds.length === 0) {
      throw failed("the engine reported no loaded image", undefined);
    }
    return loaded;
  }

  /** Gives `source` (a reference or image ID) the name `repo:tag`. */
  async tagImage(source: string, repo: string, tag: string): Promise<void> {
    try {
      await this.docker.getImage(source).tag({ repo, tag });
    } catch (err) {
      throw this.failure(err, () => {
        const detail = engineDetail(err);
        if (httpStatus(err) === 404) {
          return new SyncError(
            `Cannot tag ${source} as ${repo}:${tag}: the Docker engine has no image ${source}`,
            {
              hint: "load the image tarball first",
              cause: err,
            },
          );
        }
        return new SyncError(`Cannot tag ${source} as ${repo}:${tag}: ${detail}`, {
          hint: "check the registry path and tag (lowercase, no spaces)",
          cause: err,
        });
      });
    }
  }

  /**
   * Pushes `reference` (`registry/path:tag`) with `auth` and returns the manifest digest. The
   * engine answers 200 before it starts and reports a failed push (wrong password, denied,
   * registry down) as a message in the stream, so the whole stream is read and checked.
   */
  async pushImage(
    reference: string,
    auth: RegistryAuth,
    options: StreamOptions = {},
  ): Promise<PushedImage> {
    const { name, tag } = splitTag(reference);
    const context: RegistryFailureContext = {
      action: "push",
      reference,
      registry: auth.serveraddress,
      username: auth.username,
    };
    let digest: string | undefined;
    let size: number | undefined;
    this.logger.debug(
      { reference, registry: auth.serveraddress, username: auth.username },
      "pushing image",
    );
    try {
      const stream = await this.docker.getImage(name).push({
        tag,
        authconfig: authConfig(auth),
        ...(options.signal ? { abortSignal: options.signal } : {}),
      });
      await followMessages(
        stream,
        (message) => {
          const result = pushResult(message);
          if (result) ({ digest, size } = result);
          this.report(message, options.onProgress);
        },
        options.signal,
      );
    } catch (err) {
      throw this.failure(err, () => this.registryError(context, err), options.signal);
    }
    if (!digest) {
      throw new SyncError(
        `Cannot push ${reference}: the engine ended the push without a manifest digest`,
        {
          hint: "see the Docker engine's log and retry, or use --engine registry",
        },
      );
    }
    return { reference, digest, ...(size !== undefined ? { size } : {}) };
  }

  /** Checks credentials against the registry the way `docker login` does, without storing them. */
  async checkLogin(auth: RegistryAuth): Promise<void> {
    const context: RegistryFailureContext = {
      action: "log in to",
      registry: auth.serveraddress,
      username: auth.username,
    };
    try {
      await this.docker.checkAuth(authConfig(auth));
    } catch (err) {
      throw this.failure(err, () => this.registryError(context, err));
    }
  }

  /** Pulls `reference`; returns the manifest digest the engine reports. */
  async pullImage(
    reference: string,
    auth?: RegistryAuth,
    options: StreamOptions = {},
  ): Promise<{ reference: string; digest?: string }> {
    const context: RegistryFailureContext = {
      action: "pull",
      reference,
      registry: auth?.serveraddress ?? parseReference(reference)?.registry ?? DOCKER_HUB,
      ...(auth ? { username: auth.username } : {}),
    };
    let digest: string | undefined;
    try {
      const stream = await this.docker.pull(reference, {
        ...(auth ? { authconfig: authConfig(auth) } : {}),
        ...(options.signal ? { abortSignal: options.signal } : {}),
      });
      await followMessages(
        stream,
        (message) => {
          digest = PULL_DIGEST.exec(message.status ?? "")?.[1] ?? digest;
          this.report(message, options.onProgress);
        },
        options.signal,
      );
    } catch (err) {
      throw this.failure(err, () => this.registryError(context, err), options.signal);
    }
    return { reference, ...(digest ? { digest } : {}) };
  }

  /** Removes a name (or, by ID, the image); false when there was nothing by that name. */
  async removeImage(reference: string, options: { force?: boolean } = {}): Promise<boolean> {
    try {
      await this.docker.getImage(reference).remove({ force: options.force ?? false });
      return true;
    } catch (err) {
      if (httpStatus(err) === 404) return false;
      throw this.failure(err, () => {
        const inUse = httpStatus(err) === 409;
        return new SyncError(`Cannot remove image ${reference}: ${engineDetail(err)}`, {
          hint: inUse
            ? "a container still uses it; remove the container or pass force"
            : "see the Docker engine's log",
          cause: err,
        });
      });
    }
  }

  private report(
    message: EngineMessage,
    onProgress: ((event: EngineProgress) => void) | undefined,
  ): void {
    if (!onProgress) return;
    const event = toProgressEvent(message);
    if (event) onProgress(event);
  }

  private registryError(context: RegistryFailureContext, err: unknown): SyncError {
    const detail = err instanceof EngineStreamError ? err.message : engineDetail(err);
    return registryFailure(context, detail, err);
  }

  /**
   * The SyncError for a failed call: cancellation passes through as the signal's reason, an
   * engine that cannot be reached is said so in one way everywhere, the rest is up to `specific`.
   */
  private failure(err: unknown, specific: () => SyncError, signal?: AbortSignal): unknown {
    if (signal?.aborted) return signal.reason;
    if (isSyncError(err)) return err;
    const code = connectionCode(err);
    if (code) return unreachable(this.address, code, err);
    if (err instanceof EngineStreamError && err.connectionLost) {
      return new SyncError(
        `Docker engine at ${this.address} broke off the connection: ${err.message}`,
        {
          hint: "check the engine's log (journalctl -u docker) and retry",
          cause: err,
        },
      );
    }
    return specific();
  }
}

/**
 * The name the engine pushes (`registry/path`) and the tag, apart: the engine's push API takes
 * them separately, and pushing without a tag would push every tag the name has.
 */
function splitTag(reference: string): { name: string; tag: string } {
  const parsed = parseReference(reference);
  const hint = "push a `registry/path:tag` reference";
  if (!parsed) throw new SyncError(`Cannot push ${reference}: not an image reference`, { hint });
  if (!parsed.tag)
    throw new SyncError(`Cannot push ${reference}: the reference has no tag`, { hint });
  return {
    name: formatReference({ ...parsed, tag: undefined, digest: undefined }),
    tag: parsed.tag,
  };
}

/** The auth config the engine expects in X-Registry-Auth; dockerode encodes it. */
function authConfig(auth: RegistryAuth): {
  username: string;
  password: string;
  serveraddress: string;
} {
  return { username: auth.username, password: auth.password, serveraddress: auth.serveraddress };
}

/** The manifest digest a push reports: the final `aux` message, else the "digest: …" status line. */
function pushResult(message: EngineMessage): { digest: string; size?: number } | undefined {
  const aux = message.aux;
  if (typeof aux === "object" && aux !== null) {
    const { Digest, Size } = aux as { Digest?: unknown; Size?: unknown };
    if (typeof Digest === "string" && Digest.startsWith("sha256:")) {
      return { digest: Digest, ...(typeof Size === "number" ? { size: Size } : {}) };
    }
  }
  const match = PUSH_DIGEST.exec(message.status ?? "");
  if (!match?.[1]) return undefined;
  return { digest: match[1], ...(match[2] ? { size: Number(match[2]) } : {}) };
}
