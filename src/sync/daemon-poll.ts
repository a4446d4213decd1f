/**
 * The daemon between two cycles: a cheap look at GitHub every --poll-interval, a full cycle
 * (GitHub and GitLab listed in full) every --interval.
 *
 * The look is the first page of the very listing a cycle reads, asked conditionally by the
 * client (github/conditional.ts): while nothing changed GitHub answers 304, which costs no rate
 * limit, and GitLab is not asked at all. A run that finished successfully since the last cycle
 * (new, or re-run: its `updated_at` moved) wakes the daemon for a cycle at once. Runs still in
 * progress wake nothing, as the cycle would ignore them anyway.
 */
import { describeError } from "../errors.js";
import type { GithubApiTally } from "../github/client.js";
import { listWorkflowRuns, type WorkflowRun } from "../github/runs.js";
import { sleep } from "../net/retry.js";
import type { GithubServices, SyncContext } from "./context.js";

/** Completed runs the daemon has had a cycle for: id → `updated_at` then. */
export type HandledRuns = Map<number, string>;

/** Requests left below which polling waits for the rate limit's reset: the cycles need them. */
export const RATE_LIMIT_RESERVE = 100;

export function handledOf(runs: readonly WorkflowRun[]): HandledRuns {
  return new Map(runs.filter((r) => r.status === "completed").map((r) => [r.id, r.updated_at]));
}

/** Successful runs finished since `handled` was taken: new ones, and re-runs. */
export function newlyFinished(runs: readonly WorkflowRun[], handled: HandledRuns): WorkflowRun[] {
  return runs.filter(
    (r) =>
      r.status === "completed" && r.conclusion === "success" && handled.get(r.id) !== r.updated_at,
  );
}

/**
 * The wait before the next look: --poll-interval, or GitHub's `x-poll-interval` when it asks
 * for longer, or until the rate limit resets when fewer than {@link RATE_LIMIT_RESERVE} are left.
 */
export function pollDelayMs(pollSeconds: number, tally: GithubApiTally, now = Date.now()): number {
  let ms = Math.max(pollSeconds, tally.pollIntervalSeconds ?? 0) * 1000;
  const limit = tally.rateLimit;
  if (limit && limit.remaining < RATE_LIMIT_RESERVE && limit.resetAt > now) {
    ms = Math.max(ms, limit.resetAt - now);
  }
  return ms;
}

/** The first page of the cycle's own listing (same address, so the same ETag). */
function firstPage(github: GithubServices): Promise<WorkflowRun[]> {
  const { options, client } = github;
  return listWorkflowRuns(client, {
    repo: options.repo,
    workflow: options.workflow,
    branch: options.branch,
    limit: Math.min(options.limit, 100),
  });
}

export interface Wake {
  /** "change": a run finished; "reconcile": --interval has passed since the last cycle. */
  reason: "change" | "reconcile";
  /** What the daemon has now handled or will handle in the cycle it wakes for. */
  handled: HandledRuns | undefined;
  finished: WorkflowRun[];
}

/**
 * Waits for the next cycle: until `intervalSeconds` after `since`, or until a look finds a
 * finished run. `handled` undefined (the last cycle could not list the runs): the first look only
 * takes note, so a GitHub that answers while GitLab fails does not bring a cycle every poll.
 * A look that fails is logged once per streak and tried again at the next poll.
 */
export async function untilNextCycle(
  ctx: SyncContext,
  github: GithubServices,
  timing: { intervalSeconds: number; pollIntervalSeconds: number },
  handled: HandledRuns | undefined,
  since = Date.now(),
): Promise<Wake> {
  const reconcileAt = since + timing.intervalSeconds * 1000;
  let known = handled;
  let failing = false;
  for (;;) {
    const left = reconcileAt - Date.now();
    const delay =
      timing.pollIntervalSeconds > 0
        ? pollDelayMs(timing.pollIntervalSeconds, github.client.tally)
        : Infinity;
    if (delay >= left) {
      if (left > 0) await sleep(left, ctx.signal);
      return { reason: "reconcile", handled: known, finished: [] };
    }
    await sleep(delay, ctx.signal);
    let runs: WorkflowRun[];
    try {
      runs = await firstPage(github);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      ctx.logger[failing ? "debug" : "warn"](
        { err: describeError(err) },
        `looking for finished runs failed: ${describeError(err)}; trying again every ${timing.pollIntervalSeconds} s`,
      );
      failing = true;
      continue;
    }
    failing = false;
    if (!known) {
      known = handledOf(runs);
      continue;
    }
    const finished = newlyFinished(runs, known);
    if (finished.length > 0) {
      for (const run of finished) known.set(run.id, run.updated_at);
      return { reason: "change", handled: known, finished };
    }
  }
}
