import { describe, it } from "vitest";
import { expectOneLineError } from "./checks.js";
import { runBinary } from "./run-cli.js";

const TAG = "presto-a-velox-b-linux-amd64";

describe("directories that cannot be", () => {
  it("a downloads directory below /proc is a usage error, not a hang", async () => {
    const result = await runBinary(["prepare", TAG, "--downloads-dir", "/proc/no-such/dir"], {
      timeoutMs: 20_000,
    });
    expectOneLineError(result, /cannot create \/proc\/no-such\/dir/, 2);
  });
});
