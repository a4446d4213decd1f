import { createInterface } from "node:readline";
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
  const rl = createInterface({ input: io.input, terminal: false });
  // The iterator buffers lines from now on, so answers typed (or pasted) ahead are not lost.
  const lines = rl[Symbol.asyncIterator]();
  try {
    for (;;) {
      io.output.write(question);
      const next = await lines.next();
      if (next.done) return false;
      const answer = String(next.value).trim().toLowerCase();
      if (answer === "y" || answer === "yes") return true;
      if (answer === "n" || answer === "no" || answer === "") return false;
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
