/**
 * The build's target platform (`Target platform: linux/arm64`) against the platform an image's
 * config records. An image is published under the architecture its build names (`arm/…`,
 * `x86/…`), so an image whose config says another one is not what the path promises: pushing it
 * would put an amd64 image under `arm/`, where a multi-architecture index then hands it to arm
 * hosts.
 */

/** The platform fields of an image config (OCI image spec: `os`, `architecture`, `variant`). */
export interface ConfigPlatform {
  os?: string | undefined;
  architecture?: string | undefined;
  variant?: string | undefined;
}

/**
 * Other names for the same architecture, as containerd's `platforms.Normalize` folds them
 * (`uname -m` spellings, Debian's arm ports): the variant they imply comes with them.
 */
const ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: "amd64" },
  "x86-64": { architecture: "amd64" },
  aarch64: { architecture: "arm64" },
  armhf: { architecture: "arm", variant: "v7" },
  armel: { architecture: "arm", variant: "v6" },
  i386: { architecture: "386" },
};

interface Normalized {
  os: string;
  architecture: string;
  variant: string | undefined;
}

function normalize(os: string, architecture: string, variant: string | undefined): Normalized {
  const arch = architecture.toLowerCase();
  const alias = ALIASES[arch];
  let v = (variant || alias?.variant)?.toLowerCase();
  // arm64 is v8 unless it says otherwise: `linux/arm64/v8` and `linux/arm64` are one platform.
  if ((alias?.architecture ?? arch) === "arm64" && v === "v8") v = undefined;
  return { os: os.toLowerCase(), architecture: alias?.architecture ?? arch, variant: v };
}

function spell(p: ConfigPlatform): string {
  return [p.os ?? "?", p.architecture ?? "?", p.variant].filter(Boolean).join("/");
}

/**
 * Why an image whose config records `config` is not an image of a build for `platform`
 * (`linux/arm64`, `linux/arm/v7`), in words naming both; `undefined` when it is, or when the
 * build names no platform to hold it to. The variant counts only where the platform names one.
 */
export function platformMismatch(
  config: ConfigPlatform,
  platform: string | undefined,
): string | undefined {
  const parts = (platform ?? "").trim().split("/");
  const [os, architecture, variant] = parts;
  if (!os || !architecture || parts.length > 3) return undefined;
  const want = normalize(os, architecture, variant);
  const found = normalize(config.os ?? "", config.architecture ?? "", config.variant);
  const fits =
    found.os === want.os &&
    found.architecture === want.architecture &&
    (want.variant === undefined || found.variant === want.variant);
  if (fits) return undefined;
  return `its config says ${visible(spell(config))} but the build's target platform is ${visible(platform?.trim() ?? "")}`;
}

// Letters from other scripts that read as Latin ones (Cyrillic а, Greek ο), fullwidth forms,
// invisible characters (zero-width space, soft hyphen) and controls: none belongs in a platform.
// Everything outside printable ASCII, so the ranges stay visible in review.
const ODD = new RegExp("[^\\u0020-\\u007e]", "gu");

/**
 * A warning when the build's platform holds characters a reader would take for others, or not
 * see at all: non-ASCII ones (look-alikes of Latin letters, fullwidth forms, zero-width
 * characters) and controls. Such a platform decides the image's path in GitLab while it
 * reads as another one. `undefined` for a plain ASCII platform.
 */
export function platformOddity(platform: string | undefined): string | undefined {
  const odd = [...new Set(platform?.match(ODD) ?? [])];
  if (odd.length === 0) return undefined;
  const points = odd.map((c) => `U+${codePoint(c).toUpperCase().padStart(4, "0")}`);
  return `the build's target platform '${visible(platform ?? "")}' holds non-ASCII or invisible characters (${points.join(", ")}): it reads as another platform than it is`;
}

/** Every character outside printable ASCII as a `\u{…}` escape: what it is, not what it looks like. */
function visible(text: string): string {
  return text.replace(ODD, (c) => `\\u{${codePoint(c)}}`);
}

const codePoint = (c: string): string => (c.codePointAt(0) ?? 0).toString(16);
