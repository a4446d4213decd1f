/**
 * A real terminal for tests that read what a person sees: a tmux server of the test's own (its
 * own socket, so no one else's sessions are touched) running one command in a window of a given
 * width, and the screen read back with `capture-pane`, as a person would read it.
 */
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { findOnPath } from "./system.js";

const run = promisify(execFile);

export function terminalGate(): { skip: boolean; reason: string } {
  if (findOnPath("tmux")) return { skip: false, reason: "" };
  const reason = "tmux is missing (apt-get install tmux, or npm run setup:system)";
  if (process.env.CI) throw new Error(`CI=true but ${reason}`);
  return { skip: true, reason: `skipped: ${reason}` };
}

export interface TerminalRun {
  /** The screen now: every line of the window and its history, wrapped lines joined. */
  screen(): Promise<string[]>;
  /** The screen as rows of the window: a line longer than the window takes two rows or more. */
  rows(): Promise<string[]>;
  /** Resolves with the command's exit status once it has ended. */
  done: Promise<number>;
  /** Types into the window, as tmux's send-keys names keys (`C-c` is Ctrl-C). */
  keys(...keys: string[]): Promise<void>;
  /** The pid of the command (the child of the window's shell), to signal it as a service manager would. */
  pid(): Promise<number>;
  close(): Promise<void>;
}

let counter = 0;

/**
 * Runs `command` (a shell command line) in a detached tmux window `columns` wide. The window
 * stays after the command ends, so its last screen can still be read.
 */
export async function runInTerminal(
  command: string,
  options: { columns: number; rows?: number; env: Record<string, string>; cwd: string },
): Promise<TerminalRun> {
  const socket = `gh-gitlab-sync-test-${process.pid}-${(counter += 1)}`;
  const tmux = (...args: string[]) => run("tmux", ["-L", socket, "-f", "/dev/null", ...args]);
  const exports = Object.entries(options.env)
    .map(([k, v]) => `export ${k}='${v.replace(/'/g, "'\\''")}'`)
    .join("; ");
  await tmux(
    // History first: it applies to windows made after it, and the test reads all of it.
    "set-option",
    "-g",
    "history-limit",
    "5000",
    ";",
    "new-session",
    "-d",
    "-s",
    "t",
    "-x",
    String(options.columns),
    "-y",
    String(options.rows ?? 50),
    "-c",
    options.cwd,
    // The exit status goes into a tmux variable, so the test can wait for it.
    `${exports}; ${command}; tmux -L ${socket} set-option -g @status $?; sleep 600`,
  );
  const capture = async (...flags: string[]) => {
    const { stdout } = await tmux("capture-pane", "-p", ...flags, "-S", "-", "-t", "t");
    return stdout.replace(/\n+$/, "").split("\n");
  };
  const screen = () => capture("-J");
  let closed = false;
  const done = (async () => {
    while (!closed) {
      const { stdout } = await tmux("show-options", "-gv", "@status").catch(() => ({
        stdout: "",
      }));
      if (stdout.trim() !== "") return Number(stdout.trim());
      await sleep(100);
    }
    return -1;
  })();
  return {
    screen,
    rows: () => capture(),
    done,
    keys: async (...keys) => {
      await tmux("send-keys", "-t", "t", ...keys);
    },
    pid: async () => {
      const { stdout: shell } = await tmux("display-message", "-p", "-t", "t", "#{pane_pid}");
      const { stdout } = await run("ps", ["-o", "pid=", "--ppid", shell.trim()]);
      const pid = Number(stdout.trim().split(/\s+/)[0]);
      if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no command runs in the window`);
      return pid;
    },
    close: async () => {
      closed = true;
      // The server leaves its socket file behind when killed: removed, so /tmp keeps nothing.
      const where = await tmux("display-message", "-p", "#{socket_path}").catch(() => undefined);
      await tmux("kill-server").catch(() => undefined);
      const socketPath = where?.stdout.trim();
      if (socketPath) await rm(socketPath, { force: true });
    },
  };
}
