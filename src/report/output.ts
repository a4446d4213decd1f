import type { LiveArea } from "./terminal.js";

/**
 * What commands print for people (and `--json` for machines) goes to stdout through here;
 * logs and diagnostics go to stderr through pino. Keeping the two apart is what lets
 * `gh-gitlab-sync xref --json | jq` work while progress is still shown.
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
      write(`${text}\n`);
    },
    json(value) {
      write(`${JSON.stringify(value, null, 2)}\n`);
    },
    isTTY,
  };
}
