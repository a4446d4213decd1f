/**
 * The live lines at the bottom of a terminal: progress bars redrawn in place, and everything
 * else (log records on stderr, command output on stdout) printed above them. Every writer that
 * shares the terminal goes through {@link LiveArea.print}, which erases the live lines, writes
 * the text and draws them again, all synchronously — so lines come out in the order they
 * happen and never land in the middle of a bar. A bar is cut to the terminal's width at each
 * draw (a line one column too long would wrap and leave debris when it is redrawn).
 */

export interface TerminalStream {
  write(text: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export interface LiveArea {
  /** Writes `text` (whole lines) to `stream` above the live lines. */
  print(stream: TerminalStream, text: string): void;
  /**
   * Sets the live line `key` (a new key goes below the others); `render` gets the width it must
   * fit and is called again at each redraw, so rates and ETAs stay current even when nothing moves.
   */
  set(key: string, render: (columns: number) => string): void;
  /** Removes a live line at once. */
  remove(key: string): void;
  /** Removes every live line (before the closing error line, say). */
  clear(): void;
}

export interface LiveAreaOptions {
  /** Least time between two redraws caused by updates; default 100 ms. */
  minIntervalMs?: number;
  /** Redraw this often while lines are live, for moving rates and ETAs; default 1000 ms. */
  tickMs?: number;
  /** Width when the stream does not say; default 80. */
  columns?: number;
}

const ERASE_TO_END = "\x1b[J";

export function createLiveArea(stream: TerminalStream, options: LiveAreaOptions = {}): LiveArea {
  const minInterval = options.minIntervalMs ?? 100;
  const tickMs = options.tickMs ?? 1000;
  const lines = new Map<string, (columns: number) => string>();
  /** How many lines are on the screen now (the cursor sits at the end of the last one). */
  let drawn = 0;
  let lastDraw = 0;
  let pending: NodeJS.Timeout | undefined;
  let ticker: NodeJS.Timeout | undefined;

  const width = () => Math.max(20, stream.columns ?? options.columns ?? 80);

  const erase = (): string => {
    if (drawn === 0) return "";
    const up = drawn > 1 ? `\x1b[${drawn - 1}A` : "";
    drawn = 0;
    return `\r${up}${ERASE_TO_END}`;
  };

  const render = (): string => {
    // One column is kept free: writing the last column makes some terminals wrap at once.
    const columns = width() - 1;
    const text = [...lines.values()].map((line) => fit(line(columns), columns));
    drawn = text.length;
    lastDraw = Date.now();
    return text.join("\n");
  };

  const redraw = (): void => {
    if (pending) clearTimeout(pending);
    pending = undefined;
    stream.write(erase() + render());
  };

  const schedule = (): void => {
    const wait = minInterval - (Date.now() - lastDraw);
    if (wait <= 0) return redraw();
    // unref: a pending redraw never keeps the process alive.
    pending ??= setTimeout(redraw, wait).unref();
  };

  const stopTicker = (): void => {
    if (ticker) clearInterval(ticker);
    ticker = undefined;
  };

  return {
    print(target, text) {
      if (drawn === 0 && lines.size === 0) {
        target.write(text);
        return;
      }
      if (target === stream) {
        stream.write(erase() + text + render());
        return;
      }
      // Another stream on the same terminal (stdout beside stderr): erase, write, draw again.
      stream.write(erase());
      target.write(text);
      stream.write(render());
    },
    set(key, line) {
      const isNew = !lines.has(key);
      lines.set(key, line);
      ticker ??= setInterval(redraw, tickMs).unref();
      if (isNew) redraw();
      else schedule();
    },
    remove(key) {
      if (!lines.delete(key)) return;
      if (lines.size === 0) stopTicker();
      redraw();
    },
    clear() {
      lines.clear();
      stopTicker();
      if (pending) clearTimeout(pending);
      pending = undefined;
      if (drawn > 0) stream.write(erase());
    },
  };
}

/** `text` cut to `columns` characters, with an ellipsis where it was cut. */
export function fit(text: string, columns: number): string {
  const flat = text.replace(/[\r\n]+/g, " ");
  if (flat.length <= columns) return flat;
  return columns <= 1 ? flat.slice(0, columns) : `${flat.slice(0, columns - 1)}…`;
}
