import {
  DOCKER_CONFIG,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  OCI_CONFIG,
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

/**
 * A Docker schema 2 manifest, what `docker push` writes; an OCI one only when a layer is
 * zstd, which schema 2 cannot describe. Serialised like Docker's (three-space indent), and the
 * same inputs always give the same bytes, so a re-push leaves the manifest digest unchanged.
 */
export function imageManifest(
  config: Descriptor,
  layers: readonly LayerDescriptor[],
): { bytes: Buffer; mediaType: string } {
  const oci = layers.some((l) => l.mediaType === OCI_LAYER_ZSTD);
  const manifest = {
    schemaVersion: 2,
    mediaType: oci ? OCI_MANIFEST : DOCKER_MANIFEST,
    config: {
      mediaType: oci ? OCI_CONFIG : DOCKER_CONFIG,
      size: config.size,
      digest: config.digest,
    },
    layers: layers.map((l) => ({
      mediaType: oci && l.mediaType === DOCKER_LAYER_GZIP ? OCI_LAYER_GZIP : l.mediaType,
      size: l.size,
      digest: l.digest,
    })),
  };
  return { bytes: Buffer.from(JSON.stringify(manifest, null, 3)), mediaType: manifest.mediaType };
}
