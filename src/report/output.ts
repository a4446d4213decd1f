import { printable } from "../util/text.js";
import type { LiveArea } from "./terminal.js";

/**
 * What commands print for people (and `--json` for machines) goes to stdout through here;
 * logs and diagnostics go to stderr through pino. Keeping the two apart is what lets
 * `gh-gitlab-sync xref --json | jq` work while progress is still shown.
 *
 * Much of what is printed comes from servers (run titles, metadata values, GitLab names), so
 * every line is made printable here: a control sequence in a value is shown, never obeyed.
 */
export interface Output {
  line(text?: string): void;
  json(value: unknown): void;
  readonly isTTY: boolean;
}

export const RULE = "-".repeat(80);

/**
 * stdout for a command. When it is the terminal the progress bars are drawn on, each line goes
 * through the live area, so a bar is cleared before the line and drawn again below it.
 */
export function createOutput(
  stream: NodeJS.WritableStream & { isTTY?: boolean },
  live?: LiveArea,
): Output {
  const isTTY = Boolean(stream.isTTY);
  const write = (text: string) => {
    if (live && isTTY) live.print(stream, text);
    else stream.write(text);
  };
  return {
    line(text = "") {
      write(`${text.split("\n").map(printable).join("\n")}\n`);
    },
    json(value) {
      write(`${escapeC1(JSON.stringify(value, null, 2))}\n`);
    },
    isTTY,
  };
}

/**
 * JSON escapes C0 controls itself; DEL and the C1 controls (U+0080–U+009F, which some terminals
 * obey like ESC sequences) it leaves raw. `\u` escapes keep the document the same JSON.
 */
function escapeC1(json: string): string {
  return json.replace(
    /[\u007f-\u009f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
