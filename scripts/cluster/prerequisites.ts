/** The host programs a cluster needs, checked up front so a missing one is named with its fix. */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CNI_BIN_DIR } from "./node-config";

/** Program → Debian package (all listed in `scripts/install-debian-packages.sh`). */
const PROGRAMS: Record<string, string> = {
  etcd: "etcd-server",
  openssl: "openssl",
  containerd: "containerd",
  ctr: "containerd",
  runc: "runc",
  socat: "socat",
  iptables: "iptables",
  "iptables-restore": "iptables",
  conntrack: "conntrack",
  ip: "iproute2",
  nsenter: "util-linux",
  umount: "mount",
};

const CNI_PLUGINS = ["bridge", "host-local", "loopback", "portmap"];

/** Throws one message naming every missing program, its package and the command to run. */
export function checkHostTools(): void {
  const missing: string[] = [];
  for (const [program, pkg] of Object.entries(PROGRAMS)) {
    if (process.env.SHARDWORKS_ETCD !== undefined && program === "etcd") continue;
    if (spawnSync("sh", ["-c", `command -v ${program}`]).status !== 0) {
      missing.push(`${program} (${pkg})`);
    }
  }
  for (const plugin of CNI_PLUGINS) {
    if (!existsSync(join(CNI_BIN_DIR, plugin))) {
      missing.push(`${join(CNI_BIN_DIR, plugin)} (containernetworking-plugins)`);
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `missing on this machine: ${missing.join(", ")}; run \`bash scripts/install-debian-packages.sh\``,
    );
  }
  if (process.getuid?.() !== 0) {
    throw new Error("a cluster with a node needs root (network namespaces, cgroups, mounts)");
  }
}
