import { createInterface } from "node:readline/promises";

/**
 * The original's prompt_yes_no: y/yes → true; n/no/empty → false; end of input (no terminal,
 * nobody to answer) → false, so an unattended run never destroys or pushes by default.
 */
export async function promptYesNo(
  question: string,
  io: { input: NodeJS.ReadableStream; output: NodeJS.WritableStream } = {
    input: process.stdin,
    output: process.stdout,
  },
): Promise<boolean> {
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
