/**
 * `--help` that fits an 80-column terminal: the flags many subcommands share (GitHub, GitLab,
 * the registry, the workspace, the HTTP timeout) are named once per page under their own
 * heading and described on one page of their own, `gh-gitlab-sync help flags`; a boolean flag
 * does not say `(default: false)`; examples wrap at the window's width.
 */
import { Command, Help, type HelpConfiguration, type Option } from "commander";

/** The groups of shared flags, as `help flags` heads them. */
export const SHARED = {
  github: "GitHub:",
  gitlab: "GitLab:",
  registry: "Registry:",
  workspace: "Workspace:",
  network: "Network:",
} as const;
const SHARED_HEADINGS = new Set<string>(Object.values(SHARED));

/** The name of the page that describes the shared flags (`gh-gitlab-sync help flags`). */
export const FLAGS_PAGE = "flags";

/**
 * An option many subcommands take: in its group on `help flags`, by name only elsewhere. Not
 * hidden, so a mistyped one still gets its "Did you mean" (commander suggests visible options).
 */
export function shared(option: Option, group: string): Option {
  return option.helpGroup(group);
}

function isShared(option: Option): boolean {
  return SHARED_HEADINGS.has(option.helpGroupHeading ?? "");
}

/** Words joined into lines no wider than `width`, each indented by `indent`. */
export function wrapWords(words: string[], width: number, indent: string, joiner = " "): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of words) {
    if (line !== "" && indent.length + line.length + joiner.length + word.length > width) {
      lines.push(`${indent}${line}`);
      line = "";
    }
    line = line === "" ? word : `${line}${joiner}${word}`;
  }
  if (line !== "") lines.push(`${indent}${line}`);
  return lines;
}

/** Each subcommand's examples, printed last and wrapped to the page's width. */
const EXAMPLES = new WeakMap<Command, string[]>();

/** Examples at the end of `--help`, as the original's epilog did. */
export function withExamples(cmd: Command, examples: string[]): Command {
  EXAMPLES.set(cmd, examples);
  return cmd;
}

function examplesOf(cmd: Command, width: number): string {
  const examples = EXAMPLES.get(cmd);
  if (!examples) return "";
  return `\nExamples:\n${examples.flatMap((e) => wrapExample(e, width)).join("\n")}\n`;
}

/** The shared flags a subcommand takes, by name, under their heading. */
function sharedList(cmd: Command, width: number): string {
  const names = cmd.options.filter(isShared).map((o) => o.long ?? o.flags);
  if (names.length === 0) return "";
  const heading = `Shared options (gh-gitlab-sync help ${FLAGS_PAGE}):`;
  return `\n${[heading, ...wrapWords(names, width, "  ")].join("\n")}\n`;
}

/** The help being drawn for the `help flags` page, the one that lists the shared groups. */
const describesShared = new WeakSet<Help>();

/** Commander's help, configured once on the program and inherited by every subcommand. */
export const HELP: HelpConfiguration = {
  optionDescription(this: Help, option: Option): string {
    const text = Help.prototype.optionDescription.call(this, option);
    // Off unless given: saying so on every switch only makes the page longer.
    return option.isBoolean() && option.defaultValue === false
      ? text.replace(/ \(default: false\)$/, "")
      : text;
  },
  // Every subcommand takes options: `[options]` on each line of the list only takes room.
  subcommandTerm(this: Help, cmd: Command): string {
    return Help.prototype.subcommandTerm.call(this, cmd).replace(" [options]", "");
  },
  // Only the options shown set the width of the column of names.
  longestOptionTermLength(this: Help, cmd: Command, helper: Help): number {
    return helper
      .visibleOptions(cmd)
      .filter((option) => describesShared.has(this) || !isShared(option))
      .reduce(
        (max, option) =>
          Math.max(max, helper.displayWidth(helper.styleOptionTerm(helper.optionTerm(option)))),
        0,
      );
  },
  // The shared groups are described on their own page; elsewhere `sharedList` names them.
  formatItemList(this: Help, heading: string, items: string[], helper: Help): string[] {
    if (SHARED_HEADINGS.has(heading) && !describesShared.has(this)) return [];
    return Help.prototype.formatItemList.call(this, heading, items, helper);
  },
  formatHelp(this: Help, cmd: Command, helper: Help): string {
    if (cmd.name() === FLAGS_PAGE) describesShared.add(this);
    const text = Help.prototype.formatHelp.call(this, cmd, helper);
    if (cmd.name() === FLAGS_PAGE) {
      // Not a command to run: the page has no usage line of its own.
      return text.replace(/^Usage: .*\n\n/, "");
    }
    const width = helper.helpWidth ?? 80;
    return `${text.replace(/\n+$/, "\n")}${sharedList(cmd, width)}${examplesOf(cmd, width)}`;
  },
};

/** `--flag value` kept together, so a wrapped example never parts a flag from its value. */
function flagsWithValues(words: string[]): string[] {
  const tokens: string[] = [];
  for (const word of words) {
    const last = tokens.at(-1);
    if (last?.startsWith("--") && !last.includes(" ") && !word.startsWith("-")) {
      tokens[tokens.length - 1] = `${last} ${word}`;
    } else tokens.push(word);
  }
  return tokens;
}

/**
 * A shell command line as lines no wider than `width`, continued with ` \` as a shell reads it;
 * a trailing `# comment` goes on a line of its own above the command.
 */
export function wrapExample(example: string, width: number): string[] {
  const [command = "", comment] = example.split(/\s+#\s+/, 2);
  // Room for the `  $ ` (or the continuation's indent) before, and the ` \` after.
  const lines = wrapWords(flagsWithValues(command.split(" ")), width - 6, "", " ");
  const shown = lines.map((line, i) => (i === 0 ? `  $ ${line}` : `      ${line}`));
  const continued = shown.map((line, i) => (i < shown.length - 1 ? `${line} \\` : line));
  return comment ? [`  # ${comment}`, ...continued] : continued;
}

/** The page `gh-gitlab-sync help flags` shows: every shared flag, described, by group. */
export function addFlagsPage(program: Command, addShared: (cmd: Command) => void): void {
  const page = program
    .command(FLAGS_PAGE, { hidden: true })
    .description(
      "The options many subcommands share. Each subcommand's --help names the ones it takes; " +
        "they go after the subcommand: gh-gitlab-sync <subcommand> [options]",
    );
  addShared(page);
  page.action(() => page.outputHelp());
}
