#!/usr/bin/env bash
# Installs the Debian packages the runtime and its tests use, once. Idempotent: when everything is
# present it only checks (well under a second). Needs root (or sudo) the first time.
set -euo pipefail
packages=(etcd-server qemu-system-x86 bubblewrap python3-seccomp python3-venv slirp4netns openssl busybox-static docker-registry skopeo umoci cpio zstd
  containerd runc containernetworking-plugins iptables conntrack socat iproute2 ipset gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "shardworks: installing Debian packages: ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "shardworks: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "shardworks: Debian packages ready" >&2
