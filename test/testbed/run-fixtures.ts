/**
 * Generated GitHub Actions runs (SPEC §1.1-1.3): metadata, realistic job logs and run-log zips.
 * Nothing here is downloaded; large logs are cheap because their noise repeats one chunk.
 */
import yazl from "yazl";
import type { RunMetadata } from "../../src/domain/metadata.js";
import type { WorkflowRun } from "../../src/github/runs.js";
import type { FixtureArtifact, FixtureJob, FixtureRun } from "./github-standin.js";

export const DEFAULT_REPO = "rapidsai/velox-testing";
export const DEFAULT_WORKFLOW = "presto-build-images.yml";
export const BUILD_JOB_PREFIX = "Build images";
export const METADATA_STEP_NAME = "Record build metadata";

export type Platform = "linux/amd64" | "linux/arm64";
export type BundleMode = "single" | "all" | "all_native";
export type WorkerVariant = "java" | "native-cpu" | "native-gpu";

function refPart(ref: string): string {
  return ref
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, "-")
    .slice(0, 12);
}

/** The workflow's own tag formula (SPEC §1.1). */
export function imageTagFor(prestoRef: string, veloxRef: string, platform: string): string {
  return `presto-${refPart(prestoRef)}-velox-${refPart(veloxRef)}-${platform.replace(/\//g, "-")}`;
}

export interface MetadataSpec {
  prestoRef: string;
  veloxRef: string;
  platform: Platform | string;
  mode: BundleMode;
  /** Which worker a `single` build makes; java by default. */
  workerVariant?: WorkerVariant;
  prestoRepository?: string;
  veloxRepository?: string;
  generatedAt?: string;
  /** Printed only when given, as later versions of the workflow do. */
  registryPush?: boolean;
}

export function makeMetadata(spec: MetadataSpec): RunMetadata {
  const variant = spec.workerVariant ?? "java";
  const java = spec.mode === "all" || (spec.mode === "single" && variant === "java");
  const cpu = spec.mode !== "single" || variant === "native-cpu";
  const gpu = spec.mode !== "single" || variant === "native-gpu";
  const metadata: RunMetadata = {
    "Presto repository": spec.prestoRepository ?? "prestodb/presto",
    "Presto ref": spec.prestoRef,
    "Velox repository": spec.veloxRepository ?? "rapidsai/velox",
    "Velox ref": spec.veloxRef,
    "Target platform": spec.platform,
    "Worker bundle mode": spec.mode,
    "Build native CPU": String(cpu),
    "Build native GPU": String(gpu),
    "Build Java worker": String(java),
    "Image tag": imageTagFor(spec.prestoRef, spec.veloxRef, spec.platform),
  };
  if (spec.registryPush !== undefined) metadata["Registry push"] = String(spec.registryPush);
  metadata["Generated at"] = spec.generatedAt ?? "2025-10-01T12:00:00Z";
  return metadata;
}

export interface JobLogOptions {
  /** Build output around the block, in bytes (approximate; whole lines). */
  noiseBytes?: number;
  /** Share of the noise printed before the metadata step (checkout); the rest is the build. */
  noiseBeforeFraction?: number;
  crlf?: boolean;
  /** Colour codes in script text and build output, as GitHub records them (default true). */
  ansi?: boolean;
  /** Start time of the job; every line's timestamp follows it. */
  startedAt?: string;
  /**
   * Noise lines that never repeat (each carries a layer digest, as BuildKit prints them), so a
   * big log compresses in a zip about as much as a real one; by default one chunk repeats.
   */
  uniqueNoise?: boolean;
}

export interface StepLog {
  name: string;
  text: string;
}

const ESC = "\u001b";
const SCRIPT_VARIABLES: Record<string, string> = {
  "Presto repository": "PRESTO_REPOSITORY",
  "Presto ref": "PRESTO_REF",
  "Velox repository": "VELOX_REPOSITORY",
  "Velox ref": "VELOX_REF",
  "Target platform": "TARGET_PLATFORM",
  "Worker bundle mode": "WORKER_BUNDLE_MODE",
  "Build native CPU": "BUILD_NATIVE_CPU",
  "Build native GPU": "BUILD_NATIVE_GPU",
  "Build Java worker": "BUILD_JAVA_WORKER",
  "Image tag": "IMAGE_TAG",
  "Registry push": "REGISTRY_PUSH",
};

/** Emits lines with GitHub's 7-digit-fraction timestamps, advancing the clock a little each line. */
class LogWriter {
  private readonly lines: string[] = [];
  private clock: number;

  constructor(
    startedAt: string,
    private readonly eol: string,
  ) {
    this.clock = Date.parse(startedAt);
  }

  stamp(): string {
    this.clock += 37;
    const iso = new Date(this.clock).toISOString();
    return `${iso.slice(0, 23)}${String(this.clock % 7919).padStart(4, "0")}Z`;
  }

  line(text: string): void {
    this.lines.push(`${this.stamp()} ${text}${this.eol}`);
  }

  raw(text: string): void {
    this.lines.push(text);
  }

  take(): string {
    const text = this.lines.join("");
    this.lines.length = 0;
    return text;
  }
}

function noiseChunk(writer: LogWriter, ansi: boolean): string {
  const colour = (code: string, text: string) => (ansi ? `${ESC}[${code}m${text}${ESC}[0m` : text);
  for (let i = 0; i < 200; i++) {
    const percent = String(i % 100).padStart(3, " ");
    writer.line(
      `#14 ${(i * 1.7).toFixed(1)} [${percent}%] Building CXX object velox/exec/CMakeFiles/velox_exec.dir/Operator${i}.cpp.o`,
    );
    if (i % 20 === 0) writer.line(colour("32", `#14 DONE ${(i / 10).toFixed(1)}s`));
    if (i % 50 === 0)
      writer.line(colour("33;1", "warning: Image tag is computed by the workflow, not here"));
  }
  return writer.take();
}

/** Build output that never repeats: BuildKit's layer export lines, a fresh digest on each. */
function uniqueNoise(writer: LogWriter, bytes: number, seed: number): string {
  let state = (seed * 2654435761) >>> 0 || 1;
  const word = (): string => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state.toString(16).padStart(8, "0");
  };
  let length = 0;
  const parts: string[] = [];
  for (let i = 0; length < bytes; i++) {
    const digest = Array.from({ length: 8 }, word).join("");
    writer.line(
      `#14 exporting layer sha256:${digest} ${(i % 977) * 13}kB ${(i * 0.01).toFixed(2)}s done`,
    );
    const text = writer.take();
    parts.push(text);
    length += text.length;
  }
  return parts.join("");
}

function repeatTo(chunk: string, bytes: number): string {
  if (bytes <= 0) return "";
  return chunk.repeat(Math.max(1, Math.round(bytes / chunk.length)));
}

function scriptLines(metadata: RunMetadata): string[] {
  const lines = ["{"];
  for (const key of Object.keys(metadata)) {
    if (key === "Generated at") {
      lines.push(`  printf "%-18s: %s\\n" "Generated at" "$(date -u +"%Y-%m-%dT%H:%M:%SZ")"`);
    } else {
      lines.push(`  printf "%-18s: %s\\n" "${key}" "\${${SCRIPT_VARIABLES[key] ?? "VALUE"}}"`);
    }
  }
  lines.push("} | tee build-metadata.txt");
  return lines;
}

function metadataStep(writer: LogWriter, metadata: RunMetadata, ansi: boolean): string {
  const script = scriptLines(metadata);
  writer.line(`##[group]Run ${script[0] ?? ""}`);
  for (const line of script) writer.line(ansi ? `${ESC}[36;1m${line}${ESC}[0m` : line);
  writer.line("shell: /usr/bin/bash -e {0}");
  writer.line("env:");
  for (const [key, value] of Object.entries(metadata)) {
    const variable = SCRIPT_VARIABLES[key];
    if (variable) writer.line(`  ${variable}: ${value}`);
  }
  // Looks like a value line but sits inside the group: an echo, never the answer.
  writer.line("Image tag         : presto-from-the-script-echo");
  writer.line("##[endgroup]");
  for (const [key, value] of Object.entries(metadata))
    writer.line(`${key.padEnd(18, " ")}: ${value}`);
  return writer.take();
}

/** The steps of the build job, each with its slice of the log (the zip's step files). */
export function renderJobSteps(
  metadata: RunMetadata | null,
  options: JobLogOptions = {},
): StepLog[] {
  const ansi = options.ansi ?? true;
  const writer = new LogWriter(
    options.startedAt ?? "2025-10-01T11:58:00Z",
    options.crlf ? "\r\n" : "\n",
  );
  const noise = options.noiseBytes ?? 0;
  const before = Math.floor(noise * (options.noiseBeforeFraction ?? 0.02));
  const chunk = noise > 0 && !options.uniqueNoise ? noiseChunk(writer, ansi) : "";
  const noiseOf = (bytes: number, seed: number): string =>
    options.uniqueNoise ? uniqueNoise(writer, bytes, seed) : repeatTo(chunk, bytes);
  const steps: StepLog[] = [];

  writer.raw("\uFEFF");
  writer.line("Current runner version: '2.328.0'");
  writer.line("##[group]Operating System");
  writer.line("Ubuntu");
  writer.line("22.04.5");
  writer.line("##[endgroup]");
  writer.line(
    "Download action repository 'actions/checkout@v4' (SHA:08eba0b27e820071cde6df949e0beb9ba4906955)",
  );
  steps.push({ name: "Set up job", text: writer.take() });

  writer.line("##[group]Run actions/checkout@v4");
  writer.line("with:");
  writer.line("  repository: rapidsai/velox-testing");
  writer.line("##[endgroup]");
  writer.line("Syncing repository: rapidsai/velox-testing");
  const checkout = writer.take();
  steps.push({ name: "Checkout velox-testing", text: checkout + noiseOf(before, 1) });

  if (metadata)
    steps.push({ name: METADATA_STEP_NAME, text: metadataStep(writer, metadata, ansi) });

  writer.line("##[group]Run ./presto/scripts/build_images.sh");
  writer.line(
    ansi
      ? `${ESC}[36;1m./presto/scripts/build_images.sh "\${IMAGE_TAG}"${ESC}[0m`
      : "./build_images.sh",
  );
  writer.line("##[endgroup]");
  const buildHead = writer.take();
  const buildText = buildHead + noiseOf(noise - before, 2);
  if (!metadata) writer.line("##[error]Process completed with exit code 2.");
  steps.push({ name: "Build images", text: buildText + writer.take() });

  if (metadata) {
    writer.line("##[group]Run actions/upload-artifact@v4");
    writer.line("##[endgroup]");
    writer.line("Artifact presto-images has been successfully uploaded!");
    steps.push({ name: "Upload images artifact", text: writer.take() });
  }
  writer.line("Post job cleanup.");
  steps.push({ name: "Post Checkout velox-testing", text: writer.take() });
  writer.line("Cleaning up orphan processes");
  steps.push({ name: "Complete job", text: writer.take() });
  return steps;
}

/** A whole job log as GitHub serves it: timestamps, groups, script echo, block, noise. */
export function renderJobLog(metadata: RunMetadata | null, options: JobLogOptions = {}): string {
  return renderJobSteps(metadata, options)
    .map((step) => step.text)
    .join("");
}

export interface ZipEntrySpec {
  name: string;
  data: Buffer;
}

/** A zip in memory, written as a stream (entries carry data descriptors, like GitHub's). */
export function buildZip(
  entries: ZipEntrySpec[],
  options: { compress?: boolean } = {},
): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const mtime = new Date("2025-10-01T12:00:00Z");
  for (const entry of entries)
    zip.addBuffer(entry.data, entry.name, { mtime, compress: options.compress ?? true });
  zip.end();
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    zip.outputStream.on("data", (part: Buffer) => parts.push(part));
    zip.outputStream.on("error", reject);
    zip.outputStream.on("end", () => resolve(Buffer.concat(parts)));
  });
}

/** GitHub cannot put a slash in a zip entry's file name part. */
function zipName(name: string): string {
  return name.replace(/[/\\:]/g, "_");
}

export interface FixtureRunSpec {
  id: number;
  metadata: RunMetadata | null;
  conclusion?: string | null;
  status?: string;
  branch?: string;
  createdAt?: string;
  /** Whether the run-log zip has per-step files besides the per-job ones. */
  stepFiles?: boolean;
  noiseBytes?: number;
  /** See JobLogOptions.uniqueNoise. */
  uniqueNoise?: boolean;
  repo?: string;
  workflow?: string;
  runAttempt?: number;
  crlf?: boolean;
  ansi?: boolean;
  artifacts?: FixtureArtifact[];
  /** Serve no run-log zip at all (GitHub answers 404 for logs it no longer has). */
  noRunLogZip?: boolean;
}

function fakeSha(seed: number): string {
  let hex = "";
  let value = seed >>> 0 || 1;
  while (hex.length < 40) {
    value = (Math.imul(value, 1103515245) + 12345) >>> 0;
    hex += value.toString(16).padStart(8, "0");
  }
  return hex.slice(0, 40);
}

/** A run of the build workflow: a small refs job, then the build job that prints the block. */
export async function makeFixtureRun(spec: FixtureRunSpec): Promise<FixtureRun> {
  const repo = spec.repo ?? DEFAULT_REPO;
  const workflow = spec.workflow ?? DEFAULT_WORKFLOW;
  const createdAt = spec.createdAt ?? "2025-10-01T11:55:00Z";
  const status = spec.status ?? "completed";
  const conclusion =
    spec.conclusion === undefined ? (status === "completed" ? "success" : null) : spec.conclusion;
  const platform = spec.metadata?.["Target platform"] ?? "linux/amd64";
  const buildJobName = `${BUILD_JOB_PREFIX} (${platform})`;
  const logOptions: JobLogOptions = { startedAt: createdAt };
  if (spec.noiseBytes !== undefined) logOptions.noiseBytes = spec.noiseBytes;
  if (spec.crlf !== undefined) logOptions.crlf = spec.crlf;
  if (spec.ansi !== undefined) logOptions.ansi = spec.ansi;
  if (spec.uniqueNoise) logOptions.uniqueNoise = true;

  const refsSteps: StepLog[] = [
    {
      name: "Set up job",
      text: `${createdAt.replace("Z", ".0000000Z")} Current runner version: '2.328.0'\n`,
    },
    {
      name: "Resolve refs",
      text: `${createdAt.replace("Z", ".1000000Z")} presto=main velox=main\n`,
    },
    {
      name: "Complete job",
      text: `${createdAt.replace("Z", ".2000000Z")} Cleaning up orphan processes\n`,
    },
  ];
  const buildSteps = renderJobSteps(spec.metadata, logOptions);
  const jobStatus = (steps: StepLog[]) => ({
    status,
    conclusion: status === "completed" ? (spec.metadata ? "success" : "failure") : null,
    steps: steps.map((step, index) => ({
      name: step.name,
      number: index + 1,
      status,
      conclusion: "success",
    })),
  });
  const jobs: Array<FixtureJob & { stepLogs: StepLog[] }> = [
    {
      id: spec.id * 10 + 1,
      name: "Resolve refs",
      ...jobStatus(refsSteps),
      conclusion: status === "completed" ? "success" : null,
      log: Buffer.from(refsSteps.map((s) => s.text).join("")),
      stepLogs: refsSteps,
    },
    {
      id: spec.id * 10 + 2,
      name: buildJobName,
      ...jobStatus(buildSteps),
      log: Buffer.from(buildSteps.map((s) => s.text).join("")),
      stepLogs: buildSteps,
    },
  ];

  let logsZip: Buffer | undefined;
  if (!spec.noRunLogZip) {
    const entries: ZipEntrySpec[] = [];
    jobs.forEach((job, index) => {
      entries.push({ name: `${index}_${zipName(job.name)}.txt`, data: job.log as Buffer });
      if (spec.stepFiles) {
        job.stepLogs.forEach((step, stepIndex) => {
          entries.push({
            name: `${zipName(job.name)}/${stepIndex + 1}_${zipName(step.name)}.txt`,
            data: Buffer.from(step.text),
          });
        });
      }
    });
    logsZip = await buildZip(entries);
  }

  const run: WorkflowRun = {
    id: spec.id,
    name: "Build Presto images",
    display_title: spec.metadata?.["Image tag"] ?? `Build Presto images #${spec.id}`,
    run_number: spec.id % 100000,
    event: "workflow_dispatch",
    status,
    conclusion,
    head_branch: spec.branch ?? "main",
    head_sha: fakeSha(spec.id),
    html_url: `https://github.com/${repo}/actions/runs/${spec.id}`,
    created_at: createdAt,
    updated_at: createdAt,
    run_started_at: createdAt,
    run_attempt: spec.runAttempt ?? 1,
  };
  const fixture: FixtureRun = {
    repo,
    workflow,
    run,
    jobs: jobs.map(({ stepLogs: _stepLogs, ...job }) => job),
  };
  if (logsZip) fixture.logsZip = logsZip;
  if (spec.artifacts) fixture.artifacts = spec.artifacts;
  return fixture;
}
