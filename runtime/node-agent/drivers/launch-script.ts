/**
 * The `sh` script a sandbox's launcher runs to become the user's command: environment (image
 * config, then spec), memory limit, working directory, then `exec` of the command. The one script
 * of every driver: each runs it with a busybox `sh` inside the sandbox (process, firecracker, and
 * the qemu guest agent).
 */
import type { SandboxSpec } from "../../../contract/model";
import type { ImageRuntimeConfig } from "../images";

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Single-quotes a string for `sh` (inside '…' only ' itself needs care). */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export interface LaunchScriptOptions {
  /** Lines run just before the command is exec'd (e.g. signalling "started" to the host). */
  readonly beforeExec?: readonly string[];
  /** Lines run first (e.g. setting a restored guest's clock). */
  readonly first?: readonly string[];
  /**
   * Cap the address space at the spec's memory (`ulimit -v`); default true. A VM's RAM is already
   * its limit, so VM drivers turn this off (it would only break runtimes that reserve address space).
   */
  readonly limitAddressSpace?: boolean;
}

/** Builds the launch script, or throws naming a spec field that cannot be honoured. */
export function launchScript(
  spec: SandboxSpec,
  image: ImageRuntimeConfig,
  options: LaunchScriptOptions = {},
): string {
  const env = new Map<string, string>();
  for (const entry of image.env) {
    const eq = entry.indexOf("=");
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  if (!env.has("PATH")) env.set("PATH", defaultPath);
  for (const [key, value] of Object.entries(spec.env)) {
    if (!envName.test(key)) {
      throw new Error(
        `spec.env.${key}: must be a shell variable name (letters, digits, '_', not starting with a digit); rename the variable`,
      );
    }
    env.set(key, value);
  }
  const lines: string[] = [...(options.first ?? [])];
  // Image env names that sh cannot export are skipped rather than failing every run of the image.
  for (const [key, value] of env)
    if (envName.test(key)) lines.push(`export ${key}=${shellQuote(value)}`);
  if (options.limitAddressSpace ?? true) lines.push(`ulimit -v ${spec.resources.memoryMiB * 1024}`);
  lines.push(`cd ${shellQuote(image.workingDir)} 2>/dev/null || cd /`);
  lines.push(...(options.beforeExec ?? []), "exec 2>&1");
  lines.push(`exec ${spec.command.map(shellQuote).join(" ")}`);
  return `${lines.join("\n")}\n`;
}
