/**
 * The one place progress is drawn. The pipeline and the engines only emit ProgressEvents; here
 * they become bars on a terminal, or log lines otherwise: a byte transfer logs every few seconds
 * and a task with parts (an image's layers) logs each state change, never each byte tick, so
 * journald and CI logs show work moving and stay readable.
 */
import cliProgress from "cli-progress";
import type { ProgressEvent, ProgressListener } from "../domain/events.js";
import { formatMiB, MiB } from "../util/bytes.js";
import { printable } from "../util/text.js";
import type { Logger } from "./logger.js";

export interface ProgressOptions {
  /** Bars when true, log lines otherwise. Defaults to whether stderr is a terminal. */
  tty?: boolean;
  /** Where bars go (stderr unless a test captures them). */
  stream?: NodeJS.WritableStream;
  /** Log lines: at most one per this many milliseconds of a byte transfer. */
  everyMs?: number;
}

/** How one task is shown; which kind is decided by what the task reports first. */
interface TaskView {
  update(event: ProgressEvent): void;
  /** `ok` false: the task failed or was stopped by a signal, so it is not shown as done. */
  stop(ok: boolean): void;
}

interface ViewSettings {
  label: string;
  /** When the task started: rates and durations count from here. */
  started: number;
  logger: Logger;
  stream: NodeJS.WritableStream;
  everyMs: number;
}

/**
 * The listener the commands hand to the pipeline. A task that reports bytes gets a bar with
 * rate and ETA (or a log line every `everyMs`, and one when done); a task that reports the
 * states of its parts gets a bar per part (or a log line per state change).
 */
export function progressListener(logger: Logger, options: ProgressOptions = {}): ProgressListener {
  const tty = options.tty ?? Boolean(process.stderr.isTTY);
  const base = {
    logger,
    stream: options.stream ?? process.stderr,
    everyMs: options.everyMs ?? 10_000,
  };
  const byBytes = tty ? byteBar : byteLog;
  const byParts = tty ? partBars : partLog;
  const tasks = new Map<string, { started: number; view?: TaskView }>();
  return (event) => {
    if (event.kind === "start") {
      tasks.set(event.task, { started: Date.now() });
      return;
    }
    const task = tasks.get(event.task) ?? { started: Date.now() };
    // Task names carry server-supplied names (an artifact's, a repository's): drawn printable.
    const settings = { ...base, label: printable(event.task), started: task.started };
    if (event.kind === "end") {
      tasks.delete(event.task);
      // A task that reported nothing ends like a transfer with nothing to move.
      (task.view ?? byBytes(settings)).stop(event.ok);
      return;
    }
    task.view ??= (event.kind === "bytes" ? byBytes : byParts)(settings);
    tasks.set(event.task, task);
    task.view.update(event);
  };
}

function byteBar({ label, started, stream }: ViewSettings): TaskView {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {done}/{all} | {rate}/s | ETA {eta_formatted}`,
      hideCursor: true,
      stream,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let begun = false;
  return {
    update(event) {
      if (event.kind !== "bytes") return;
      const { bytes, total } = event;
      const payload = {
        done: formatMiB(bytes),
        all: total ? formatMiB(total) : "?",
        rate: formatMiB(bytes / Math.max(0.001, (Date.now() - started) / 1000)),
      };
      if (!begun) {
        bar.start(total ?? 0, bytes, payload);
        begun = true;
      } else bar.update(bytes, payload);
      if (total) bar.setTotal(total);
    },
    stop() {
      if (begun) bar.stop();
    },
  };
}

function byteLog({ label, started, logger, everyMs }: ViewSettings): TaskView {
  let last = 0;
  let lastBytes = 0;
  return {
    update(event) {
      if (event.kind !== "bytes") return;
      const { bytes, total } = event;
      const now = Date.now();
      lastBytes = bytes;
      if (now - last < everyMs) return;
      last = now;
      const seconds = Math.max(0.001, (now - started) / 1000);
      const rate = bytes / seconds;
      const eta = total && rate > 0 ? Math.round((total - bytes) / rate) : undefined;
      logger.info(
        {
          bytes,
          total,
          percent: total ? Math.round((bytes / total) * 1000) / 10 : undefined,
          rateMiBs: Math.round((rate / MiB) * 10) / 10,
          etaSeconds: eta,
        },
        `${label}: ${formatMiB(bytes)}${total ? ` of ${formatMiB(total)}` : ""}`,
      );
    },
    stop(ok) {
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      logger.info(
        { bytes: lastBytes, seconds: Math.round(seconds * 10) / 10 },
        `${label}: ${ok ? "done" : `stopped at ${formatMiB(lastBytes)}`}`,
      );
    },
  };
}

/** One log line each time a part (or the whole task) changes state; byte ticks only update memory. */
function partLog({ label, logger }: ViewSettings): TaskView {
  const states = new Map<string, string>();
  const general = changes((status) => logger.info({ image: label, status }, `${label}: ${status}`));
  return {
    update(event) {
      if (event.kind === "status") return general(event.status);
      if (event.kind !== "part" || states.get(event.part) === event.status) return;
      states.set(event.part, event.status);
      logger.info(
        { image: label, layer: event.part, status: event.status, bytes: event.total },
        `${label}: ${event.part} ${event.status}`,
      );
    },
    stop() {
      states.clear();
    },
  };
}

/** A bar per part that redraws in place; messages about the whole task scroll above the bars. */
function partBars({ label, stream }: ViewSettings): TaskView {
  const multibar = new cliProgress.MultiBar(
    {
      format: "{id} [{bar}] {status} {size}",
      barsize: 20,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      autopadding: true,
      stream,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  const general = changes((status) => multibar.log(`${label}: ${printable(status)}\n`));
  return {
    update(event) {
      if (event.kind === "status") return general(event.status);
      if (event.kind !== "part") return;
      const bar = bars.get(event.part);
      const total = event.total ?? bar?.getTotal() ?? 1;
      const value = event.done ? total : Math.min(event.bytes ?? 0, total);
      const payload = {
        id: printable(event.part),
        status: printable(event.status),
        size: event.total ? `${formatMiB(event.bytes ?? 0)}/${formatMiB(event.total)}` : "",
      };
      if (!bar) {
        bars.set(event.part, multibar.create(total, value, payload));
        return;
      }
      if (event.total) bar.setTotal(total);
      bar.update(value, payload);
    },
    stop() {
      multibar.stop();
    },
  };
}

/** `show`, skipping a message equal to the one before (engines repeat whole-image messages). */
function changes(show: (status: string) => void): (status: string) => void {
  let last = "";
  return (status) => {
    if (status === last) return;
    last = status;
    show(status);
  };
}
