/** Text that reaches a terminal or a log line: one line, bounded, and free of control sequences. */

/** Folds whitespace (newlines included) to single spaces and cuts at `max` characters. */
export function oneLine(text: string, max = 300): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

// C0 controls but tab, DEL and C1 controls: what a terminal may act on (ESC starts OSC and CSI).
// Built from a string so the control characters stay visible in review.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = new RegExp("[\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]", "g");

/**
 * Server-supplied text made safe to print: every control character becomes a visible `\xNN`
 * escape, so a hostile value (an OSC sequence that retitles the terminal, a NUL, a carriage
 * return that overwrites the line) is shown rather than obeyed.
 */
export function printable(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** Python's `shlex.quote`: a word as a POSIX shell reads it back unchanged (for command previews). */
export function shellQuote(word: string): string {
  if (word === "") return "''";
  return /^[A-Za-z0-9@%+=:,./_-]+$/.test(word) ? word : `'${word.replace(/'/g, `'"'"'`)}'`;
}

/** JSON from bytes a server sent, or `undefined` when they are not JSON (the caller's schema decides the rest). */
export function parseJsonBytes(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    return undefined;
  }
}
