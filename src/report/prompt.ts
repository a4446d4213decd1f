import { createInterface } from "node:readline";
import { SyncError, interrupted } from "../errors.js";

export interface PromptIo {
  input: NodeJS.ReadableStream & { isTTY?: boolean };
  output: NodeJS.WritableStream;
}

const STDIO: PromptIo = { input: process.stdin, output: process.stdout };

/** What a prompt stopped by a signal says: it was asked before anything was done. */
const NOTHING_CHANGED = "nothing was changed";

/**
 * The original's prompt_yes_no: y/yes → true; n/no/empty → false; any other answer asks again;
 * end of input (Ctrl-D) → false. A signal (Ctrl-C, SIGTERM) ends it at once with the
 * interruption: nobody answers a prompt whose process was asked to stop.
 */
export async function promptYesNo(
  question: string,
  io: PromptIo = STDIO,
  signal?: AbortSignal,
): Promise<boolean> {
  const rl = createInterface({ input: io.input, terminal: false });
  // The iterator buffers lines from now on, so answers typed (or pasted) ahead are not lost.
  const lines = rl[Symbol.asyncIterator]();
  const stopped = new Promise<never>((_resolve, reject) => {
    if (!signal) return;
    const stop = () => {
      // The closing line starts on a line of its own, not after the question and its `^C`.
      io.output.write("\n");
      reject(interrupted(signal, NOTHING_CHANGED));
    };
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
  stopped.catch(() => undefined);
  try {
    for (;;) {
      io.output.write(question);
      const next = await Promise.race([lines.next(), stopped]);
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
  signal: AbortSignal,
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
    return promptYesNo(question, io, signal);
  };
}
