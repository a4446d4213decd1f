/**
 * Progress of a load, push or pull as the engine reports it, turned into small events and shown
 * either as a live multi-line display (one bar per layer, on a terminal) or as log lines — one per
 * layer state change, never one per byte tick, so journald and CI logs stay readable.
 */
import cliProgress from "cli-progress";
import type { Logger } from "../report/logger.js";
import type { EngineMessage } from "./messages.js";

export interface ProgressEvent {
  /** The layer (short id) or tag the event is about; absent for messages about the whole image. */
  id?: string;
  /** The engine's wording: "Preparing", "Pushing", "Pushed", "Layer already exists", "Mounted from …". */
  status: string;
  /** Bytes done and expected, while a layer is moving. */
  current?: number;
  total?: number;
}

/** The progress event a message stands for, if it is one (results such as `aux` are not). */
export function toProgressEvent(message: EngineMessage): ProgressEvent | undefined {
  const status = message.status ?? message.stream?.trim();
  if (!status) return undefined;
  const event: ProgressEvent = { status };
  if (message.id) event.id = message.id;
  const { current, total } = message.progressDetail ?? {};
  if (current !== undefined) event.current = current;
  if (total !== undefined && total > 0) event.total = total;
  return event;
}

/** States after which a layer has nothing left to do. */
export function isFinalStatus(status: string): boolean {
  return (
    status === "Pushed" ||
    status === "Layer already exists" ||
    status.startsWith("Mounted from") ||
    status === "Already exists" ||
    status === "Pull complete"
  );
}

export interface ProgressRenderer {
  update(event: ProgressEvent): void;
  stop(): void;
}

export interface ProgressRendererOptions {
  /** What is moving, e.g. `push 127.0.0.1:5000/group/app:1.0`; starts every line. */
  label: string;
  logger: Logger;
  /** A live display when true; log lines otherwise. Defaults to whether stderr is a terminal. */
  tty?: boolean;
  /** Where the live display goes (stderr unless a test captures it). */
  stream?: NodeJS.WritableStream;
}

export function createProgressRenderer(options: ProgressRendererOptions): ProgressRenderer {
  const tty = options.tty ?? Boolean(process.stderr.isTTY);
  return tty ? liveRenderer(options) : logRenderer(options);
}

/** One log line each time a layer (or the image) changes state; byte ticks only update memory. */
function logRenderer({ label, logger }: ProgressRendererOptions): ProgressRenderer {
  const states = new Map<string, string>();
  let lastGeneral = "";
  return {
    update(event) {
      if (event.id === undefined) {
        if (event.status === lastGeneral) return;
        lastGeneral = event.status;
        logger.info({ image: label, status: event.status }, `${label}: ${event.status}`);
        return;
      }
      if (states.get(event.id) === event.status) return;
      states.set(event.id, event.status);
      logger.info(
        { image: label, layer: event.id, status: event.status, bytes: event.total },
        `${label}: ${event.id} ${event.status}`,
      );
    },
    stop() {
      states.clear();
    },
  };
}

function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/** A bar per layer that redraws in place; whole-image messages scroll above the bars. */
function liveRenderer({ label, stream }: ProgressRendererOptions): ProgressRenderer {
  const multibar = new cliProgress.MultiBar(
    {
      format: "{id} [{bar}] {status} {size}",
      barsize: 20,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      autopadding: true,
      stream: (stream ?? process.stderr) as NodeJS.WriteStream,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  let lastGeneral = "";
  return {
    update(event) {
      if (event.id === undefined) {
        if (event.status === lastGeneral) return;
        lastGeneral = event.status;
        multibar.log(`${label}: ${event.status}\n`);
        return;
      }
      const total = event.total ?? bars.get(event.id)?.getTotal() ?? 1;
      const value = isFinalStatus(event.status) ? total : Math.min(event.current ?? 0, total);
      const payload = {
        id: event.id,
        status: event.status,
        size: event.total ? `${mib(event.current ?? 0)}/${mib(event.total)}` : "",
      };
      const bar = bars.get(event.id);
      if (!bar) {
        bars.set(event.id, multibar.create(total, value, payload));
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
