import { expect } from "vitest";
import { SyncError } from "../../src/errors.js";
import { createLogger, type Logger } from "../../src/report/logger.js";

/** A JSON-lines logger whose output the test reads back (to prove no secret is ever logged). */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({
    level: "debug",
    destination: { write: (line: string) => void lines.push(line) },
  });
  return { logger, lines };
}

/** The SyncError a promise rejects with; fails the test if it resolves or throws anything else. */
export async function failure(promise: Promise<unknown>): Promise<SyncError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SyncError);
  return error as SyncError;
}
