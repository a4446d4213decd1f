import { describe, expect, it } from "vitest";
import {
  archForPlatform,
  expectedImages,
  gitlabTagName,
  parseGitlabTag,
} from "../../src/domain/images.js";

const base = {
  "Presto ref": "92865fbce0d2a056af5334a0afecc1f36853b657",
  "Velox ref": "65797d572e0a297fa898e4f6ab4c1afc75fe3419",
};

describe("tag normaliser", () => {
  it("maps an amd64 all_native build to x86 tags without the platform suffix", () => {
    const images = expectedImages({
      ...base,
      "Target platform": "linux/amd64",
      "Build native CPU": "true",
      "Build native GPU": "true",
      "Build Java worker": "false",
      "Image tag": "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64",
    });
    expect(images.map((i) => i.gitlabTag)).toEqual([
      "x86/presto-coordinator:presto-92865fbce0d2-velox-65797d572e0a",
      "x86/presto-native-worker-cpu:presto-92865fbce0d2-velox-65797d572e0a",
      "x86/presto-native-worker-gpu:presto-92865fbce0d2-velox-65797d572e0a",
    ]);
    expect(images[0]?.tarball).toBe(
      "presto-coordinator-presto-92865fbce0d2-velox-65797d572e0a-linux-amd64.tar.gz",
    );
    expect(images[0]?.arch).toBe("x86");
    expect(images[0]?.repoPath).toBe("x86/presto-coordinator");
  });

  it("maps arm64 builds to arm/ and includes the java worker only when built", () => {
    const images = expectedImages({
      "Target platform": "linux/arm64",
      "Build Java worker": "TRUE",
      "Build native CPU": "false",
      "Image tag": "presto-a-velox-b-linux-arm64",
    });
    expect(images.map((i) => i.gitlabTag)).toEqual([
      "arm/presto-coordinator:presto-a-velox-b",
      "arm/presto-java-worker:presto-a-velox-b",
    ]);
  });

  it("gives no prefix to an unknown platform and keeps a tag without the suffix", () => {
    const images = expectedImages({
      "Target platform": "linux/s390x",
      "Image tag": "presto-a-velox-b-linux-s390x",
    });
    expect(images.map((i) => i.gitlabTag)).toEqual(["presto-coordinator:presto-a-velox-b"]);
    expect(gitlabTagName("custom-tag", "linux/amd64")).toBe("custom-tag");
    expect(archForPlatform("x86_64")).toBe("x86");
    expect(archForPlatform(undefined)).toBe("");
  });

  it("promises nothing for metadata without an image tag", () => {
    expect(expectedImages({ "Target platform": "linux/amd64" })).toEqual([]);
  });

  it("parses GitLab tags back into their parts", () => {
    const parsed = parseGitlabTag("x86/presto-native-worker-gpu:presto-a-velox-b");
    expect(parsed).toEqual({
      repoPath: "x86/presto-native-worker-gpu",
      tag: "presto-a-velox-b",
      arch: "x86",
      repo: "presto-native-worker-gpu",
    });
    expect(parseGitlabTag("arm/presto-coordinator:latest")?.arch).toBe("arm");
    expect(parseGitlabTag("presto-coordinator:x")?.arch).toBe("");
  });

  it("refuses malformed GitLab tags", () => {
    for (const bad of [
      "",
      "no-colon",
      ":tag",
      "repo:",
      "x86/../etc:tag",
      "x86/repo:../../etc",
      "Upper/Case:tag",
      "repo:a/b",
    ]) {
      expect(parseGitlabTag(bad), bad).toBeUndefined();
    }
  });
});
