import { pino, type Logger, type DestinationStream } from "pino";
import { prettyFactory } from "pino-pretty";
import { printable } from "../util/text.js";

export type { Logger } from "pino";
export type LogFormat = "pretty" | "json" | "auto";
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Field paths that may hold a secret anywhere in a log record; pino replaces them. */
export const REDACT_PATHS = [
  "token",
  "*.token",
  "password",
  "*.password",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "headers.Authorization",
  'headers["private-token"]',
  'headers["PRIVATE-TOKEN"]',
  "*.headers.authorization",
  'request.headers["private-token"]',
  "ghToken",
  "gitlabToken",
  "registryPassword",
];

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where records go; stderr unless a test captures them. */
  destination?: DestinationStream;
  /**
   * Where the finished lines go instead of straight to stderr: the terminal's live area, which
   * clears the progress bars before each line and draws them again after.
   */
  write?: (text: string) => void;
  /** Whether stderr is a terminal; decides the format when it is `auto`, and colours. */
  isTTY?: boolean;
}

/**
 * Diagnostics go to stderr so stdout stays clean for `--json` output: pretty on a terminal
 * (for operators), JSON lines otherwise (for journald and CI). Both are written synchronously,
 * in the calling thread, so a log line never arrives after the output that followed it (a
 * worker-thread transport would deliver it later, or not at all before an exit).
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const isTTY = options.isTTY ?? Boolean(process.stderr.isTTY);
  const format =
    options.format === "auto" || !options.format ? (isTTY ? "pretty" : "json") : options.format;
  const base = {
    level,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    base: undefined,
    // Messages quote servers (run titles, tags, registry errors); pretty output prints them raw
    // to a terminal, so control characters are escaped in every message, whatever the format.
    hooks: {
      logMethod(this: Logger, args: unknown[], method: (...args: unknown[]) => void) {
        method.apply(
          this,
          args.map((arg) => (typeof arg === "string" ? printable(arg) : arg)),
        );
      },
    },
  };
  if (options.destination) return pino(base, options.destination);
  const write = options.write ?? ((text: string) => void process.stderr.write(text));
  if (format === "pretty") {
    const pretty = prettyFactory({
      colorize: isTTY,
      translateTime: "SYS:HH:MM:ss",
      // A person reads the message; the fields are for the JSON log, except an error's detail.
      singleLine: true,
      include: "level,time,msg,err",
    });
    return pino(base, { write: (line: string) => write(pretty(line)) });
  }
  return pino(base, { write });
}

/** A logger that drops everything: for library calls in tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
