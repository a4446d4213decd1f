import { describe, expect, it } from "vitest";
import { backoffDelayMs, headerSource, retry, serverDelayMs } from "../../src/net/retry.js";
import { mapLimit } from "../../src/net/limit.js";

const fast = { attempts: 4, baseDelayMs: 1, maxDelayMs: 4 };

describe("retry", () => {
  it("tries again until the operation succeeds", async () => {
    const seen: number[] = [];
    const value = await retry(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 3) throw new Error("flaky");
        return "ok";
      },
      { policy: fast, retryable: () => true },
    );
    expect(value).toBe("ok");
    expect(seen).toEqual([1, 2, 3]);
  });

  it("gives up at once on an error that is not transient, and after the last attempt", async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
          throw new Error("final");
        },
        { policy: fast, retryable: () => false },
      ),
    ).rejects.toThrow("final");
    expect(calls).toBe(1);
    calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
          throw new Error(`try ${calls}`);
        },
        { policy: fast, retryable: () => true },
      ),
    ).rejects.toThrow("try 4");
  });

  it("waits what the server asked, capped", async () => {
    const waits: number[] = [];
    await retry(
      async (attempt) => {
        if (attempt === 1) throw new Error("busy");
        return 1;
      },
      {
        policy: fast,
        retryable: () => 5,
        onRetry: (info) => waits.push(info.delayMs),
        maxServerDelayMs: 3,
      },
    );
    expect(waits).toEqual([3]);
  });

  it("stops waiting as soon as the signal aborts, with the signal's reason", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = retry(
      async () => {
        throw new Error("down");
      },
      {
        policy: { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 },
        signal: controller.signal,
        retryable: () => true,
      },
    );
    setTimeout(() => controller.abort(new Error("interrupted by SIGTERM")), 20);
    await expect(pending).rejects.toThrow("interrupted by SIGTERM");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("grows the back-off exponentially within its bounds", () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelayMs(1, policy, () => 0.5)).toBe(100);
    expect(backoffDelayMs(3, policy, () => 0.5)).toBe(400);
    expect(backoffDelayMs(10, policy, () => 1)).toBe(1000);
    expect(backoffDelayMs(2, policy, () => 0)).toBe(150);
  });

  it("reads retry-after and rate-limit resets", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    const h = (record: Record<string, string>) => headerSource(record);
    expect(serverDelayMs(h({ "retry-after": "3" }), now)).toBe(3000);
    expect(serverDelayMs(h({ "retry-after": "Thu, 01 Jan 2026 00:00:10 GMT" }), now)).toBe(10_000);
    expect(serverDelayMs(h({ "x-ratelimit-reset": String(now / 1000 + 7) }), now)).toBe(7000);
    expect(serverDelayMs(h({ "ratelimit-reset": "2" }), now)).toBe(2000);
    expect(serverDelayMs(new Headers({ "retry-after": "soon" }), now)).toBeUndefined();
  });
});

describe("mapLimit", () => {
  it("keeps order and the bound", async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([5, 1, 4, 2, 3], 2, async (n) => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, n));
      running -= 1;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
  });

  it("starts nothing new after a failure and throws it", async () => {
    const started: number[] = [];
    await expect(
      mapLimit([1, 2, 3, 4, 5], 1, async (n) => {
        started.push(n);
        if (n === 2) throw new Error("two failed");
        return n;
      }),
    ).rejects.toThrow("two failed");
    expect(started).toEqual([1, 2]);
  });
});
