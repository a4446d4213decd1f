import { execFile } from "node:child_process";
import { createPrivateKey, randomUUID, sign, X509Certificate, type KeyObject } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** One entry of the `access` claim, in the form Distribution's token auth reads. */
export interface RegistryAccess {
  type: string;
  name: string;
  actions: string[];
}

export interface SigningKey {
  key: KeyObject;
  /** DER of the self-signed certificate: what goes into the token's `x5c` header. */
  certDer: Buffer;
  keyPath: string;
  /** PEM certificate: the registry's `rootcertbundle`. */
  certPath: string;
}

/**
 * A fresh RSA key with a self-signed certificate, written as PEM files under `dir`.
 * node:crypto cannot issue certificates, so openssl makes the pair.
 */
export async function makeSigningKey(dir: string): Promise<SigningKey> {
  await mkdir(dir, { recursive: true });
  const keyPath = join(dir, "signing-key.pem");
  const certPath = join(dir, "signing-cert.pem");
  await execFileAsync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-sha256",
    "-days",
    "7",
    "-subj",
    "/CN=gitlab-standin-registry-token",
    "-keyout",
    keyPath,
    "-out",
    certPath,
  ]);
  const [keyPem, certPem] = await Promise.all([readFile(keyPath), readFile(certPath)]);
  return {
    key: createPrivateKey(keyPem),
    certDer: new X509Certificate(certPem).raw,
    keyPath,
    certPath,
  };
}

export interface RegistryTokenRequest {
  key: KeyObject;
  certDer: Buffer;
  issuer: string;
  subject: string;
  audience: string;
  access: RegistryAccess[];
  ttlSeconds?: number;
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

/**
 * An RS256 JWT as GitLab's `/jwt/auth` issues it. Registry 2.8 finds the verification key
 * through the `x5c` chain, which it checks against its `rootcertbundle`.
 */
export function signRegistryToken(request: RegistryTokenRequest): string {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: "RS256", typ: "JWT", x5c: [request.certDer.toString("base64")] };
  const claims = {
    iss: request.issuer,
    sub: request.subject,
    aud: request.audience,
    // A little slack on nbf: the registry and the stand-in share a clock, but not a second boundary.
    nbf: now - 5,
    iat: now,
    exp: now + (request.ttlSeconds ?? 300),
    jti: randomUUID(),
    access: request.access,
  };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = sign("sha256", Buffer.from(signingInput), request.key);
  return `${signingInput}.${base64url(signature)}`;
}
