import { closeSync, openSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { MiB } from "../util/bytes.js";

/** Bytes read per step by the hashing thread (more only adds to the RSS B2 bounds). */
const READ_CHUNK = MiB;

/**
 * The thread's code (a string, so it needs no file of its own beside the bundle): it reads the
 * file behind the writer, from the page cache, and hashes each range as it is told it is on disk.
 */
const SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { readSync } = require("node:fs");
const hash = createHash("sha256");
const buffer = Buffer.allocUnsafe(workerData.chunk);
let fd;
let done = 0;
let target = 0;
parentPort.on("message", (message) => {
  fd ??= message.fd;
  target = Math.max(target, message.upTo);
  while (done < target) {
    const n = readSync(fd, buffer, 0, Math.min(buffer.length, target - done), done);
    if (n === 0) throw new Error(workerData.path + " ends at byte " + done + ", short of " + target);
    hash.update(buffer.subarray(0, n));
    done += n;
  }
  if (message.finish) parentPort.postMessage(hash.digest("hex"));
});
`;

/**
 * The SHA-256 of a file that is being appended to, computed on another thread as its bytes land:
 * a download's main thread then only receives and writes (hashing there cost about a third of
 * the download's time, B2), and a resumed part file is re-hashed while the rest arrives. The file
 * descriptor is this side's: closed once the thread has stopped, so a removed part file's space
 * is given back at once.
 */
export class FileHasher {
  private readonly worker: Worker;
  private readonly result: Promise<string>;
  private told = 0;
  /** Opened at the first byte told of (a fresh download's file does not exist before). */
  private fd: number | undefined;

  constructor(private readonly file: string) {
    this.worker = new Worker(SOURCE, { eval: true, workerData: { path: file, chunk: READ_CHUNK } });
    // Never what keeps the process alive, except while a digest is awaited.
    this.worker.unref();
    this.result = new Promise<string>((resolve, reject) => {
      this.worker.once("message", (hex: string) => resolve(hex));
      this.worker.once("error", reject);
      this.worker.once("exit", (code) => reject(new Error(`the hashing thread ended (${code})`)));
    });
    this.result.catch(() => undefined);
  }

  /** The file's first `upTo` bytes are written (and stay as they are): hash them. */
  advance(upTo: number): void {
    if (upTo <= this.told) return;
    this.told = upTo;
    this.worker.postMessage({ upTo, fd: this.descriptor() });
  }

  private descriptor(): number {
    this.fd ??= openSync(this.file, "r");
    return this.fd;
  }

  /** The hex SHA-256 of the file's first `size` bytes, once hashed; the thread ends. */
  async digest(size: number): Promise<string> {
    this.worker.ref();
    try {
      this.worker.postMessage({
        upTo: size,
        finish: true,
        fd: size > 0 ? this.descriptor() : this.fd,
      });
      return await this.result;
    } finally {
      await this.close();
    }
  }

  /** Stops the thread (its digest is not wanted any more) and closes the file. */
  async close(): Promise<void> {
    await this.worker.terminate();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
