import {
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  OCI_CONFIG,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD,
  OCI_MANIFEST,
} from "./media-types.js";

/** A blob as a manifest names it. */
export interface Descriptor {
  digest: string;
  size: number;
}

export interface LayerDescriptor extends Descriptor {
  mediaType: string;
}

/** Docker's layer types and their OCI twins: the same bytes under the other spec's name. */
const OCI_LAYER_OF: Record<string, string> = {
  [DOCKER_LAYER_GZIP]: OCI_LAYER_GZIP,
  [DOCKER_LAYER]: OCI_LAYER,
};

/**
 * A Docker schema 2 manifest, what `docker push` writes; an OCI one when it carries annotations
 * (schema 2 has no field for them) or a layer is zstd, which schema 2 cannot describe. Serialised
 * like Docker's (three-space indent), annotations sorted by key, so the same inputs always give
 * the same bytes and a re-push leaves the manifest digest unchanged.
 */
export function imageManifest(
  config: Descriptor,
  layers: readonly LayerDescriptor[],
  annotations: Readonly<Record<string, string>> = {},
): { bytes: Buffer; mediaType: string } {
  const keys = Object.keys(annotations).sort();
  const oci = keys.length > 0 || layers.some((l) => l.mediaType === OCI_LAYER_ZSTD);
  const manifest = {
    schemaVersion: 2,
    mediaType: oci ? OCI_MANIFEST : DOCKER_MANIFEST,
    config: {
      mediaType: oci ? OCI_CONFIG : DOCKER_CONFIG,
      size: config.size,
      digest: config.digest,
    },
    layers: layers.map((l) => ({
      mediaType: oci ? (OCI_LAYER_OF[l.mediaType] ?? l.mediaType) : l.mediaType,
      size: l.size,
      digest: l.digest,
    })),
    ...(keys.length > 0
      ? { annotations: Object.fromEntries(keys.map((k) => [k, annotations[k] as string])) }
      : {}),
  };
  return { bytes: Buffer.from(JSON.stringify(manifest, null, 3)), mediaType: manifest.mediaType };
}
