/** What every benchmark case gets: sizes, run count, scratch space and the shared data. */
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import type { Dockerd } from "../test/testbed/dockerd.js";
import { startTestbed, type Testbed } from "../test/testbed/index.js";
import { addRunServing } from "../test/testbed/artifacts.js";
import { GiB, MiB, ours, shell } from "./harness.js";
import {
  downloadedDir,
  imageArtifact,
  linkCopy,
  type ArtifactParams,
  type ImageArtifact,
} from "./data.js";

export interface Sizes {
  /** B2, B3, B4, B6: about 2 GiB of artifact. */
  big: ArtifactParams;
  /** B10: the next build after `big`: the same base, other own layers. */
  big2: ArtifactParams;
  /** B5: the Docker engine on vfs copies every layer, so a smaller set. */
  small: ArtifactParams;
  /** B9: one large incompressible layer (random bytes, as jars and binaries are). */
  resume: ArtifactParams;
  /** B1: build-log noise per run, sized so that the run-log zip is about 20 MiB. */
  logNoiseBytes: number;
}

const FULL: Sizes = {
  big: { baseBytes: 1 * GiB, ownBytes: 160 * MiB, textShare: 0.6 },
  big2: { baseBytes: 1 * GiB, ownBytes: 160 * MiB, textShare: 0.6, layerSeed: 100 },
  small: { baseBytes: 256 * MiB, ownBytes: 32 * MiB, textShare: 0.6 },
  resume: { baseBytes: 1 * GiB, ownBytes: 1 * MiB, textShare: 0 },
  logNoiseBytes: 28 * MiB,
};

const QUICK: Sizes = {
  big: { baseBytes: 32 * MiB, ownBytes: 8 * MiB, textShare: 0.6 },
  big2: { baseBytes: 32 * MiB, ownBytes: 8 * MiB, textShare: 0.6, layerSeed: 100 },
  small: { baseBytes: 16 * MiB, ownBytes: 4 * MiB, textShare: 0.6 },
  resume: { baseBytes: 192 * MiB, ownBytes: 1 * MiB, textShare: 0 },
  logNoiseBytes: 1 * MiB,
};

export type ArtifactLabel = "big" | "big2" | "small" | "resume";
const RUN_IDS: Record<ArtifactLabel, number> = { big: 9001, small: 9002, resume: 9003, big2: 9004 };

export class BenchContext {
  readonly sizes: Sizes;
  readonly runs: number;
  private readonly artifacts = new Map<string, Promise<ImageArtifact>>();
  private readonly prepared = new Map<string, Promise<string>>();
  dockerd: Dockerd | undefined;
  /** Why there is no Docker engine, when there is none. */
  dockerdMissing: string | undefined;

  constructor(
    readonly quick: boolean,
    /** Scratch for this invocation; emptied at the start. */
    readonly root: string,
    /** Generated data kept between invocations. */
    readonly cacheDir: string,
  ) {
    this.sizes = quick ? QUICK : FULL;
    this.runs = quick ? 3 : 5;
  }

  log(text: string): void {
    process.stdout.write(`[bench] ${text}\n`);
  }

  /** A fresh scratch directory under the root. */
  async scratch(name: string): Promise<string> {
    const dir = path.join(this.root, name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    return dir;
  }

  artifact(label: ArtifactLabel): Promise<ImageArtifact> {
    let made = this.artifacts.get(label);
    if (!made) {
      made = imageArtifact(this.cacheDir, label, RUN_IDS[label], this.sizes[label], (t) =>
        this.log(t),
      );
      this.artifacts.set(label, made);
    }
    return made;
  }

  /** A downloads directory holding the artifact prepared by our `prepare` (made once). */
  preparedDir(label: ArtifactLabel): Promise<string> {
    let made = this.prepared.get(label);
    if (!made) {
      made = (async () => {
        const artifact = await this.artifact(label);
        const dir = await this.scratch(`prepared-${label}`);
        await downloadedDir(dir, artifact);
        await ours(["prepare", artifact.imageTag, "--downloads-dir", dir], { scratch: this.root });
        return dir;
      })();
      this.prepared.set(label, made);
    }
    return made;
  }

  /** A copy of the prepared downloads directory with no state (no layer cache) of its own. */
  async freshPrepared(label: ArtifactLabel, name: string): Promise<string> {
    const dir = path.join(this.root, name);
    await linkCopy(await this.preparedDir(label), dir);
    await rm(path.join(dir, ".state"), { recursive: true, force: true });
    return dir;
  }

  /**
   * A testbed of its own (a fresh registry with empty storage) serving the artifact's run, for
   * `fn`; removed afterwards, registry storage included.
   */
  async withTestbed<T>(
    name: string,
    artifact: ImageArtifact | undefined,
    fn: (tb: Testbed) => Promise<T>,
  ): Promise<T> {
    const dir = await this.scratch(name);
    const tb = await startTestbed({ dir });
    try {
      if (artifact) {
        const { runId: id, metadata, createdAt } = artifact;
        await addRunServing(tb.github, { id, metadata, createdAt }, artifact.fixture);
      }
      return await fn(tb);
    } finally {
      await tb.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** Flushes dirty pages between runs, so one run's writes are not paid for by the next. */
export async function settle(scratch: string): Promise<void> {
  await shell("sync", { scratch });
}
