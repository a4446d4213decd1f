/** The manifest and blob media types this tool reads and writes (Docker schema 2 and OCI). */
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";

export const DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json";
export const DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar";
export const DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
export const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";
export const OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
export const OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd";

/** Everything `retag` can copy: single-platform manifests and multi-platform lists. */
export const ANY_MANIFEST = [DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX];

/** One image's manifest (not a list): what an index entry points at. */
export const IMAGE_MANIFESTS = [OCI_MANIFEST, DOCKER_MANIFEST];

export function isManifestList(mediaType: string): boolean {
  return mediaType === DOCKER_MANIFEST_LIST || mediaType === OCI_INDEX;
}

/** `sha256:0123456789ab…`: enough to recognise a blob in a log line without drowning it. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return digest.length > colon + 13 ? `${digest.slice(0, colon + 13)}…` : digest;
}
