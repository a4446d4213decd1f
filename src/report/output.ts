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

export function createOutput(stream: NodeJS.WritableStream & { isTTY?: boolean }): Output {
  return {
    line(text = "") {
      stream.write(`${text}\n`);
    },
    json(value) {
      stream.write(`${JSON.stringify(value, null, 2)}\n`);
    },
    isTTY: Boolean(stream.isTTY),
  };
}
