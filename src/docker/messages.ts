/**
 * The Docker engine answers load, push and pull with a stream of JSON messages (the engine's
 * `jsonmessage` format), one per line, under an HTTP 200 that was sent before the work began.
 * So a failure arrives as a message inside a successful response, and reading that stream to the
 * end — and looking at every message — is the only way to know whether the work succeeded.
 */
import { addAbortSignal, type Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { describeError } from "../errors.js";

export interface EngineMessage {
  /** Per-layer or overall state: "Pushing", "Layer already exists", "Loaded image: …" … */
  status?: string;
  /** Free text, as `docker load` prints it: "Loaded image: repo:tag\n". */
  stream?: string;
  /** The layer (short id) or tag the status is about. */
  id?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { code?: number; message?: string };
  /** Structured result, e.g. `{ Tag, Digest, Size }` at the end of a push. */
  aux?: unknown;
}

/** A failure the engine reported inside the message stream, or the stream breaking off. */
export class EngineStreamError extends Error {
  constructor(
    message: string,
    /** True when the connection broke rather than the engine reporting a failure. */
    readonly connectionLost = false,
  ) {
    super(message);
    this.name = "EngineStreamError";
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** One line of the stream; text that is not JSON is kept as free text rather than dropped. */
export function parseMessage(line: string): EngineMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { stream: line };
  }
  if (!isRecord(value)) return { stream: line };
  const message: EngineMessage = {};
  if (typeof value.status === "string") message.status = value.status;
  if (typeof value.stream === "string") message.stream = value.stream;
  if (typeof value.id === "string") message.id = value.id;
  if (typeof value.error === "string") message.error = value.error;
  if (isRecord(value.errorDetail)) {
    const { code, message: text } = value.errorDetail;
    message.errorDetail = {
      ...(typeof code === "number" ? { code } : {}),
      ...(typeof text === "string" ? { message: text } : {}),
    };
  }
  if (isRecord(value.progressDetail)) {
    const { current, total } = value.progressDetail;
    message.progressDetail = {
      ...(typeof current === "number" ? { current } : {}),
      ...(typeof total === "number" ? { total } : {}),
    };
  }
  if (value.aux !== undefined) message.aux = value.aux;
  return message;
}

/** The failure a message carries, if any: `errorDetail.message` is the fuller text. */
export function messageError(message: EngineMessage): string | undefined {
  const text = message.errorDetail?.message ?? message.error;
  if (text !== undefined) return text || "unknown error";
  return message.errorDetail ? "unknown error" : undefined;
}

/**
 * Reads the stream to its end, handing each message to `onMessage`. Rejects with an
 * EngineStreamError on the first message that carries an error (and stops reading), or when the
 * connection breaks; rejects with the signal's reason when aborted.
 */
export async function followMessages(
  stream: NodeJS.ReadableStream,
  onMessage: (message: EngineMessage) => void,
  signal?: AbortSignal,
): Promise<void> {
  const readable = stream as Readable;
  if (signal) addAbortSignal(signal, readable);
  const decoder = new StringDecoder("utf8");
  let pending = "";
  const handle = (line: string): void => {
    const trimmed = line.trim();
    if (!trimmed) return;
    const message = parseMessage(trimmed);
    const error = messageError(message);
    if (error !== undefined) throw new EngineStreamError(error);
    onMessage(message);
  };
  try {
    for await (const chunk of readable) {
      pending += typeof chunk === "string" ? chunk : decoder.write(chunk as Buffer);
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) handle(line);
    }
    handle(pending + decoder.end());
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof EngineStreamError) throw err;
    throw new EngineStreamError(`connection to the engine lost: ${describeError(err)}`, true);
  }
}
