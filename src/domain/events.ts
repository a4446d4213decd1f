/**
 * What the pipeline and the engines tell the outside while they work. They only emit these;
 * `report/` alone turns them into lines, bars or log records (the library never prints).
 */

/**
 * The original's step lines (`[2/5] Logging into …`), which operators read; in the daemon they
 * become log records instead of stdout lines.
 */
export interface StepReporter {
  step(n: number, total: number, message: string): void;
  /** A detail under the current step: `        → run 1234 (…)`. */
  detail(message: string): void;
  warn(message: string): void;
  /** Plain text lines (tables, summaries). */
  text(message: string): void;
}

/**
 * A transfer's progress: a download, an extraction, an image load or push. `task` names it
 * (`download presto-images-123`, `push …/x86/presto-coordinator:tag`); `part` is one piece of
 * it that moves on its own (a layer), when the engine reports pieces.
 */
export type ProgressEvent =
  | { kind: "start"; task: string; total?: number }
  | { kind: "bytes"; task: string; bytes: number; total?: number }
  /** A piece changed state: the engine's own words ("Pushing", "Layer already exists", …). */
  | { kind: "part"; task: string; part: string; status: string; bytes?: number; total?: number }
  | { kind: "end"; task: string; ok: boolean };

export type ProgressListener = (event: ProgressEvent) => void;

/** For callers that show nothing. */
export const ignoreProgress: ProgressListener = () => undefined;
