import { formatBytes } from "../util/bytes.js";

/** What one image's push moved, in the words of its `pushed …` line: the same for every sink. */
export interface PushedItem {
  digest: string;
  /** What moved, for a person: "2 layers sent, 3 reused, 812.4 MiB uploaded, in 41.2 s". */
  summary: string;
  layersSent: number;
  /** Layers the registry had already, or mounted from a sibling repository. */
  layersReused: number;
  /** Of those, layers found through what the registry taught (registry/layer-learning.ts). */
  layersLearned: number;
  /** Compressed bytes sent, where the sink knows (the Docker engine does not say). */
  bytesUploaded: number;
}

export interface Moved {
  sent: number;
  reused: number;
  bytes: number;
  bytesKind: "compressed" | "uncompressed";
  seconds: number;
  /** Reused layers known only from the registry's own record of its images. */
  learned?: number;
}

export function pushedItem(digest: string, moved: Moved): PushedItem {
  const layers = `${moved.sent} layer${moved.sent === 1 ? "" : "s"} sent`;
  const learned = moved.learned ? ` (${moved.learned} known from the registry's images)` : "";
  // The registry sink counts what went over the wire (configs too); the Docker engine only the
  // layers' own bytes, before it compresses them.
  const moves =
    moved.bytesKind === "uncompressed"
      ? `${layers} (${formatBytes(moved.bytes)} before compression), ${moved.reused} reused`
      : `${layers}, ${moved.reused} reused${learned}, ${formatBytes(moved.bytes)} uploaded`;
  return {
    digest,
    summary: `${moves}, in ${(Math.round(moved.seconds * 10) / 10).toFixed(1)} s`,
    layersSent: moved.sent,
    layersReused: moved.reused,
    layersLearned: moved.learned ?? 0,
    // Only compressed bytes are bytes on the wire; the Docker engine does not tell those.
    bytesUploaded: moved.bytesKind === "compressed" ? moved.bytes : 0,
  };
}
