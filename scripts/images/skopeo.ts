/** skopeo's flags for a push target (TLS, credentials) and the registry lookup of a cache hit. */
import { run } from "./command";
import type { pushTargetSchema } from "./spec";
import type { z } from "zod";

export function skopeoDestFlags(
  target: z.output<typeof pushTargetSchema>,
  local: boolean,
): string[] {
  const flags = [`--dest-tls-verify=${String(target.tlsVerify ?? !local)}`];
  if (target.creds !== undefined) flags.push("--dest-creds", target.creds);
  if (target.authfile !== undefined) flags.push("--dest-authfile", target.authfile);
  if (target.certDir !== undefined) flags.push("--dest-cert-dir", target.certDir);
  return flags;
}

export function skopeoSourceFlags(
  target: z.output<typeof pushTargetSchema>,
  local: boolean,
): string[] {
  const flags = [`--tls-verify=${String(target.tlsVerify ?? !local)}`];
  if (target.creds !== undefined) flags.push("--creds", target.creds);
  if (target.authfile !== undefined) flags.push("--authfile", target.authfile);
  if (target.certDir !== undefined) flags.push("--cert-dir", target.certDir);
  return flags;
}

/** Whether the registry serves `repo@digest` (a cache hit is only trusted when it does). */
export async function remoteHas(
  repo: string,
  digest: string,
  flags: readonly string[],
): Promise<boolean> {
  try {
    await run("skopeo", ["inspect", "--raw", ...flags, `docker://${repo}@${digest}`]);
    return true;
  } catch {
    return false;
  }
}
