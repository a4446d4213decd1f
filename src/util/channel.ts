/**
 * A bounded hand-over from a producer that pushes (a tar entry as it streams past) to a consumer
 * that pulls (`for await`, as the compressor and uploader read their input). `push` resolves once
 * there is room again, which is the producer's back-pressure. A consumer that stops reading
 * (`cancel`, or leaving its loop early) turns every later `push` into a no-op: the producer is
 * never left waiting on a reader that has gone.
 */
export class Channel<T> implements AsyncIterable<T> {
  private readonly queue: T[] = [];
  private ended = false;
  private failure: { error: unknown } | undefined;
  private cancelled = false;
  /** The consumer waiting for the next item. */
  private wakeReader: (() => void) | undefined;
  /** The producer waiting for room. */
  private wakeWriter: (() => void) | undefined;

  constructor(private readonly capacity = 4) {}

  /** Whether the consumer gave up: what is pushed now is dropped. */
  get dropped(): boolean {
    return this.cancelled;
  }

  async push(item: T): Promise<void> {
    if (this.cancelled) return;
    if (this.ended) throw new Error("push after the channel ended");
    this.queue.push(item);
    this.wakeReader?.();
    while (this.queue.length >= this.capacity && !this.cancelled) {
      await new Promise<void>((resolve) => (this.wakeWriter = resolve));
      this.wakeWriter = undefined;
    }
  }

  /** No more items: the consumer's loop ends once it has taken what is queued. */
  end(): void {
    this.ended = true;
    this.wakeReader?.();
  }

  /** The producer failed: the consumer's loop throws `error` after what is queued. */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.ended = true;
    this.wakeReader?.();
  }

  /** The consumer stops reading; the queue is dropped and the producer released. */
  cancel(): void {
    this.cancelled = true;
    this.queue.length = 0;
    this.wakeWriter?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    try {
      for (;;) {
        const item = this.queue.shift();
        if (item !== undefined) {
          this.wakeWriter?.();
          yield item;
          continue;
        }
        if (this.failure) throw this.failure.error;
        if (this.ended || this.cancelled) return;
        await new Promise<void>((resolve) => (this.wakeReader = resolve));
        this.wakeReader = undefined;
      }
    } finally {
      // Left early (a failure downstream): the producer must not wait for this reader.
      if (!this.ended) this.cancel();
    }
  }
}
