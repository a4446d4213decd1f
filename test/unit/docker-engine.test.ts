import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { classifyRegistryFailure, registryFailure } from "../../src/docker/failures.js";
import { DockerEngine } from "../../src/docker/engine.js";
import { resolveDockerHost } from "../../src/docker/host.js";
import {
  EngineStreamError,
  followMessages,
  messageError,
  parseMessage,
  type EngineMessage,
} from "../../src/docker/messages.js";
import { isFinalStatus, toProgressEvent } from "../../src/docker/progress.js";
import { silentLogger } from "../../src/report/logger.js";

const lines = (...records: unknown[]) =>
  records.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n");

/** A stream that delivers its text in awkward pieces, as a socket does (split mid-line, mid-UTF-8). */
function chunked(text: string, size = 7): Readable {
  const bytes = Buffer.from(text);
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) pieces.push(bytes.subarray(i, i + size));
  return Readable.from(pieces);
}

async function collect(stream: Readable): Promise<EngineMessage[]> {
  const seen: EngineMessage[] = [];
  await followMessages(stream, (m) => seen.push(m));
  return seen;
}

describe("engine message stream", () => {
  it("reads every message across chunk boundaries, multi-byte text included", async () => {
    const seen = await collect(
      chunked(
        lines(
          { status: "Preparing", id: "abc", progressDetail: {} },
          { status: "Pushing", id: "abc", progressDetail: { current: 10, total: 20 } },
          { stream: "Loaded image: café:1\n" },
          { aux: { Tag: "1", Digest: `sha256:${"a".repeat(64)}`, Size: 734 } },
        ),
      ),
    );
    expect(seen.map((m) => m.status ?? m.stream?.trim() ?? "aux")).toEqual([
      "Preparing",
      "Pushing",
      "Loaded image: café:1",
      "aux",
    ]);
    expect(seen[1]?.progressDetail).toEqual({ current: 10, total: 20 });
  });

  it("fails on an error inside a 200 stream and stops reading there", async () => {
    const seen: EngineMessage[] = [];
    const stream = chunked(
      lines(
        { status: "The push refers to repository [r/x]" },
        {
          errorDetail: { message: "unauthorized: authentication required" },
          error: "unauthorized",
        },
        { status: "never seen" },
      ),
    );
    const error = await followMessages(stream, (m) => seen.push(m)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EngineStreamError);
    expect((error as EngineStreamError).message).toBe("unauthorized: authentication required");
    expect((error as EngineStreamError).connectionLost).toBe(false);
    expect(seen).toHaveLength(1);
  });

  it("reports a connection that breaks off mid-stream as lost, not as an engine answer", async () => {
    const stream = new Readable({
      read() {
        this.push(`${JSON.stringify({ status: "Pushing" })}\n`);
        this.destroy(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }));
      },
    });
    const error = (await collect(stream).catch((e: unknown) => e)) as EngineStreamError;
    expect(error).toBeInstanceOf(EngineStreamError);
    expect(error.connectionLost).toBe(true);
    expect(error.message).toMatch(/connection to the engine lost: socket hang up/);
  });

  it("keeps non-JSON lines as text and ignores fields of the wrong type", () => {
    expect(parseMessage("plain text")).toEqual({ stream: "plain text" });
    expect(parseMessage('{"status": 5, "id": "x"}')).toEqual({ id: "x" });
    expect(messageError({ errorDetail: {} })).toBe("unknown error");
    expect(messageError({ error: "" })).toBe("unknown error");
    expect(messageError({ status: "ok" })).toBeUndefined();
  });

  it("turns messages into progress events and knows the final layer states", () => {
    expect(
      toProgressEvent({ status: "Pushing", id: "l1", progressDetail: { current: 5, total: 9 } }),
    ).toEqual({
      status: "Pushing",
      id: "l1",
      current: 5,
      total: 9,
    });
    expect(toProgressEvent({ aux: {} })).toBeUndefined();
    for (const s of ["Pushed", "Layer already exists", "Mounted from a/b", "Pull complete"]) {
      expect(isFinalStatus(s)).toBe(true);
    }
    expect(isFinalStatus("Pushing")).toBe(false);
  });
});

describe("registry failures reported by the engine", () => {
  it.each([
    ["unauthorized: incorrect username or password", "credentials"],
    ["denied: requested access to the resource is denied", "denied"],
    [
      'Get "https://r:5005/v2/": dial tcp 10.0.0.1:5005: connect: connection refused',
      "unreachable",
    ],
    ["http: server gave HTTP response to HTTPS client", "unreachable"],
    ["An image does not exist locally with the tag: r/x", "missing-local"],
    ["manifest unknown: manifest unknown", "not-found"],
    ["something else entirely", "other"],
  ])("%s → %s", (detail, kind) => {
    expect(classifyRegistryFailure(detail)).toBe(kind);
  });

  it("names the registry and the user, never a password", () => {
    const error = registryFailure(
      { action: "push", reference: "r:5005/g/x:1", registry: "r:5005", username: "ci-bot" },
      "unauthorized: authentication required",
    );
    expect(error.oneLine()).toMatch(
      /^Cannot push r:5005\/g\/x:1: registry r:5005 refused the credentials of user ci-bot .* — check --registry-username and --registry-password/,
    );
  });
});

describe("Docker host and references", () => {
  it("resolves DOCKER_HOST forms", () => {
    expect(resolveDockerHost(undefined, {}).address).toBe("unix:///var/run/docker.sock");
    expect(
      resolveDockerHost(undefined, { DOCKER_HOST: "unix:///tmp/d.sock" }).options,
    ).toMatchObject({
      socketPath: "/tmp/d.sock",
    });
    expect(resolveDockerHost("/run/docker.sock", {}).address).toBe("unix:///run/docker.sock");
    expect(resolveDockerHost("tcp://10.0.0.2:2375", {}).options).toMatchObject({
      host: "10.0.0.2",
      port: "2375",
    });
    expect(() => resolveDockerHost("unix://", {})).toThrow(/names no socket/);
  });

  it("refuses to push a reference without a tag, a registry port is not a tag", async () => {
    // Refused before the engine is asked: no engine listens at this address.
    const engine = new DockerEngine({
      dockerHost: "unix:///nonexistent/docker.sock",
      logger: silentLogger(),
    });
    const auth = { username: "u", password: "p", serveraddress: "127.0.0.1:5000" };
    await expect(engine.pushImage("127.0.0.1:5000/g/x", auth)).rejects.toThrow(
      "Cannot push 127.0.0.1:5000/g/x: the reference has no tag",
    );
    // With a tag it gets as far as the engine, which is not there.
    await expect(engine.pushImage("127.0.0.1:5000/g/x:1.0", auth)).rejects.toThrow(
      "Docker engine not reachable at unix:///nonexistent/docker.sock (ENOENT)",
    );
  });
});
