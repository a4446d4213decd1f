/**
 * Generated GitHub Actions runs (SPEC §1.1-1.3): metadata, realistic job logs and run-log zips,
 * shaped like the real `presto-build-images.yml`: one job, "Build and package docker images",
 * with the workflow's own step list and script text. Nothing here is downloaded; large logs are
 * cheap because their noise repeats one chunk.
 */
import yazl from "yazl";
import type { RunMetadata } from "../../src/domain/metadata.js";
import type { WorkflowRun } from "../../src/github/runs.js";
import type { FixtureArtifact, FixtureJob, FixtureRun } from "./github-standin.js";

export const DEFAULT_REPO = "rapidsai/velox-testing";
export const DEFAULT_WORKFLOW = "presto-build-images.yml";
/** The workflow's `name:`; it has no `run-name`, so this is every run's display title too. */
export const WORKFLOW_NAME = "Presto Build Docker Images";
/** The workflow's one job. */
export const BUILD_JOB_NAME = "Build and package docker images";
export const METADATA_STEP_NAME = "Record build metadata";

export type Platform = "linux/amd64" | "linux/arm64";
export type BundleMode = "single" | "all" | "all_native";
/** The workflow's `worker_variant` choices; `native_cpu` is its default. */
export type WorkerVariant = "native_cpu" | "native_gpu" | "java";

/**
 * The workflow's cut of a ref: `echo "$REF" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_.-' '-'
 * | cut -c1-12`. `tr -c` turns echo's newline into a dash too, so a ref shorter than 12
 * characters keeps a trailing `-`: `main` → `main-`, `v1.2` → `v1.2-`.
 */
export function refPart(ref: string): string {
  const bytes = Buffer.from(`${ref}\n`, "utf8");
  let out = "";
  for (const byte of bytes) {
    const c = String.fromCharCode(byte).toLowerCase();
    out += /[a-z0-9_.-]/.test(c) && byte < 0x80 ? c : "-";
  }
  return out.slice(0, 12);
}

/** The workflow's own tag formula (SPEC §1.1). */
export function imageTagFor(prestoRef: string, veloxRef: string, platform: string): string {
  return `presto-${refPart(prestoRef)}-velox-${refPart(veloxRef)}-${platform.toLowerCase().replace(/\//g, "-")}`;
}

export interface MetadataSpec {
  prestoRef: string;
  veloxRef: string;
  platform: Platform | string;
  mode: BundleMode;
  /** Which worker a `single` build makes; `native_cpu` by default, as the workflow. */
  workerVariant?: WorkerVariant;
  prestoRepository?: string;
  veloxRepository?: string;
  generatedAt?: string;
  /** Printed only when given, as earlier revisions of the workflow did. */
  registryPush?: boolean;
}

/** The workflow's "Determine worker build plan": which images a mode and variant build. */
export function workerPlan(
  mode: BundleMode,
  variant: WorkerVariant = "native_cpu",
): { cpu: boolean; gpu: boolean; java: boolean } {
  if (mode === "all") return { cpu: true, gpu: true, java: true };
  if (mode === "all_native") return { cpu: true, gpu: true, java: false };
  return { cpu: variant === "native_cpu", gpu: variant === "native_gpu", java: variant === "java" };
}

export function makeMetadata(spec: MetadataSpec): RunMetadata {
  const plan = workerPlan(spec.mode, spec.workerVariant);
  const metadata: RunMetadata = {
    "Presto repository": spec.prestoRepository ?? "prestodb/presto",
    "Presto ref": spec.prestoRef,
    "Velox repository": spec.veloxRepository ?? "rapidsai/velox",
    "Velox ref": spec.veloxRef,
    "Target platform": spec.platform,
    "Worker bundle mode": spec.mode,
    "Build native CPU": String(plan.cpu),
    "Build native GPU": String(plan.gpu),
    "Build Java worker": String(plan.java),
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
  /** A step whose `if:` was false: listed by the jobs API, no log of its own. */
  skipped?: boolean;
  /** The step that failed the job. */
  failed?: boolean;
}

const ESC = "\u001b";
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

/** The variables the workflow's steps read, as their `env:` sections show them. */
const SCRIPT_VARIABLES: Record<string, string> = {
  "Presto repository": "PRESTO_REPOSITORY",
  "Presto ref": "PRESTO_REF",
  "Velox repository": "VELOX_REPOSITORY",
  "Velox ref": "VELOX_REF",
  "Target platform": "TARGET_PLATFORM",
  "Worker bundle mode": "WORKER_PLAN",
  "Build native CPU": "BUILD_NATIVE_CPU",
  "Build native GPU": "BUILD_NATIVE_GPU",
  "Build Java worker": "BUILD_JAVA",
  "Image tag": "IMAGE_TAG",
  "Registry push": "REGISTRY_PUSH_ENABLED",
};

/** "Prepare build metadata": the tag formula whose `cut -c1-12` leaves short refs a dash. */
const PREPARE_SCRIPT = [
  "set -euo pipefail",
  "sanitize() {",
  `  echo "\${1}" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_.-' '-' | cut -c1-12`,
  "}",
  `presto_short=$(sanitize "\${PRESTO_REF:-unknown}")`,
  `velox_short=$(sanitize "\${VELOX_REF:-unknown}")`,
  `platform_safe=$(echo "\${TARGET_PLATFORM:-unknown}" | tr '[:upper:]' '[:lower:]' | tr '/' '-')`,
  `image_tag="presto-\${presto_short}-velox-\${velox_short}-\${platform_safe}"`,
  `echo "IMAGE_TAG=\${image_tag}" >> "\${GITHUB_ENV}"`,
  `mkdir -p "\${ARTIFACT_DIR}"`,
];

const PLAN_SCRIPT = [
  "set -euo pipefail",
  'mode="${WORKER_BUNDLE_MODE:-single}"',
  "build_native_cpu=false",
  "build_native_gpu=false",
  "build_java=false",
  'case "${mode}" in',
  "  all) build_native_cpu=true; build_native_gpu=true; build_java=true ;;",
  "  all_native) build_native_cpu=true; build_native_gpu=true ;;",
  '  *) case "${WORKER_VARIANT:-native_cpu}" in',
  "       native_cpu) build_native_cpu=true ;;",
  "       native_gpu) build_native_gpu=true ;;",
  "       java) build_java=true ;;",
  "     esac ;;",
  "esac",
  'echo "BUILD_NATIVE_CPU=${build_native_cpu}" >> "${GITHUB_ENV}"',
  'echo "BUILD_NATIVE_GPU=${build_native_gpu}" >> "${GITHUB_ENV}"',
  'echo "BUILD_JAVA=${build_java}" >> "${GITHUB_ENV}"',
  'echo "WORKER_PLAN=${mode}" >> "${GITHUB_ENV}"',
];

/** "Record build metadata": the block, printed with printf and teed into the artifact. */
function recordScript(metadata: RunMetadata): string[] {
  const lines = ["set -euo pipefail", "{"];
  for (const key of Object.keys(metadata)) {
    if (key === "Generated at") {
      lines.push(`  printf "%-18s: %s\\n" "Generated at" "$(date -u +"%Y-%m-%dT%H:%M:%SZ")"`);
    } else {
      lines.push(`  printf "%-18s: %s\\n" "${key}" "\${${SCRIPT_VARIABLES[key] ?? "VALUE"}}"`);
    }
  }
  lines.push('} | tee "${ARTIFACT_DIR}/build-metadata.txt"');
  return lines;
}

function saveScript(repo: string, build: string[]): string[] {
  return [
    "set -euo pipefail",
    ...build,
    `echo "Saving image to \${ARTIFACT_DIR}/${repo}-\${IMAGE_TAG}.tar.gz (this may take several minutes)..."`,
    `time docker save ${repo}:\${IMAGE_TAG} | gzip -9 > "\${ARTIFACT_DIR}/${repo}-\${IMAGE_TAG}.tar.gz"`,
  ];
}

const COORDINATOR_BUILD = [
  "docker build --progress plain --platform ${TARGET_PLATFORM} \\",
  '  --file presto/docker/Dockerfile --build-arg PRESTO_VERSION="${PRESTO_REF}" \\',
  "  --tag presto-coordinator:${IMAGE_TAG} presto/docker",
  // The java worker is the coordinator image under a second name: same config, same layers.
  "docker tag presto-coordinator:${IMAGE_TAG} presto-java-worker:${IMAGE_TAG}",
];

function nativeBuild(gpu: boolean): string[] {
  const repo = gpu ? "presto-native-worker-gpu" : "presto-native-worker-cpu";
  return [
    "docker build --progress plain --platform ${TARGET_PLATFORM} \\",
    "  --file velox-testing/presto/docker/native_build.dockerfile \\",
    `  --build-arg GPU=${gpu ? "ON" : "OFF"} --build-arg BUILD_TYPE=release \\`,
    `  --tag ${repo}:\${IMAGE_TAG} .`,
  ];
}

/** Writes one step as GitHub logs it: the group with the echoed script and env, then output. */
class StepWriter {
  constructor(
    private readonly writer: LogWriter,
    private readonly ansi: boolean,
    private readonly env: Array<[string, string]>,
  ) {}

  /** `trailer`: more lines inside the group, after the env (what a parser must not take). */
  run(script: string[], extraEnv: Array<[string, string]> = [], trailer: string[] = []): void {
    const { writer } = this;
    writer.line(`##[group]Run ${script[0] ?? ""}`);
    for (const line of script) writer.line(this.ansi ? `${ESC}[36;1m${line}${ESC}[0m` : line);
    writer.line("shell: /usr/bin/bash --noprofile --norc -e -o pipefail {0}");
    writer.line("env:");
    for (const [key, value] of [...this.env, ...extraEnv]) writer.line(`  ${key}: ${value}`);
    for (const line of trailer) writer.line(line);
    writer.line("##[endgroup]");
  }

  uses(action: string, inputs: Record<string, string>): void {
    const { writer } = this;
    writer.line(`##[group]Run ${action}`);
    writer.line("with:");
    for (const [key, value] of Object.entries(inputs)) writer.line(`  ${key}: ${value}`);
    writer.line("##[endgroup]");
  }
}

/** The job-level env every step's group shows (what the block's values come from). */
function jobEnv(metadata: RunMetadata | null): Array<[string, string]> {
  return [
    ["PRESTO_REF", metadata?.["Presto ref"] ?? "master"],
    ["VELOX_REF", metadata?.["Velox ref"] ?? "main"],
    ["PRESTO_REPOSITORY", metadata?.["Presto repository"] ?? "prestodb/presto"],
    ["VELOX_REPOSITORY", metadata?.["Velox repository"] ?? "facebookincubator/velox"],
    ["TARGET_PLATFORM", metadata?.["Target platform"] ?? "linux/amd64"],
    ["WORKER_BUNDLE_MODE", metadata?.["Worker bundle mode"] ?? "single"],
    ["ARTIFACT_DIR", "/home/runner/work/velox-testing/velox-testing/artifacts"],
  ];
}

/**
 * The steps of the build job, each with its slice of the log (the zip's step files), in the
 * workflow's order. Steps whose `if:` is false for this build are listed but skipped. Without
 * metadata the run failed at the Presto checkout, before its block was printed.
 */
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
  const step = new StepWriter(writer, ansi, jobEnv(metadata));
  const steps: StepLog[] = [];
  const failed = metadata === null;
  const add = (name: string, text: string, skipped = false): void => {
    steps.push(skipped ? { name, text: "", skipped } : { name, text });
  };
  const plan = {
    cpu: metadata?.["Build native CPU"] === "true",
    gpu: metadata?.["Build native GPU"] === "true",
    java: metadata?.["Build Java worker"] === "true",
  };
  const native = plan.cpu || plan.gpu;

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

  step.uses("actions/checkout@v4", { path: "velox-testing", "fetch-depth": "0" });
  writer.line("Syncing repository: rapidsai/velox-testing");
  steps.push({ name: "Checkout velox-testing", text: writer.take() });

  step.uses("actions/checkout@v4", {
    repository: metadata?.["Presto repository"] ?? "prestodb/presto",
    ref: metadata?.["Presto ref"] ?? "master",
    path: "presto",
  });
  writer.line(`Syncing repository: ${metadata?.["Presto repository"] ?? "prestodb/presto"}`);
  const cloned = writer.take() + noiseOf(failed ? noise : before, 1);
  if (failed) {
    writer.line("##[error]The process '/usr/bin/git' failed with exit code 128");
    steps.push({ name: "Checkout Presto", text: cloned + writer.take(), failed: true });
    writer.line("Post job cleanup.");
    steps.push({ name: "Post Checkout velox-testing", text: writer.take() });
    writer.line("Cleaning up orphan processes");
    steps.push({ name: "Complete job", text: writer.take() });
    return steps;
  }
  steps.push({ name: "Checkout Presto", text: cloned });

  step.uses("actions/checkout@v4", {
    repository: metadata["Velox repository"] ?? "",
    path: "velox",
  });
  add("Checkout Velox", writer.take(), !native);

  step.run(['mkdir -p "${ARTIFACT_DIR}"']);
  add("Ensure artifact directory", writer.take());
  step.uses("docker/setup-qemu-action@v3", { platforms: "all" });
  add("Set up QEMU", writer.take());
  step.uses("docker/setup-buildx-action@v3", {});
  add("Set up Docker Buildx", writer.take());

  step.run(PREPARE_SCRIPT);
  add("Prepare build metadata", writer.take());
  step.run(PLAN_SCRIPT, [["WORKER_VARIANT", "native_cpu"]]);
  add("Determine worker build plan", writer.take());

  const metadataEnv = Object.entries(metadata).flatMap(([key, value]): Array<[string, string]> => {
    const variable = SCRIPT_VARIABLES[key];
    return variable && !jobEnv(metadata).some(([k]) => k === variable) ? [[variable, value]] : [];
  });
  // Looks like a value line but sits inside the group: an echo, never the answer.
  step.run(recordScript(metadata), metadataEnv, [
    "Image tag         : presto-from-the-script-echo",
  ]);
  for (const [key, value] of Object.entries(metadata))
    writer.line(`${key.padEnd(18, " ")}: ${value}`);
  add(METADATA_STEP_NAME, writer.take());

  step.run(["set -euo pipefail", "./fetch_centos_deps_image.sh"]);
  add("Fetch Presto dependency image", writer.take(), !native);
  add("Enable Velox backward compatibility flag", "", true);
  step.run(["set -euo pipefail", 'PRESTO_VERSION="${PRESTO_REF}" ./build_presto_java_package.sh']);
  add("Build Presto Java distribution", writer.take());

  step.run(saveScript("presto-coordinator", COORDINATOR_BUILD));
  const buildHead = writer.take();
  add("Build Presto coordinator image", buildHead + noiseOf(noise - before, 2));
  step.run(saveScript("presto-java-worker", []));
  add("Archive Java worker image", writer.take(), !plan.java);
  step.run(saveScript("presto-native-worker-cpu", nativeBuild(false)));
  add("Build Presto native CPU worker image", writer.take(), !plan.cpu);
  step.run(saveScript("presto-native-worker-gpu", nativeBuild(true)));
  add("Build Presto native GPU worker image", writer.take(), !plan.gpu);

  step.uses("actions/upload-artifact@v4", { name: "presto-images-${{ github.run_id }}" });
  writer.line("Artifact presto-images has been successfully uploaded!");
  add("Upload docker image artifacts", writer.take());
  for (const name of [
    "Post Set up Docker Buildx",
    ...(native ? ["Post Checkout Velox"] : []),
    "Post Checkout Presto",
    "Post Checkout velox-testing",
  ]) {
    writer.line("Post job cleanup.");
    add(name, writer.take());
  }
  writer.line("Cleaning up orphan processes");
  add("Complete job", writer.take());
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

/**
 * A run of the build workflow: its one job, "Build and package docker images", prints the block
 * in its "Record build metadata" step. The workflow has no `run-name`, so the run's display title
 * is the workflow's name, whatever it built.
 */
export async function makeFixtureRun(spec: FixtureRunSpec): Promise<FixtureRun> {
  const repo = spec.repo ?? DEFAULT_REPO;
  const workflow = spec.workflow ?? DEFAULT_WORKFLOW;
  const createdAt = spec.createdAt ?? "2025-10-01T11:55:00Z";
  const status = spec.status ?? "completed";
  const conclusion =
    spec.conclusion === undefined ? (status === "completed" ? "success" : null) : spec.conclusion;
  const logOptions: JobLogOptions = { startedAt: createdAt };
  if (spec.noiseBytes !== undefined) logOptions.noiseBytes = spec.noiseBytes;
  if (spec.crlf !== undefined) logOptions.crlf = spec.crlf;
  if (spec.ansi !== undefined) logOptions.ansi = spec.ansi;
  if (spec.uniqueNoise) logOptions.uniqueNoise = true;

  const buildSteps = renderJobSteps(spec.metadata, logOptions);
  const completed = status === "completed";
  const jobs: Array<FixtureJob & { stepLogs: StepLog[] }> = [
    {
      // Job ids are GitHub's own numbers, unrelated to the run's; this keeps them distinct.
      id: spec.id * 10 + 2,
      name: BUILD_JOB_NAME,
      status,
      conclusion: completed ? (spec.metadata ? "success" : "failure") : null,
      steps: buildSteps.map((step, index) => ({
        name: step.name,
        number: index + 1,
        status,
        conclusion: !completed
          ? null
          : step.skipped
            ? "skipped"
            : step.failed
              ? "failure"
              : "success",
      })),
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
          // A skipped step has no log, so no file of its own.
          if (step.skipped) return;
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
    name: WORKFLOW_NAME,
    display_title: WORKFLOW_NAME,
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
