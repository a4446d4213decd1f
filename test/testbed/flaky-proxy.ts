import { createServer, type Server, type Socket, connect } from "node:net";

/**
 * A TCP proxy in front of the registry that can drop dead mid-request and come back on the same
 * port: a registry going away and being restarted, without touching the real one. It buffers
 * nothing (a request cut on the client's side reaches the registry cut), and can slow the
 * client's bytes to a link's rate, so that a request is still under way when a test acts.
 */
export class FlakyProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private cutAfter = Infinity;
  private forwarded = 0;
  private comeBackAfterMs: number | undefined;
  private bytesPerSecond = Infinity;
  port = 0;
  /** Bytes through the proxy, each way, since the last resetCounts(): what went over the wire. */
  bytesUp = 0;
  bytesDown = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.on("data", (chunk: Buffer) => {
        this.forwarded += chunk.length;
        this.bytesUp += chunk.length;
        if (this.forwarded > this.cutAfter) {
          const comeBack = this.comeBackAfterMs;
          void this.stop().then(() => {
            if (comeBack !== undefined) setTimeout(() => void this.start(), comeBack);
          });
          return;
        }
        upstream.write(chunk);
        if (this.bytesPerSecond < Infinity) {
          // The client waits as on a slow link: its next bytes are read only after these went.
          client.pause();
          setTimeout(() => client.resume(), (chunk.length / this.bytesPerSecond) * 1000);
        }
      });
      upstream.on("data", (chunk: Buffer) => (this.bytesDown += chunk.length));
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", resolve));
    const address = server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    this.server = server;
  }

  /**
   * Dies (connections reset, port closed) once `bytes` more request bytes went through; comes
   * back on the same port after `comeBackAfterMs` if given, as a registry restarted by systemd.
   */
  cutAfterBytes(bytes: number, comeBackAfterMs?: number): void {
    this.forwarded = 0;
    this.cutAfter = bytes;
    this.comeBackAfterMs = comeBackAfterMs;
  }

  /** Forwards the clients' bytes at most this fast from now on (`Infinity`: as they come). */
  throttle(bytesPerSecond: number): void {
    this.bytesPerSecond = bytesPerSecond;
  }

  resetCounts(): void {
    this.bytesUp = 0;
    this.bytesDown = 0;
  }

  async stop(): Promise<void> {
    this.cutAfter = Infinity;
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
