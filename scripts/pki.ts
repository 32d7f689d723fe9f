/**
 * Certificates for the testbed, made by the `openssl` CLI (Debian's, installed by
 * `install-debian-packages.sh`): the clusters' CA and serving certificates, and test services'
 * signing keys. Node's crypto can sign but cannot issue X.509 certificates, hence the CLI.
 */
import { spawnSync } from "node:child_process";

/** Run `openssl <args>` in `cwd`; throws with openssl's own message when it fails. */
export function openssl(args: string[], cwd: string): void {
  const result = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`openssl ${args[0] ?? ""} failed: ${result.stderr}`);
}

/** What {@link makeCertificate} makes. */
export interface CertificateRequest {
  /** File of the new private key (relative to the directory, or absolute). */
  key: string;
  /** RSA-2048 (default) or ECDSA P-256, which is about a hundred times faster to make. */
  algorithm?: "rsa" | "ec";
  /** File of the certificate (PEM). */
  cert: string;
  /** Validity, in days. */
  days: number;
  /** Subject, e.g. `/CN=kube-apiserver`. */
  subject: string;
  /** Issuer's certificate and key files; self-signed when left out. */
  ca?: { cert: string; key: string };
  /** X.509 v3 extensions, each `name=value` (openssl `-addext`). */
  extensions?: string[];
}

/** A new key and an X.509 certificate for it, in `dir`. */
export function makeCertificate(dir: string, request: CertificateRequest): void {
  openssl(
    [
      "req",
      "-x509",
      "-newkey",
      ...(request.algorithm === "ec"
        ? ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        : ["rsa:2048"]),
      "-nodes",
      "-keyout",
      request.key,
      "-out",
      request.cert,
      "-days",
      String(request.days),
      ...(request.ca === undefined ? [] : ["-CA", request.ca.cert, "-CAkey", request.ca.key]),
      "-subj",
      request.subject,
      ...(request.extensions ?? []).flatMap((extension) => ["-addext", extension]),
    ],
    dir,
  );
}
