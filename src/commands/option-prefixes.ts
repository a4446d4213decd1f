import type { Command, Option } from "commander";
import { UsageError } from "../errors.js";

/**
 * argparse, which the original is built on, takes any unambiguous prefix of a long option
 * (`--include` for `--include-failed`, `--registry-u` for `--registry-username`); scripts
 * written against the original use them. Commander has no such thing, so the command line is
 * rewritten before it parses: each `--prefix[=value]` that starts exactly one long option of
 * the subcommand being run (or of the program) becomes that option; an exact name always wins
 * (`--registry` is not ambiguous with `--registry-username`); a prefix that starts several is a
 * usage error naming them; one that starts none is left for commander to refuse.
 */

interface LongOption {
  name: string;
  /** `<value>`: the next word is its value; `[value]`: only when it is not an option itself. */
  value: "required" | "optional" | "none";
}

function longOptions(options: readonly Option[]): LongOption[] {
  return options
    .filter((o): o is Option & { long: string } => typeof o.long === "string")
    .map((o) => ({
      name: o.long,
      value: o.required ? "required" : o.optional ? "optional" : "none",
    }));
}

/** Whether the word after `--name` (given without `=`) is the option's value, as commander reads it. */
function takesNext(option: LongOption, next: string | undefined): boolean {
  if (next === undefined || option.value === "none") return false;
  return option.value === "required" || !next.startsWith("-");
}

function findSubcommand(program: Command, argv: string[], globals: LongOption[]): number {
  for (let i = 0; i < argv.length; i += 1) {
    const word = argv[i] ?? "";
    if (word === "--") return -1;
    if (!word.startsWith("-")) {
      return program.commands.some((c) => c.name() === word || c.aliases().includes(word)) ? i : -1;
    }
    const option = resolve(word.split("=")[0] ?? word, globals, true);
    if (option && !word.includes("=") && takesNext(option, argv[i + 1])) i += 1;
  }
  return -1;
}

/** The one option a prefix names, or undefined; several → UsageError unless `quiet`. */
function resolve(word: string, options: LongOption[], quiet = false): LongOption | undefined {
  const exact = options.find((o) => o.name === word);
  if (exact) return exact;
  const candidates = options.filter((o) => o.name.startsWith(word));
  if (candidates.length === 1) return candidates[0];
  if (candidates.length > 1 && !quiet) {
    throw new UsageError(
      `option '${word}' is ambiguous: ${candidates.map((o) => o.name).join(", ")}`,
      "type more of the option's name",
    );
  }
  return undefined;
}

/** `argv` (after node and the script) with every unambiguous long-option prefix spelt out. */
export function expandOptionPrefixes(program: Command, argv: string[]): string[] {
  const help: LongOption[] = [{ name: "--help", value: "none" }];
  const globals = [...longOptions(program.options), ...help];
  const at = findSubcommand(program, argv, globals);
  const sub = at >= 0 ? program.commands.find((c) => c.name() === argv[at]) : undefined;
  const known = sub ? [...longOptions(sub.options), ...globals] : globals;
  const out: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const word = argv[i] ?? "";
    if (word === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (!word.startsWith("--") || word === "--") {
      out.push(word);
      continue;
    }
    const eq = word.indexOf("=");
    const name = eq >= 0 ? word.slice(0, eq) : word;
    const option = resolve(name, known);
    if (!option) {
      out.push(word);
      continue;
    }
    out.push(eq >= 0 ? `${option.name}${word.slice(eq)}` : option.name);
    // The option's value is the next word, whatever it looks like: never expand it.
    if (eq < 0 && takesNext(option, argv[i + 1])) {
      i += 1;
      out.push(argv[i] ?? "");
    }
  }
  return out;
}
