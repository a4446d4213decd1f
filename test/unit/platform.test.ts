import { describe, expect, it } from "vitest";
import { platformMismatch, platformOddity } from "../../src/domain/platform.js";

describe("platformMismatch: an image config against its build's target platform", () => {
  it("accepts the config of the platform's own architecture, in any of its spellings", () => {
    expect(platformMismatch({ os: "linux", architecture: "amd64" }, "linux/amd64")).toBeUndefined();
    expect(platformMismatch({ os: "linux", architecture: "arm64" }, "linux/arm64")).toBeUndefined();
    expect(
      platformMismatch({ os: "linux", architecture: "x86_64" }, "Linux/AMD64"),
    ).toBeUndefined();
    expect(
      platformMismatch({ os: "linux", architecture: "aarch64" }, " linux/arm64 "),
    ).toBeUndefined();
    // arm64 is v8 unless it says otherwise.
    expect(
      platformMismatch({ os: "linux", architecture: "arm64", variant: "v8" }, "linux/arm64"),
    ).toBeUndefined();
    expect(
      platformMismatch({ os: "linux", architecture: "arm64" }, "linux/arm64/v8"),
    ).toBeUndefined();
    // A variant counts only where the platform names one.
    expect(
      platformMismatch({ os: "linux", architecture: "arm", variant: "v6" }, "linux/arm"),
    ).toBeUndefined();
    expect(
      platformMismatch({ os: "linux", architecture: "arm", variant: "v7" }, "linux/arm/v7"),
    ).toBeUndefined();
  });

  it("names both when the config says another architecture, os or variant", () => {
    expect(platformMismatch({ os: "linux", architecture: "amd64" }, "linux/arm64")).toBe(
      "its config says linux/amd64 but the build's target platform is linux/arm64",
    );
    expect(platformMismatch({ os: "windows", architecture: "amd64" }, "linux/amd64")).toBe(
      "its config says windows/amd64 but the build's target platform is linux/amd64",
    );
    expect(
      platformMismatch({ os: "linux", architecture: "arm", variant: "v6" }, "linux/arm/v7"),
    ).toBe("its config says linux/arm/v6 but the build's target platform is linux/arm/v7");
    expect(platformMismatch({}, "linux/amd64")).toBe(
      "its config says ?/? but the build's target platform is linux/amd64",
    );
  });

  it("holds nothing against an image whose build names no platform it can read", () => {
    expect(platformMismatch({ os: "linux", architecture: "amd64" }, undefined)).toBeUndefined();
    expect(platformMismatch({ os: "linux", architecture: "amd64" }, "")).toBeUndefined();
    expect(platformMismatch({ os: "linux", architecture: "amd64" }, "amd64")).toBeUndefined();
  });

  it("does not take a look-alike platform for the real one, and shows what it holds", () => {
    // Cyrillic а (U+0430) in place of the Latin a.
    expect(platformMismatch({ os: "linux", architecture: "arm64" }, "linux/\u0430rm64")).toBe(
      "its config says linux/arm64 but the build's target platform is linux/\\u{430}rm64",
    );
  });
});

describe("platformOddity: a platform that reads as another", () => {
  it("warns of non-ASCII look-alikes, fullwidth forms, invisible characters and controls", () => {
    expect(platformOddity("linux/\u0430rm64")).toBe(
      "the build's target platform 'linux/\\u{430}rm64' holds non-ASCII or invisible characters (U+0430): it reads as another platform than it is",
    );
    expect(platformOddity("linux/\uff41md64")).toContain("(U+FF41)");
    expect(platformOddity("linux/amd64\u200b")).toContain("(U+200B)");
    expect(platformOddity("linux/amd64\u001b[2J")).toContain("(U+001B)");
  });

  it("says nothing of a plain ASCII platform, or of none", () => {
    expect(platformOddity("linux/arm64")).toBeUndefined();
    expect(platformOddity("Linux/AMD64")).toBeUndefined();
    expect(platformOddity(undefined)).toBeUndefined();
  });
});
