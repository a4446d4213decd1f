import type { StepReporter } from "../domain/events.js";
import type { Logger } from "./logger.js";
import type { Output } from "./output.js";

/** The indented rule between artifacts in the original's prepare and push plans. */
const PLAN_RULE = "  ─────────────────────────────────────────────────────────────";

/**
 * Steps on stdout: short (see StepReporter.brief) at a terminal unless `full` (--verbose) is
 * asked for; piped, always the original's full lines.
 */
export function outputSteps(out: Output, options: { full?: boolean } = {}): StepReporter {
  return {
    brief: out.isTTY && options.full !== true,
    step: (n, total, message) => out.line(`[${n}/${total}] ${message}`),
    detail: (message) => out.line(`        → ${message}`),
    warn: (message) => out.line(`WARNING: ${message}`),
    text: (message) => out.line(message),
    status: (message) => out.line(message),
    rule: () => out.line(PLAN_RULE),
  };
}

/**
 * For the daemon: the same steps as structured records, so journald keeps them; short (see
 * StepReporter.brief) when `brief` says a person reads them at a terminal.
 */
export function logSteps(logger: Logger, options: { brief?: boolean } = {}): StepReporter {
  return {
    brief: options.brief === true,
    step: (n, total, message) => logger.info({ step: n, of: total }, message),
    detail: (message) => logger.info(message),
    warn: (message) => logger.warn(message),
    text: (message) => logger.debug(message),
    // One record per image and state at the default level; the indentation is for stdout only.
    status: (message) => logger.info(message.trim()),
    rule: () => logger.debug(PLAN_RULE),
  };
}
