/**
 * What a node changes outside its own directories, and how `down` puts it back: the kernel
 * tunables the kubelet sets machine-wide, the log symlinks it makes in `/var/log/containers`, the
 * device-plugin directory it insists on (`/var/lib/kubelet/device-plugins`, a compile-time
 * constant), CNI result caches under `/var/lib/cni`, containerd's shim socket directory.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

/** The sysctls the kubelet's container manager sets when it starts (setupKernelTunables). */
const KUBELET_SYSCTLS = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
] as const;

const SAVED = "/run/shardworks/host-sysctls.json";

/** Record the host's values before the first node of any cluster starts (once until restored). */
export async function saveHostSysctls(): Promise<void> {
  if (existsSync(SAVED)) return;
  const values = Object.fromEntries(
    KUBELET_SYSCTLS.filter((k) => existsSync(`/proc/sys/${k}`)).map((k) => [
      k,
      readFileSync(`/proc/sys/${k}`, "utf8").trim(),
    ]),
  );
  await mkdir("/run/shardworks", { recursive: true });
  await writeFile(SAVED, JSON.stringify(values, null, 2));
}

/** Put the saved values back (when the last node stops). */
export async function restoreHostSysctls(): Promise<void> {
  if (!existsSync(SAVED)) return;
  const values = z.record(z.string(), z.string()).parse(JSON.parse(readFileSync(SAVED, "utf8")));
  for (const [key, value] of Object.entries(values)) {
    await writeFile(`/proc/sys/${key}`, value);
  }
  await rm(SAVED);
  try {
    rmdirSync("/run/shardworks");
  } catch {
    // something else lives there
  }
}

function rmdirIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or not there
  }
}

/** Remove what one node left outside its directory (its log symlinks, its sandboxes' CNI caches). */
export function removeNodeLeftovers(podLogs: string, sandboxes: readonly string[]): void {
  const links = "/var/log/containers";
  if (existsSync(links)) {
    for (const entry of readdirSync(links)) {
      const path = join(links, entry);
      try {
        if (readlinkSync(path).startsWith(`${podLogs}/`)) rmSync(path);
      } catch {
        // not a symlink
      }
    }
  }
  for (const dir of ["/var/lib/cni/results", "/var/lib/cni/cache/results"]) {
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir)) {
      // `<network>-<sandbox id>-<interface>`
      if (sandboxes.some((id) => entry.includes(`-${id}-`)))
        rmSync(join(dir, entry), { force: true });
    }
  }
}

/** Remove the machine-wide directories nodes create, once no node is left to use them. */
export function removeSharedLeftovers(): void {
  const plugins = "/var/lib/kubelet/device-plugins";
  for (const file of ["kubelet.sock", "kubelet_internal_checkpoint"]) {
    rmSync(join(plugins, file), { force: true });
  }
  for (const dir of [
    plugins,
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni/cache/results",
    "/var/lib/cni/cache",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/run/containerd/s",
    "/run/containerd",
  ]) {
    rmdirIfEmpty(dir);
  }
}

/** Whether the network namespace of any other cluster's node exists. */
export function otherNodesRunning(ownNetns: string): boolean {
  if (!existsSync("/run/netns")) return false;
  return readdirSync("/run/netns").some((n) => n.startsWith("shardworks-") && n !== ownNetns);
}
