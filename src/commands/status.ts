import { Command } from "commander";
import { parseOptions, stateDirFor, workspaceOptionsSchema } from "../config/options.js";
import { formatBytes } from "../util/bytes.js";
import { printable } from "../util/text.js";
import {
  readDaemonStatus,
  type DaemonStatus,
  type LastCycle,
  type LockStatus,
} from "../workspace/status.js";
import type { CommandContext } from "./context.js";
import { addJsonOption, addWorkspaceOptions, withExamples } from "./options.js";

export function registerStatus(
  program: Command,
  run: (action: (ctx: CommandContext) => Promise<void>) => Promise<void>,
): void {
  const cmd = program
    .command("status")
    .description(
      "What the daemon is doing: who holds the lock, its last cycle, and each failing image tag with its next retry",
    );
  addWorkspaceOptions(cmd);
  addJsonOption(cmd);
  withExamples(cmd, [
    "gh-gitlab-sync status --downloads-dir /var/lib/gh-gitlab-sync/downloads   # the unit's",
    "gh-gitlab-sync status --json | jq '.failures[].image_tag'",
  ]);
  cmd.action((raw: Record<string, unknown>) => run((ctx) => status(ctx, raw)));
}

/** A report: exit 0 whatever it finds; only state it cannot read is an error (exit 1). */
export async function status(ctx: CommandContext, raw: Record<string, unknown>): Promise<void> {
  const workspace = parseOptions(workspaceOptionsSchema, raw);
  const found = await readDaemonStatus(workspace.downloadsDir, stateDirFor(workspace));
  if (raw.json === true) {
    ctx.out.json(jsonStatus(found));
    return;
  }
  for (const line of humanStatus(found, new Date())) ctx.out.line(line);
}

function jsonStatus(s: DaemonStatus) {
  return {
    downloads_dir: s.downloadsDir,
    state_dir: s.stateDir,
    lock: s.lock
      ? {
          pid: s.lock.pid,
          host: s.lock.host,
          command: s.lock.command,
          since: s.lock.since,
          alive: s.lock.alive,
        }
      : null,
    last_cycle: s.lastCycle
      ? {
          cycle: s.lastCycle.cycle,
          result: s.lastCycle.result,
          started_at: s.lastCycle.started_at,
          finished_at: s.lastCycle.finished_at,
          ok: s.lastCycle.ok,
          runs: s.lastCycle.runs,
          missing: s.lastCycle.missing,
          pushed: s.lastCycle.pushed,
          failed: s.lastCycle.failed,
          backing_off: s.lastCycle.backing_off,
          bytes_downloaded: s.lastCycle.bytes_downloaded,
          bytes_uploaded: s.lastCycle.bytes_uploaded,
          layers_from_registry: s.lastCycle.layers_from_registry ?? 0,
          error: s.lastCycle.error,
          last_publish: s.lastCycle.last_publish ?? null,
          github_rate_limit_remaining: s.lastCycle.github_rate_limit_remaining ?? null,
        }
      : null,
    failures: s.failures.map((f) => ({
      image_tag: f.imageTag,
      attempts: f.attempts,
      last_error: f.lastError,
      next_retry_at: f.nextRetryAt,
    })),
  };
}

/** `in 14 min`, `3 h ago`: how far a time is from now, in the unit that keeps it short. */
export function fromNow(iso: string, now: Date): string {
  const ms = Date.parse(iso) - now.getTime();
  if (Number.isNaN(ms)) return "at an unreadable time";
  const abs = Math.abs(ms);
  const amount =
    abs < 60_000
      ? `${Math.round(abs / 1000)} s`
      : abs < 3_600_000
        ? `${Math.round(abs / 60_000)} min`
        : abs < 172_800_000
          ? `${(abs / 3_600_000).toFixed(1)} h`
          : `${Math.round(abs / 86_400_000)} days`;
  return ms >= 0 ? `in ${amount}` : `${amount} ago`;
}

/** A stored time as people read it: to the second, UTC (`2025-11-07T10:00:12Z`). */
function shortTime(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? printable(iso) : new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A publish lag: seconds up to two minutes, then minutes, then hours. */
function lagText(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** Lines that fit 80 columns: a person reads this on a terminal. */
function lockLines(lock: LockStatus | null, downloadsDir: string, now: Date): string[] {
  if (!lock) return [`Lock        : free (nothing is working on ${downloadsDir})`];
  const holder = `'${printable(lock.command)}', pid ${lock.pid} on ${printable(lock.host)}`;
  const since = `              since ${shortTime(lock.since)} (${fromNow(lock.since, now)})`;
  if (lock.alive === false) {
    return [
      `Lock        : left by ${holder}, no longer running`,
      since,
      "              the next command or daemon on this directory takes it over",
    ];
  }
  return [`Lock        : held by ${holder}${lock.alive === null ? " (another host)" : ""}`, since];
}

function cycleLines(cycle: LastCycle | null, now: Date): string[] {
  if (!cycle) return ["Last cycle  : none recorded (no daemon cycle has finished here)"];
  const lines = [
    `Last cycle  : #${cycle.cycle} ${cycle.result}, finished ${shortTime(cycle.finished_at)} (${fromNow(cycle.finished_at, now)})`,
    `              ${cycle.runs} runs, ${cycle.missing} missing, ${cycle.pushed} tags pushed, ${cycle.failed} failed, ${cycle.backing_off} backing off`,
    `              ${formatBytes(cycle.bytes_downloaded)} downloaded in ${cycle.seconds} s`,
  ];
  const learned = cycle.layers_from_registry ?? 0;
  if (learned > 0) {
    lines.push(`              ${learned} layer(s) not sent: the registry's own images held them`);
  }
  if (cycle.error) lines.push(`              error: ${printable(cycle.error)}`);
  const publish = cycle.last_publish;
  if (publish) {
    lines.push(
      `Last publish: ${printable(publish.image_tag)}`,
      `              ${lagText(publish.lag_seconds)} after run ${publish.run_id} finished, at ${shortTime(publish.published_at)}`,
    );
  }
  const remaining = cycle.github_rate_limit_remaining;
  if (remaining !== null && remaining !== undefined) {
    lines.push(`GitHub      : ${remaining} API requests left in the rate limit`);
  }
  return lines;
}

export function humanStatus(s: DaemonStatus, now: Date): string[] {
  const lines = [`State       : ${s.stateDir}${s.stateFound ? "" : " (not there yet)"}`];
  lines.push(...lockLines(s.lock, s.downloadsDir, now));
  lines.push(...cycleLines(s.lastCycle, now));
  if (s.failures.length === 0) {
    lines.push("Failures    : none");
    return lines;
  }
  lines.push(`Failures    : ${s.failures.length} image tag(s)`);
  const waiting = (f: (typeof s.failures)[number]) => Date.parse(f.nextRetryAt) > now.getTime();
  for (const f of s.failures) {
    lines.push(
      `  ${printable(f.imageTag)}`,
      `    ${f.attempts} attempt(s), the last ${shortTime(f.lastAttempt)}`,
      waiting(f)
        ? `    next retry ${shortTime(f.nextRetryAt)} (${fromNow(f.nextRetryAt, now)})`
        : "    retried in the next cycle",
      `    last error: ${printable(f.lastError)}`,
    );
  }
  if (s.failures.some(waiting)) {
    lines.push("", "Fixed the cause? `daemon --retry-now` retries them at once.");
  }
  return lines;
}
