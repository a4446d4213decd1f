/**
 * Finds the build metadata block (SPEC §1.2) in a GitHub Actions log, fed in chunks as it
 * streams so that a caller can stop downloading as soon as the block is settled: whole, and the
 * step that printed it over (the next step's `##[group]`, or the end of the log). A second,
 * different block printed before then is a conflict, not something to choose from silently.
 */
import { METADATA_KEYS, type MetadataKey, type RunMetadata } from "../domain/metadata.js";

const ESC = "\u001b";
/** GitHub colours echoed script text with this sequence; such a line is never a value. */
const SCRIPT_LINE_PREFIX = `${ESC}[36;1m`;
// Built from a string so the control character stays visible in review.
const ANSI_SEQUENCE = new RegExp(`${ESC}\\[[0-9;?]*[ -/]*[@-~]`, "g");
const LEADING_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}) /;
// Longest keys first, so that "Presto ref" can never shadow a longer key sharing its start.
const KEY_ALTERNATION = [...METADATA_KEYS]
  .sort((a, b) => b.length - a.length)
  .map((key) => key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
  .join("|");
// printf "%-18s: %s" pads the key with spaces, then ": " and the value.
const KEY_LINE = new RegExp(`^(${KEY_ALTERNATION}) *:(?: (.*))?$`);
const UNEXPANDED = /\$\{|\$\(/;
/** A longer line is build noise (progress output); keeping it whole would only cost memory. */
const MAX_LINE_CHARS = 64 * 1024;

type LineKind = { kind: "key"; key: MetadataKey; value: string } | { kind: "other" };

function classifyContent(content: string): LineKind {
  const match = KEY_LINE.exec(content);
  if (!match) return { kind: "other" };
  const value = (match[2] ?? "").trimEnd();
  if (UNEXPANDED.test(value)) return { kind: "other" };
  return { kind: "key", key: match[1] as MetadataKey, value };
}

/** Two different blocks in one log: which one is the run's is anyone's guess. */
export interface BlockConflict {
  first: RunMetadata;
  second: RunMetadata;
}

/** Keys whose values may differ between two printings of the same block. */
const VOLATILE_KEYS = new Set<MetadataKey>(["Generated at"]);

function sameBlock(a: RunMetadata, b: RunMetadata): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as MetadataKey[]);
  return [...keys].every((key) => VOLATILE_KEYS.has(key) || a[key] === b[key]);
}

export class MetadataBlockParser {
  private pending = "";
  private overlong = false;
  private inGroup = false;
  private current: RunMetadata | undefined;
  private firstIncomplete: RunMetadata | undefined;
  private found: RunMetadata | undefined;
  /** The step that printed the block has ended: nothing later can be a rival printing. */
  private settled = false;
  private clash: BlockConflict | undefined;
  private ended = false;

  /** Feeds the next piece of the log; pieces may split lines (and CRLF pairs) anywhere. */
  push(chunk: string): void {
    if (this.complete || this.ended) return;
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf("\n", start);
      if (newline < 0) break;
      this.appendPending(chunk.slice(start, newline));
      this.takeLine();
      if (this.complete) return;
      start = newline + 1;
    }
    this.appendPending(chunk.slice(start));
  }

  /** Marks the end of the log: a final line without a newline still counts. */
  end(): void {
    if (this.ended) return;
    if (!this.complete && (this.pending.length > 0 || this.overlong)) this.takeLine();
    this.ended = true;
    this.closeBlock();
    this.settled = true;
  }

  /** True once the answer is known (a settled block, or a conflict): the rest can be skipped. */
  get complete(): boolean {
    return this.found !== undefined && (this.settled || this.clash !== undefined);
  }

  /** The two blocks, when the log printed different ones. */
  get conflict(): BlockConflict | undefined {
    return this.clash;
  }

  /** The complete block; failing that, the first partial one; else nothing. */
  get metadata(): RunMetadata {
    return { ...(this.found ?? this.firstIncomplete ?? this.current ?? {}) };
  }

  private appendPending(piece: string): void {
    if (this.overlong) return;
    if (this.pending.length + piece.length > MAX_LINE_CHARS) {
      this.pending = "";
      this.overlong = true;
      return;
    }
    this.pending += piece;
  }

  private takeLine(): void {
    const raw = this.pending;
    const overlong = this.overlong;
    this.pending = "";
    this.overlong = false;
    this.handleLine(overlong ? undefined : raw);
  }

  private handleLine(raw: string | undefined): void {
    const line = raw === undefined ? undefined : this.classify(raw);
    if (line?.kind !== "key") {
      this.closeBlock();
      return;
    }
    // A key repeated inside a block means a second block printed right after the first.
    if (this.current && line.key in this.current) this.closeBlock();
    this.current ??= {};
    this.current[line.key] = line.value;
    if (line.key === "Generated at" && this.current["Image tag"]) this.closeBlock();
  }

  private classify(raw: string): LineKind {
    let content = raw.replace(/\r/g, "");
    if (content.charCodeAt(0) === 0xfeff) content = content.slice(1);
    content = content.replace(LEADING_TIMESTAMP, "");
    if (content.startsWith(SCRIPT_LINE_PREFIX)) return { kind: "other" };
    const plain = content.replace(ANSI_SEQUENCE, "");
    // Script text of a step is echoed between these markers; only its output may hold values.
    if (plain.startsWith("##[group]")) {
      this.inGroup = true;
      // The next step begins: the block's own step, and with it any rival printing, is over.
      if (this.found) this.settled = true;
      return { kind: "other" };
    }
    if (plain.startsWith("##[endgroup]")) {
      this.inGroup = false;
      return { kind: "other" };
    }
    if (this.inGroup) return { kind: "other" };
    return classifyContent(plain);
  }

  private closeBlock(): void {
    const block = this.current;
    this.current = undefined;
    if (!block) return;
    if (!block["Image tag"]) {
      if (!this.found) this.firstIncomplete ??= block;
      return;
    }
    if (!this.found) this.found = block;
    else if (!this.clash && !sameBlock(this.found, block))
      this.clash = { first: this.found, second: block };
  }
}

/** Parses a whole log held in memory. */
export function parseMetadata(text: string): RunMetadata {
  const parser = new MetadataBlockParser();
  parser.push(text);
  parser.end();
  return parser.metadata;
}
