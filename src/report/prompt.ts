import { createInterface } from "node:readline/promises";
import { SyncError } from "../errors.js";

export interface PromptIo {
  input: NodeJS.ReadableStream & { isTTY?: boolean };
  output: NodeJS.WritableStream;
}

const STDIO: PromptIo = { input: process.stdin, output: process.stdout };

/**
 * The original's prompt_yes_no: y/yes → true; n/no/empty → false; any other answer asks again;
 * end of input (Ctrl-D) → false.
 */
export async function promptYesNo(question: string, io: PromptIo = STDIO): Promise<boolean> {
  const rl = createInterface({ input: io.input, output: io.output, terminal: false });
  let closed = false;
  rl.on("close", () => (closed = true));
  try {
    for (;;) {
      if (closed) return false;
      const answer = await Promise.race([
        rl.question(question),
        new Promise<null>((resolve) => rl.once("close", () => resolve(null))),
      ]);
      if (answer === null) return false;
      const normalized = answer.trim().toLowerCase();
      if (normalized === "y" || normalized === "yes") return true;
      if (normalized === "n" || normalized === "no" || normalized === "") return false;
      io.output.write("Please respond with 'y' or 'n'.\n");
    }
  } finally {
    rl.close();
  }
}

/**
 * Asks before a push or a clean. Without a terminal on stdin nobody can answer: that is a
 * failure (exit 1), not a "no" — the original printed "Push aborted." and exited 0, so a CI job
 * passed having pushed nothing.
 */
export function confirmAtTerminal(
  action: string,
  io: PromptIo = STDIO,
): (question: string) => Promise<boolean> {
  return (question) => {
    if (!io.input.isTTY) {
      return Promise.reject(
        new SyncError("no terminal to confirm on; pass --yes", {
          hint: `${action} asks before it goes on, and stdin is not a terminal`,
        }),
      );
    }
    return promptYesNo(question, io);
  };
}
