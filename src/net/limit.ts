import pLimit from "p-limit";

/**
 * The one concurrency limiter: p-limit. `limiter(n)` for work that arrives over time (entries of
 * a tar as they stream past), `mapLimit` for a list known up front.
 */
export { default as limiter } from "p-limit";

/**
 * `items.map(fn)` with at most `limit` calls in flight; results keep the input order. After the
 * first failure no further item is started, and that failure is what the call throws.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  // rejectOnClear: items cleared from the queue settle (rejected) instead of pending forever.
  const run = pLimit({ concurrency: Math.max(1, limit), rejectOnClear: true });
  let failure: { error: unknown } | undefined;
  const jobs = items.map((item, index) =>
    run(async () => {
      // An item whose turn comes after a failure does not start.
      if (failure) throw failure.error;
      try {
        return await fn(item, index);
      } catch (error) {
        failure ??= { error };
        throw error;
      }
    }),
  );
  try {
    return await Promise.all(jobs);
  } catch (err) {
    run.clearQueue();
    // The calls already running finish (or fail) before the caller moves on.
    await Promise.allSettled(jobs);
    throw err;
  }
}
