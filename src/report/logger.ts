import { pino, type Logger, type DestinationStream } from "pino";
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
  /** Whether stderr is a terminal; decides the format when it is `auto`. */
  isTTY?: boolean;
}

/**
 * Diagnostics go to stderr so stdout stays clean for `--json` output: pretty on a terminal
 * (for operators), JSON lines otherwise (for journald and CI).
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
  if (format === "pretty") {
    return pino({
      ...base,
      transport: {
        target: "pino-pretty",
        options: {
          destination: 2,
          colorize: isTTY,
          translateTime: "SYS:HH:MM:ss",
          // One line per record for a person; context the message already says is left out.
          singleLine: true,
          ignore: "pid,hostname,summary,image,imageTag,status,layer,step,of",
        },
      },
    });
  }
  return pino(base, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything: for library calls in tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
