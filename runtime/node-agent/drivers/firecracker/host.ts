/** What Firecracker needs of a host (its binaries, KVM, a guest kernel), checked without booting. */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import type { FirecrackerDriverOptions } from "./driver";

/** Finds an executable on PATH (or checks an absolute path). */
export function findExecutable(name: string): string | undefined {
  const candidates = name.includes("/")
    ? [name]
    : (process.env.PATH ?? "").split(delimiter).map((d) => join(d, name));
  return candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  });
}

/** Why Firecracker cannot run on this host, or an empty list if it can (as far as can be seen without booting). */
export function firecrackerAbsence(options: FirecrackerDriverOptions = {}): string[] {
  const reasons: string[] = [];
  const binary = options.firecrackerPath ?? "firecracker";
  if (!findExecutable(binary))
    reasons.push(
      `no "${binary}" binary (Firecracker is not installed; Debian does not package it)`,
    );
  if (options.jailer && !findExecutable(options.jailer.path ?? "jailer"))
    reasons.push(`no "${options.jailer.path ?? "jailer"}" binary`);
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    reasons.push("/dev/kvm is absent or not accessible (Firecracker needs KVM)");
  }
  if (!options.kernelPath)
    reasons.push("no guest kernel configured (options.kernelPath, an uncompressed vmlinux)");
  else if (!existsSync(options.kernelPath))
    reasons.push(`guest kernel ${options.kernelPath} does not exist`);
  return reasons;
}
