/**
 * The one place progress is drawn. The pipeline and the engines only emit ProgressEvents; here
 * they become one live line per task on a terminal, or log lines otherwise. A task that reports
 * the states of its parts (an image's layers, from the Docker engine) is shown like a byte
 * transfer too — the bytes of its parts added up — so a person or a journal sees one line per
 * image moving, not one per layer; each layer's state changes are logged at debug only.
 */
import type { ProgressListener } from "../domain/events.js";
import { formatBytes, formatRate, GiB, KiB, MiB } from "../util/bytes.js";
import { printable } from "../util/text.js";
import type { Logger } from "./logger.js";
import type { LiveArea } from "./terminal.js";

export interface ProgressOptions {
  /** Live lines on a terminal; without it, log lines. */
  live?: LiveArea;
  /** Log lines: at most one per this many milliseconds of a transfer. */
  everyMs?: number;
  /** The clock, replaceable for tests. */
  now?: () => number;
}

interface Part {
  status: string;
  bytes: number;
  total: number | undefined;
  done: boolean;
}

/** What is known of one task; the drawing and the log lines are made from it. */
interface TaskState {
  task: string;
  started: number;
  bytes: number;
  total: number | undefined;
  /** What of `bytes` this run moved (all of it unless the task resumed): the rate's measure. */
  moved: number;
  /** Work without a byte count under way, and since when. */
  phase: { text: string; since: number } | undefined;
  /** Layers, when the engine reports them. */
  parts: Map<string, Part>;
  /** Recent (time, moved) samples: the rate is taken over the last few seconds. */
  samples: Array<[number, number]>;
  lastLog: number;
  lastStatus: string;
}

/** The rate is measured over this window, so a stall shows quickly and a burst does not linger. */
const RATE_WINDOW_MS = 5000;

/**
 * The listener the commands hand to the pipeline: live lines when `options.live` is given (a
 * terminal), else a log line every `everyMs` of a transfer.
 */
export function progressListener(logger: Logger, options: ProgressOptions = {}): ProgressListener {
  const now = options.now ?? Date.now;
  const everyMs = options.everyMs ?? 10_000;
  const live = options.live;
  const tasks = new Map<string, TaskState>();

  const state = (task: string): TaskState => {
    let entry = tasks.get(task);
    if (!entry) {
      const started = now();
      entry = {
        task,
        started,
        bytes: 0,
        total: undefined,
        moved: 0,
        phase: undefined,
        parts: new Map(),
        samples: [[started, 0]],
        lastLog: started,
        lastStatus: "",
      };
      tasks.set(task, entry);
    }
    return entry;
  };

  const moved = (entry: TaskState): void => {
    const t = now();
    entry.samples.push([t, entry.moved]);
    while (entry.samples.length > 2 && t - (entry.samples[1]?.[0] ?? t) > RATE_WINDOW_MS) {
      entry.samples.shift();
    }
    if (live) {
      live.set(entry.task, (columns) => progressLine(entry, columns, now()));
      return;
    }
    if (t - entry.lastLog < everyMs || entry.bytes === 0 || entry.phase) return;
    entry.lastLog = t;
    const { rate, eta } = speed(entry, t);
    logger.info(
      {
        task: entry.task,
        bytes: entry.bytes,
        total: entry.total,
        percent: entry.total ? Math.round((entry.bytes / entry.total) * 1000) / 10 : undefined,
        rateMiBs: Math.round((rate / MiB) * 10) / 10,
        etaSeconds: eta,
      },
      `${entry.task}: ${logAmount(entry)}, ${formatRate(rate)}${eta !== undefined ? `, ETA ${duration(eta)}` : ""}`,
    );
  };

  return (event) => {
    if (event.kind === "start") {
      tasks.delete(event.task);
      const entry = state(event.task);
      if (event.total !== undefined) entry.total = event.total;
      return;
    }
    if (event.kind === "end") {
      const entry = tasks.get(event.task);
      tasks.delete(event.task);
      live?.remove(event.task);
      if (entry) {
        const seconds = (now() - entry.started) / 1000;
        const fields = {
          task: event.task,
          ok: event.ok,
          bytes: entry.bytes,
          seconds: round1(seconds),
        };
        // The lines that follow say what a finished transfer did; one that did not finish (a
        // failure, a signal) says where it stopped, and never that it is done.
        if (event.ok) {
          logger.debug(
            fields,
            `${event.task}: done after ${duration(seconds)} (${formatBytes(entry.bytes)})`,
          );
        } else {
          logger.info(
            fields,
            `${event.task}: stopped at ${logAmount(entry)} after ${duration(seconds)}`,
          );
        }
      }
      return;
    }
    const entry = state(event.task);
    if (event.kind === "status") {
      // Engines repeat whole-image messages; each is worth a debug line once.
      if (event.status !== entry.lastStatus) {
        entry.lastStatus = event.status;
        logger.debug({ task: event.task, status: event.status }, `${event.task}: ${event.status}`);
      }
      return;
    }
    if (event.kind === "phase") {
      entry.phase = { text: event.phase, since: now() };
      logger.debug({ task: event.task, phase: event.phase }, `${event.task}: ${event.phase}`);
      live?.set(entry.task, (columns) => progressLine(entry, columns, now()));
      return;
    }
    if (event.kind === "bytes") {
      if (event.bytes !== entry.bytes) entry.phase = undefined;
      entry.bytes = event.bytes;
      entry.moved = event.moved ?? event.bytes;
      if (event.total !== undefined) entry.total = event.total;
      moved(entry);
      return;
    }
    const part = entry.parts.get(event.part);
    if (part?.status !== event.status) {
      logger.debug(
        { task: event.task, layer: event.part, status: event.status, bytes: event.total },
        `${event.task}: layer ${event.part} ${event.status}`,
      );
    }
    const total = event.total ?? part?.total;
    entry.parts.set(event.part, {
      status: event.status,
      total,
      bytes: event.done && total !== undefined ? total : (event.bytes ?? part?.bytes ?? 0),
      done: event.done === true,
    });
    sumParts(entry);
    moved(entry);
  };
}

/** A task of parts moves as the sum of its parts' bytes, out of the sum of the totals known. */
function sumParts(entry: TaskState): void {
  let bytes = 0;
  let total = 0;
  for (const part of entry.parts.values()) {
    bytes += part.bytes;
    total += part.total ?? 0;
  }
  if (bytes !== entry.bytes) entry.phase = undefined;
  entry.bytes = bytes;
  entry.moved = bytes;
  entry.total = total > 0 ? total : undefined;
}

function speed(entry: TaskState, t: number): { rate: number; eta: number | undefined } {
  const [from, fromBytes] = entry.samples[0] ?? [entry.started, 0];
  const seconds = (t - from) / 1000;
  const rate = seconds > 0.2 ? Math.max(0, (entry.moved - fromBytes) / seconds) : 0;
  // An engine's count can pass its own total a little: nothing is left then, not an unknown.
  const left = entry.total !== undefined ? Math.max(0, entry.total - entry.bytes) : undefined;
  const eta = left === 0 ? 0 : left !== undefined && rate > 0 ? Math.round(left / rate) : undefined;
  return { rate, eta };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/** `42 s`, `3m05s`, `1h02m`: short enough for a bar, exact enough to plan by. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** ` 2.0/28.6 MiB`: both numbers in the unit of the larger one, so they read at a glance. */
export function bytePair(done: number, total: number): string {
  const unit = total >= GiB ? GiB : total >= MiB ? MiB : KiB;
  const name = unit === GiB ? "GiB" : unit === MiB ? "MiB" : "KiB";
  const digits = unit === GiB ? 2 : 1;
  const all = (total / unit).toFixed(digits);
  // As wide as the total, so the line keeps its length while the count grows.
  return `${(done / unit).toFixed(digits).padStart(all.length)}/${all} ${name}`;
}

function logAmount(entry: TaskState): string {
  if (entry.total === undefined) return formatBytes(entry.bytes);
  return `${formatBytes(entry.bytes)} of ${formatBytes(entry.total)} (${percent(entry)})`;
}

function percent(entry: TaskState): string {
  if (!entry.total) return "";
  return `${Math.min(100, Math.floor((entry.bytes / entry.total) * 100))}%`;
}

function layerCount(entry: TaskState): string | undefined {
  if (entry.parts.size === 0) return undefined;
  let done = 0;
  for (const part of entry.parts.values()) if (part.done) done += 1;
  return `${done}/${entry.parts.size} layers`;
}

/**
 * What a bar is labelled with: the verb and the image's last two path segments
 * (`push x86/presto-coordinator`), the registry, the project and the tag left out — the lines
 * above already name them, and they would crowd out the numbers.
 */
export function shortLabel(task: string): string {
  const space = task.indexOf(" ");
  if (space < 0) return task;
  const verb = task.slice(0, space);
  const subject = task.slice(space + 1);
  if (!/[/:]/.test(subject)) return task;
  const name = subject.replace(/@sha256:[0-9a-f]+$/, "").replace(/:[^/:]+$/, "");
  const segments = name.split("/");
  return `${verb} ${segments.slice(-2).join("/")}`;
}

/**
 * One task as one line of at most `columns` characters. Everything a person needs fits in 80
 * columns — label, percent, bytes, rate and ETA; the bar and the layer count take what room is
 * left. The first layout below that fits is drawn: the layer count goes first, then the bar
 * (a whole label says more than a bar), then the label is shortened in the middle, then the
 * ETA and the rate go.
 */
function progressLine(entry: TaskState, columns: number, t: number): string {
  // Task names carry server-supplied names (an artifact's, a repository's): drawn printable.
  const full = shortLabel(printable(entry.task));
  if (entry.phase) return phaseLine(entry, entry.phase, full, columns, t);
  const { rate, eta } = speed(entry, t);
  const known = entry.total !== undefined;
  const pct = known ? percent(entry).padStart(4) : undefined;
  const amount = known ? bytePair(entry.bytes, entry.total ?? 0) : formatBytes(entry.bytes);
  // Fixed widths, so the bar keeps its length while the figures change.
  const rateText = formatRate(rate).padStart(10);
  const etaText = (
    eta !== undefined ? `ETA ${duration(eta)}` : known ? "ETA ?" : undefined
  )?.padEnd(9);
  const layers = layerCount(entry);
  type Layout = { label: number; layers: boolean; bar: boolean; eta: boolean; rate: boolean };
  const layouts: Layout[] = [
    { label: full.length, layers: true, bar: true, eta: true, rate: true },
    { label: full.length, layers: false, bar: true, eta: true, rate: true },
    { label: full.length, layers: false, bar: false, eta: true, rate: true },
    { label: MIN_LABEL_WITH_BAR, layers: false, bar: true, eta: true, rate: true },
    { label: MIN_LABEL, layers: false, bar: false, eta: true, rate: true },
    { label: MIN_LABEL, layers: false, bar: false, eta: false, rate: true },
    { label: MIN_LABEL, layers: false, bar: false, eta: false, rate: false },
  ];
  const compose = (layout: Layout, label: string, barWidth: number): string =>
    [
      label,
      layout.layers ? layers : undefined,
      pct,
      layout.bar && known ? `[${barText(entry.bytes / (entry.total || 1), barWidth)}]` : undefined,
      amount,
      layout.rate ? rateText : undefined,
      layout.eta ? etaText : undefined,
    ]
      .filter((part): part is string => part !== undefined && part !== "")
      .join(" ");
  for (const layout of layouts) {
    if (layout.bar && !known) continue;
    const barWidth = layout.bar ? MIN_BAR : 0;
    const fixed = compose(layout, "", barWidth).length + 1 - (layout.bar ? 0 : 0);
    // Room for the label: all of it when it fits, else down to the layout's least.
    const labelRoom = Math.min(full.length, columns - fixed);
    if (labelRoom < Math.min(layout.label, full.length)) continue;
    const label = cutMiddle(full, labelRoom);
    // Measured with the padding, drawn without the trailing part of it: the bar stays put.
    if (!layout.bar) return compose(layout, label, 0).trimEnd();
    const spare = columns - compose(layout, label, MIN_BAR).length;
    return compose(layout, label, Math.min(MAX_BAR, MIN_BAR + spare)).trimEnd();
  }
  return cutMiddle(compose(layouts[layouts.length - 1] as Layout, full, 0), columns).trimEnd();
}

/**
 * A task in a phase without a byte count: `push x86/presto-coordinator 10.0 MiB read; committing
 * … 12 s` — what it moved, what it does now and for how long, so a long phase is seen to be one.
 */
function phaseLine(
  entry: TaskState,
  phase: { text: string; since: number },
  label: string,
  columns: number,
  t: number,
): string {
  const done = entry.bytes > 0 ? `${formatBytes(entry.bytes)} ${doneVerb(entry.task)}; ` : "";
  const tail = `${done}${printable(phase.text)} … ${duration((t - phase.since) / 1000)}`;
  return `${cutMiddle(label, Math.max(MIN_LABEL, columns - tail.length - 1))} ${tail}`;
}

/** What the bytes of a task in a phase were: a download's fetched, a push's or a load's read. */
function doneVerb(task: string): string {
  return task.startsWith("download ") ? "fetched" : "read";
}

const MIN_BAR = 6;
const MAX_BAR = 40;
const MIN_LABEL_WITH_BAR = 20;
const MIN_LABEL = 12;

function barText(share: number, width: number): string {
  const filled = Math.max(0, Math.min(width, Math.floor(share * width)));
  if (filled >= width) return "=".repeat(width);
  return `${"=".repeat(filled)}>${" ".repeat(width - filled - 1)}`;
}

/** `text` shortened to `length` by an ellipsis in the middle, keeping both ends readable. */
function cutMiddle(text: string, length: number): string {
  if (text.length <= length) return text;
  if (length <= 1) return text.slice(0, Math.max(0, length));
  const head = Math.ceil((length - 1) / 2);
  const tail = length - 1 - head;
  return `${text.slice(0, head)}…${tail > 0 ? text.slice(-tail) : ""}`;
}
