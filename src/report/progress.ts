import cliProgress from "cli-progress";
import type { Logger } from "./logger.js";

export interface ByteProgress {
  update(bytes: number, total: number | undefined): void;
  stop(): void;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/**
 * Progress of a long transfer: a bar with bytes, rate and ETA on a terminal; otherwise a log line
 * every `everyMs`, so journald and CI logs show the transfer moving without a line per chunk.
 */
export function byteProgress(
  label: string,
  { logger, tty, everyMs = 10_000 }: { logger: Logger; tty: boolean; everyMs?: number },
): ByteProgress {
  const started = Date.now();
  if (tty) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {done}/{all} | {rate}/s | ETA {eta_formatted}`,
        hideCursor: true,
        stream: process.stderr,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    let begun = false;
    return {
      update(bytes, total) {
        const payload = {
          done: mib(bytes),
          all: total ? mib(total) : "?",
          rate: mib(bytes / Math.max(0.001, (Date.now() - started) / 1000)),
        };
        if (!begun) {
          bar.start(total ?? 0, bytes, payload);
          begun = true;
        } else bar.update(bytes, payload);
        if (total) bar.setTotal(total);
      },
      stop() {
        if (begun) bar.stop();
      },
    };
  }
  let last = 0;
  let lastBytes = 0;
  return {
    update(bytes, total) {
      const now = Date.now();
      lastBytes = bytes;
      if (now - last < everyMs) return;
      last = now;
      const seconds = Math.max(0.001, (now - started) / 1000);
      const rate = bytes / seconds;
      const eta = total && rate > 0 ? Math.round((total - bytes) / rate) : undefined;
      logger.info(
        {
          bytes,
          total,
          percent: total ? Math.round((bytes / total) * 1000) / 10 : undefined,
          rateMiBs: Math.round((rate / 1024 ** 2) * 10) / 10,
          etaSeconds: eta,
        },
        `${label}: ${mib(bytes)}${total ? ` of ${mib(total)}` : ""}`,
      );
    },
    stop() {
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      logger.info({ bytes: lastBytes, seconds: Math.round(seconds * 10) / 10 }, `${label}: done`);
    },
  };
}
