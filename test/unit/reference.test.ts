import { describe, expect, it } from "vitest";
import {
  canonicalName,
  formatReference,
  isRegistryHost,
  parseReference,
  registryScheme,
} from "../../src/domain/reference.js";

const DIGEST = `sha256:${"a".repeat(64)}`;

describe("image references", () => {
  it("splits registry, repository, tag and digest", () => {
    expect(parseReference("127.0.0.1:5000/group/app:1.0")).toEqual({
      registry: "127.0.0.1:5000",
      repository: "group/app",
      tag: "1.0",
    });
    expect(parseReference(`ghcr.io/a/b@${DIGEST}`)).toEqual({
      registry: "ghcr.io",
      repository: "a/b",
      digest: DIGEST,
    });
    expect(parseReference("localhost/app")).toEqual({ registry: "localhost", repository: "app" });
    expect(parseReference("library/ubuntu:22.04")).toEqual({
      repository: "library/ubuntu",
      tag: "22.04",
    });
  });

  it("reads a path below a project without looking for a registry", () => {
    expect(parseReference("x86/presto-coordinator:presto-a-velox-b-", { relative: true })).toEqual({
      repository: "x86/presto-coordinator",
      tag: "presto-a-velox-b-",
    });
  });

  it("refuses what is no reference", () => {
    for (const bad of [
      "",
      "UPPER/case:tag",
      "a//b:t",
      "x86/app:../../etc",
      "x86/app:",
      "app@sha256:short",
      "host:99999/app",
      "-lead/app",
    ]) {
      expect(parseReference(bad), bad).toBeUndefined();
    }
  });

  it("prints what it parsed", () => {
    for (const text of ["127.0.0.1:5000/group/app:1.0", `a/b@${DIGEST}`, "x86/app:t"]) {
      const ref = parseReference(text);
      expect(ref && formatReference(ref)).toBe(text);
    }
  });

  it("applies only Docker Hub's equivalence when canonicalising", () => {
    expect(canonicalName("presto:tag")).toBe("docker.io/library/presto:tag");
    expect(canonicalName("index.docker.io/library/presto:tag")).toBe(
      "docker.io/library/presto:tag",
    );
    expect(canonicalName("quay.io/presto:tag")).toBe("quay.io/presto:tag");
    expect(canonicalName("team/presto:tag")).toBe("docker.io/team/presto:tag");
  });

  it("checks registry hosts and their ports", () => {
    expect(isRegistryHost("gitlab-master.nvidia.com:5005")).toBe(true);
    expect(isRegistryHost("[::1]:5000")).toBe(true);
    expect(isRegistryHost("localhost:99999")).toBe(false);
    expect(isRegistryHost("localhost:0")).toBe(false);
    expect(isRegistryHost("http://x")).toBe(false);
  });

  it("speaks plain http only to loopback registries unless told", () => {
    expect(registryScheme("127.0.0.1:5000")).toBe("http");
    expect(registryScheme("localhost")).toBe("http");
    expect(registryScheme("[::1]:5000")).toBe("http");
    expect(registryScheme("registry.example.com:5005")).toBe("https");
    expect(registryScheme("registry.example.com", true)).toBe("http");
  });
});
