import { createHash } from "node:crypto";
import { DamagedInputError, REDOWNLOAD_HINT } from "../errors.js";

/** An image's config read again from its tarball, checked against the digest it was known by. */
export async function readImageConfig(
  label: string,
  configDigest: string,
  body: AsyncIterable<Buffer>,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  if (digest !== configDigest) {
    throw new DamagedInputError(`${label}: the image config changed since it was checked`, {
      hint: REDOWNLOAD_HINT,
    });
  }
  return bytes;
}
