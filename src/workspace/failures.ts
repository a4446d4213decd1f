import path from "node:path";
import { z } from "zod";
import { readJsonFileOrWarn, writeJsonAtomic, type Warner } from "../util/files.js";

const entrySchema = z.object({
  attempts: z.number().int().nonnegative(),
  last_error: z.string(),
  last_attempt: z.string(),
  next_retry: z.string(),
});
export type FailureEntry = z.infer<typeof entrySchema>;
/** failures.json: image tag → its entry. */
export const failuresFileSchema = z.record(z.string(), entrySchema);
export const FAILURES_FILE = "failures.json";

export interface BackoffPolicy {
  /** First wait after a failure, in seconds. */
  baseSeconds: number;
  /** The wait never grows past this. */
  maxSeconds: number;
}

export function backoffSeconds(attempts: number, policy: BackoffPolicy): number {
  return Math.min(policy.maxSeconds, policy.baseSeconds * 2 ** Math.max(0, attempts - 1));
}

/**
 * Per-image failure state: a broken artifact is retried with growing back-off instead of costing a
 * full download every cycle; a later success clears it. Kept as one JSON file in the state dir.
 */
export class FailureState {
  private readonly file: string;

  constructor(
    stateDir: string,
    private readonly policy: BackoffPolicy,
    /** Told when failures.json is damaged; the records then start afresh. */
    private readonly warner?: Warner,
  ) {
    this.file = path.join(stateDir, FAILURES_FILE);
  }

  /**
   * Every record, each wait bounded by the policy's maximum from `now`: a `next_retry` further
   * ahead (a clock that jumped back, a file from another host) would defer its image for years.
   * A bounded wait is written back, so later reads do not move the bound on and the wait ends.
   */
  async load(now = new Date()): Promise<Record<string, FailureEntry>> {
    const all =
      (await readJsonFileOrWarn(
        this.file,
        failuresFileSchema,
        this.warner,
        "failure records",
        {},
      )) ?? {};
    const latest = now.getTime() + this.policy.maxSeconds * 1000;
    let bounded = false;
    for (const [imageTag, entry] of Object.entries(all)) {
      if (!(Date.parse(entry.next_retry) > latest)) continue;
      const next = new Date(latest).toISOString();
      this.warner?.warn(
        { imageTag, nextRetry: entry.next_retry },
        `${imageTag}: its failure record said to wait until ${entry.next_retry}, longer than the longest back-off (${this.policy.maxSeconds} s); waiting until ${next} instead`,
      );
      all[imageTag] = { ...entry, next_retry: next };
      bounded = true;
    }
    if (bounded) await writeJsonAtomic(this.file, all);
    return all;
  }

  /** The entry when the image is still waiting out its back-off, else undefined. */
  async waiting(imageTag: string, now = new Date()): Promise<FailureEntry | undefined> {
    const entry = (await this.load(now))[imageTag];
    return entry && new Date(entry.next_retry) > now ? entry : undefined;
  }

  async recordFailure(imageTag: string, error: string, now = new Date()): Promise<FailureEntry> {
    const all = await this.load(now);
    const attempts = (all[imageTag]?.attempts ?? 0) + 1;
    const entry: FailureEntry = {
      attempts,
      last_error: error,
      last_attempt: now.toISOString(),
      next_retry: new Date(
        now.getTime() + backoffSeconds(attempts, this.policy) * 1000,
      ).toISOString(),
    };
    all[imageTag] = entry;
    await writeJsonAtomic(this.file, all);
    return entry;
  }

  async clear(imageTag: string): Promise<void> {
    const all = await this.load();
    if (!(imageTag in all)) return;
    delete all[imageTag];
    await writeJsonAtomic(this.file, all);
  }
}
