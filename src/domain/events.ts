/**
 * What the pipeline and the engines tell the outside while they work. They only emit these;
 * `report/` alone turns them into lines, bars or log records (the library never prints).
 */

/**
 * The original's step lines (`[2/5] Logging into …`), which operators read; in the daemon they
 * become log records instead of stdout lines.
 */
export interface StepReporter {
  /**
   * The short view: a person at a terminal, at the default level. Lines then name an image by
   * its repository and a path relative to the downloads directory, and the original's plan
   * table is one line per image. Off (the full lines, as the original prints them) with
   * --verbose, in logs, and when stdout is not a terminal, where scripts read them.
   */
  readonly brief?: boolean;
  step(n: number, total: number, message: string): void;
  /** A detail under the current step: `        → run 1234 (…)`. */
  detail(message: string): void;
  warn(message: string): void;
  /** Plain text lines (tables, summaries). */
  text(message: string): void;
  /**
   * A line saying where one image stands (`Pushing …`, `pushed …: what moved`): printed as it
   * is, like text, and kept in the daemon's log at the default level, where tables are not.
   */
  status(message: string): void;
  /** The separator between two entries of a plan (prepare's and push's). */
  rule(): void;
}

/**
 * A transfer's progress: a download, an extraction, an image load or push. `task` names it
 * (`download presto-images-123`, `push …/x86/presto-coordinator:tag`); `part` is one piece of
 * it that moves on its own (a layer), when the engine reports pieces. A task opens with `start`
 * and closes with `end`; in between it reports either bytes or states.
 */
export type ProgressEvent =
  | { kind: "start"; task: string; total?: number }
  /**
   * Where the task stands: `bytes` of `total`. `moved` is what of it this run moved, when some
   * was there before it (a resumed download's part file): rates are made of it alone.
   */
  | { kind: "bytes"; task: string; bytes: number; total?: number; moved?: number }
  /**
   * The task does work no byte count measures (verifying, compressing, committing): the drawing
   * names it and how long it has taken, instead of a bar standing at 100 %. Bytes moving again
   * end it.
   */
  | { kind: "phase"; task: string; phase: string }
  /**
   * A piece changed state: the engine's own words ("Pushing", "Layer already exists", …);
   * `done` once it has nothing left to do, so a drawing can fill its bar.
   */
  | {
      kind: "part";
      task: string;
      part: string;
      status: string;
      bytes?: number;
      total?: number;
      done?: boolean;
    }
  /** The task as a whole changed state ("Loaded image: …", "The push refers to …"). */
  | { kind: "status"; task: string; status: string }
  | { kind: "end"; task: string; ok: boolean };

export type ProgressListener = (event: ProgressEvent) => void;

/** Runs `operation` as the progress task `task`: opened before it starts, closed however it ends. */
export async function progressTask<T>(
  progress: ProgressListener,
  task: string,
  operation: () => Promise<T>,
): Promise<T> {
  progress({ kind: "start", task });
  let ok = false;
  try {
    const result = await operation();
    ok = true;
    return result;
  } finally {
    progress({ kind: "end", task, ok });
  }
}
