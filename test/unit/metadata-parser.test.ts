import { describe, expect, it } from "vitest";
import { METADATA_KEYS } from "../../src/domain/metadata.js";
import { MetadataBlockParser, parseMetadata } from "../../src/github/metadata-parser.js";
import { makeMetadata, renderJobLog } from "../testbed/run-fixtures.js";

const ESC = "\u001b";
const TS = "2025-10-01T12:00:00.1234567Z ";

const BLOCK = [
  "Presto repository : prestodb/presto",
  "Presto ref        : 92865fbce0d2a056af5334a0afecc1f36853b657",
  "Velox repository  : rapidsai/velox",
  "Velox ref         : 65797d572e0a297fa898e4f6ab4c1afc75fe3419",
  "Target platform   : linux/amd64",
  "Worker bundle mode: all_native",
  "Build native CPU  : true",
  "Build native GPU  : true",
  "Build Java worker : false",
  "Image tag         : presto-92865fbce0d2-velox-65797d572e0a-linux-amd64",
  "Generated at      : 2025-10-01T12:00:00Z",
];

const EXPECTED = {
  "Presto repository": "prestodb/presto",
  "Presto ref": "92865fbce0d2a056af5334a0afecc1f36853b657",
  "Velox repository": "rapidsai/velox",
  "Velox ref": "65797d572e0a297fa898e4f6ab4c1afc75fe3419",
  "Target platform": "linux/amd64",
  "Worker bundle mode": "all_native",
  "Build native CPU": "true",
  "Build native GPU": "true",
  "Build Java worker": "false",
  "Image tag": "presto-92865fbce0d2-velox-65797d572e0a-linux-amd64",
  "Generated at": "2025-10-01T12:00:00Z",
};

/** A small log shaped like GitHub's: group with script echo, then the printed block. */
function smallLog(eol = "\n"): string {
  const lines = [
    "\uFEFF" + TS + "Current runner version: '2.328.0'",
    TS + '##[group]Run printf "%-18s: %s\\n" "Presto repository" "${PRESTO_REPOSITORY}"',
    TS + `${ESC}[36;1mprintf "%-18s: %s\\n" "Image tag" "\${IMAGE_TAG}"${ESC}[0m`,
    TS +
      `${ESC}[36;1mprintf "%-18s: %s\\n" "Generated at" "$(date -u +"%Y-%m-%dT%H:%M:%SZ")"${ESC}[0m`,
    TS + "Image tag         : from-inside-the-group",
    TS + "env:",
    TS + "  IMAGE_TAG: presto-92865fbce0d2-velox-65797d572e0a-linux-amd64",
    TS + "##[endgroup]",
    ...BLOCK.map((line) => TS + line),
    TS + "after the block",
  ];
  return lines.join(eol) + eol;
}

describe("MetadataBlockParser", () => {
  it("lists the keys of the original tool", () => {
    expect(METADATA_KEYS).toContain("Registry push");
    expect(METADATA_KEYS).toHaveLength(12);
  });

  it("reads a plain block without timestamps", () => {
    expect(parseMetadata(BLOCK.join("\n"))).toEqual(EXPECTED);
  });

  it("strips timestamps, CRLF and ANSI codes", () => {
    const log = BLOCK.map((line) => `${TS}${ESC}[0m${line}${ESC}[0m\r\n`).join("");
    expect(parseMetadata(log)).toEqual(EXPECTED);
  });

  it("never takes a value from the step's script text", () => {
    expect(parseMetadata(smallLog())).toEqual(EXPECTED);
  });

  it("ignores lines inside ##[group] even without the colour code", () => {
    const log = [
      TS + "##[group]Run something",
      TS + "Image tag         : decoy",
      TS + "Generated at      : decoy",
      TS + "##[endgroup]",
      TS + "Image tag         : real",
    ].join("\n");
    expect(parseMetadata(log)).toEqual({ "Image tag": "real" });
  });

  it("ignores coloured script lines outside a group", () => {
    const log = `${TS}${ESC}[36;1mImage tag         : decoy${ESC}[0m\n${TS}Image tag         : real\n`;
    expect(parseMetadata(log)).toEqual({ "Image tag": "real" });
  });

  it("refuses values with unexpanded shell expressions", () => {
    const log = [
      "Image tag         : ${IMAGE_TAG}",
      'Generated at      : $(date -u +"%Y-%m-%dT%H:%M:%SZ")',
      "noise",
      "Image tag         : real-tag",
    ].join("\n");
    expect(parseMetadata(log)["Image tag"]).toBe("real-tag");
  });

  it("matches a key only at the start of the line content", () => {
    const log = [
      TS + "echo Image tag         : nope",
      TS + "  Image tag         : indented",
      TS + "Image tagged      : other key",
      TS + "Image tag         : yes",
    ].join("\n");
    expect(parseMetadata(log)).toEqual({ "Image tag": "yes" });
  });

  it("reports two different blocks as a conflict naming both, whatever sits between them", () => {
    const second = BLOCK.map((line) => line.replace("linux-amd64", "linux-arm64"));
    for (const log of [
      [...BLOCK, "", ...second].join("\n"),
      [...BLOCK.slice(0, 10), ...second.slice(0, 10)].join("\n"),
      [...BLOCK, "noise", "more noise", ...second, "##[group]Run next step"].join("\n"),
    ]) {
      const parser = new MetadataBlockParser();
      parser.push(log);
      parser.end();
      expect(parser.conflict?.first["Image tag"]).toBe(EXPECTED["Image tag"]);
      expect(parser.conflict?.second["Image tag"]).toContain("linux-arm64");
    }
  });

  it("takes the same block printed twice (a tee, a later cat) as one", () => {
    const again = BLOCK.map((line) =>
      line.startsWith("Generated at") ? "Generated at      : 2025-10-01T12:00:05Z" : line,
    );
    const parser = new MetadataBlockParser();
    parser.push([...BLOCK, ...again].join("\n"));
    parser.end();
    expect(parser.conflict).toBeUndefined();
    expect(parser.metadata).toEqual(EXPECTED);
  });

  it("does not look for a rival block past the end of the step that printed it", () => {
    const second = BLOCK.map((line) => line.replace("linux-amd64", "linux-arm64"));
    const parser = new MetadataBlockParser();
    parser.push([...BLOCK, TS + "##[group]Run ./build.sh", ...second].join("\n"));
    expect(parser.complete).toBe(true);
    expect(parser.conflict).toBeUndefined();
    expect(parser.metadata).toEqual(EXPECTED);
  });

  it("skips a block without an image tag in favour of a later whole one", () => {
    const log = ["Presto ref        : aaa", "noise", ...BLOCK].join("\n");
    expect(parseMetadata(log)).toEqual(EXPECTED);
    expect(parseMetadata("Presto ref        : aaa\nnoise\n")).toEqual({ "Presto ref": "aaa" });
  });

  it("reads an empty value as empty", () => {
    expect(parseMetadata("Registry push     :\nImage tag         : t\n")).toEqual({
      "Registry push": "",
      "Image tag": "t",
    });
  });

  it("gives the same answer wherever the chunks split the log (CRLF too)", () => {
    for (const eol of ["\n", "\r\n"]) {
      const log = smallLog(eol);
      for (let offset = 0; offset <= log.length; offset++) {
        const parser = new MetadataBlockParser();
        parser.push(log.slice(0, offset));
        parser.push(log.slice(offset));
        parser.end();
        expect(parser.metadata, `split at ${offset}`).toEqual(EXPECTED);
      }
      const parser = new MetadataBlockParser();
      for (const char of log) parser.push(char);
      parser.end();
      expect(parser.metadata).toEqual(EXPECTED);
    }
  });

  it("is complete once the step that printed the block ends, before the log ends", () => {
    const parser = new MetadataBlockParser();
    parser.push(smallLog().split("Generated at      : ")[0] ?? "");
    expect(parser.complete).toBe(false);
    parser.push("Generated at      : 2025-10-01T12:00:00Z\n");
    // Whole, but the same step could still print a second, different block.
    expect(parser.complete).toBe(false);
    parser.push(TS + "##[group]Run ./presto/scripts/build_images.sh\n");
    expect(parser.complete).toBe(true);
    expect(parser.metadata).toEqual(EXPECTED);
  });

  it("is complete when the block ends without 'Generated at' and the next step begins", () => {
    const parser = new MetadataBlockParser();
    parser.push(
      BLOCK.slice(0, 10)
        .map((line) => TS + line + "\n")
        .join(""),
    );
    expect(parser.complete).toBe(false);
    parser.push(TS + "step output after the block\n");
    expect(parser.complete).toBe(false);
    parser.push(TS + "##[group]Run next step\n");
    expect(parser.complete).toBe(true);
    expect(parser.metadata["Image tag"]).toBe(EXPECTED["Image tag"]);
  });

  it("completes at end() when the block is the last thing in the log", () => {
    const parser = new MetadataBlockParser();
    parser.push(BLOCK.slice(0, 10).join("\n"));
    expect(parser.complete).toBe(false);
    parser.end();
    expect(parser.complete).toBe(true);
  });

  it("survives an overlong line", () => {
    const log = `${"x".repeat(200_000)}\n${BLOCK.join("\n")}`;
    expect(parseMetadata(log)).toEqual(EXPECTED);
  });

  it("reads the generated job logs in every variant", () => {
    const metadata = makeMetadata({
      prestoRef: "main",
      veloxRef: "abc/def",
      platform: "linux/arm64",
      mode: "all",
    });
    for (const crlf of [false, true]) {
      for (const ansi of [false, true]) {
        expect(parseMetadata(renderJobLog(metadata, { crlf, ansi, noiseBytes: 100_000 }))).toEqual(
          metadata,
        );
      }
    }
    expect(parseMetadata(renderJobLog(null, { noiseBytes: 10_000 }))).toEqual({});
  });
});
