/**
 * `--log-format json` promises a log pipeline (`journalctl -o cat | jq`) one JSON object per
 * stderr line. The logger keeps that by itself; these keep it for the rest: the CLI's closing
 * line, and whatever else reaches stderr (commander's usage errors, Node's warnings, a library's
 * console.error), which would otherwise stop `jq` with a parse error.
 */
import { Buffer } from "node:buffer";

/** pino's levels for the records written here. */
export const LEVEL = { info: 30, warn: 40, error: 50 } as const;

/** One record in pino's shape (level, time, fields, msg), as a line. */
export function jsonRecord(
  level: number,
  msg: string,
  fields: Record<string, unknown> = {},
): string {
  return `${JSON.stringify({ level, time: Date.now(), ...fields, msg })}\n`;
}

function isJsonObject(line: string): boolean {
  if (!line.startsWith("{")) return false;
  try {
    const parsed: unknown = JSON.parse(line);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed);
  } catch {
    return false;
  }
}

/**
 * A line as a record: records pass as they are; other text becomes a warning (an error if it
 * says so), marked `printed` as not one of the tool's own log records.
 */
function asRecord(line: string): string {
  if (line.trim() === "") return "";
  if (isJsonObject(line)) return `${line}\n`;
  return jsonRecord(/^error\b/i.test(line) ? LEVEL.error : LEVEL.warn, line, { printed: true });
}

type Write = NodeJS.WritableStream["write"];

/**
 * From now until the returned function is called, every line written to `stream` while
 * `enabled()` holds is one JSON object: records pass, any other line is wrapped in one. Patched
 * on the stream itself because that is the only place a library's own printing passes through.
 */
export function keepJsonLines(stream: NodeJS.WritableStream, enabled: () => boolean): () => void {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- put back as it was, never called unbound
  const original = stream.write;
  let partial = "";
  const guarded = function (
    chunk: string | Uint8Array,
    encodingOrCallback?: BufferEncoding | ((err?: Error | null) => void),
    callback?: (err?: Error | null) => void,
  ): boolean {
    if (!enabled()) {
      return Reflect.apply(original, stream, [chunk, encodingOrCallback, callback]) as boolean;
    }
    const encoding = typeof encodingOrCallback === "string" ? encodingOrCallback : undefined;
    const done = typeof encodingOrCallback === "function" ? encodingOrCallback : callback;
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString(encoding);
    const lines = (partial + text).split("\n");
    // A line written in pieces is judged once it is whole.
    partial = lines.pop() ?? "";
    return Reflect.apply(original, stream, [lines.map(asRecord).join(""), done]) as boolean;
  } as Write;
  stream.write = guarded;
  return () => {
    stream.write = original;
    if (partial !== "") stream.write(asRecord(partial));
    partial = "";
  };
}
