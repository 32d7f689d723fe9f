/**
 * "Distroless from host files": the base of every testbed image is the host's own binaries and
 * exactly the shared libraries `ldd` lists for them, at the same paths, plus a few `/etc` files.
 * No package manager, no shell unless an image asks for busybox. See docs/adr/0010.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { LayerEntry } from "./build";
import { imagesCacheDir } from "./build";

/**
 * The shared objects `binary` loads, as `ldd` resolves them (the ELF interpreter included), or
 * none for a static binary.
 */
export function sharedLibrariesOf(binary: string): string[] {
  const result = spawnSync("ldd", [binary], { encoding: "utf8" });
  const output = `${result.stdout}${result.stderr}`;
  if (/not a dynamic executable|statically linked/.test(output)) return [];
  if (result.status !== 0) throw new Error(`ldd ${binary} failed:\n${output.trim()}`);
  const libraries = new Set<string>();
  for (const line of output.split("\n")) {
    const missing = /^\s*(\S+) => not found/.exec(line);
    if (missing !== null)
      throw new Error(`${binary} needs ${missing[1] ?? "?"}, which ldd cannot find`);
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
    const path = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
    if (path !== undefined) libraries.add(path);
  }
  return [...libraries].sort();
}

/**
 * Layer entries for a host binary at `dest` plus its shared libraries at the paths the loader
 * looks them up under (symlinks followed, so the image holds the files themselves).
 */
export function hostBinaryEntries(binary: string, dest: string): LayerEntry[] {
  const entries: LayerEntry[] = [
    { type: "file", path: dest, from: realpathSync(binary), mode: 0o755 },
  ];
  for (const library of sharedLibrariesOf(binary)) {
    entries.push({ type: "file", path: library, from: realpathSync(library), mode: 0o755 });
  }
  return entries;
}

/** The one user images run as (distroless' `nonroot`): uid and gid 65532. */
export const NONROOT = { name: "nonroot", uid: 65532, gid: 65532 } as const;

/**
 * The `/etc` a glibc program expects: passwd/group (root, nonroot and any extra users), hosts
 * resolution through files then DNS (the kubelet mounts /etc/hosts and /etc/resolv.conf), the
 * host's CA bundle, and a world-writable sticky /tmp.
 */
export function baseEtcEntries(
  users: readonly { name: string; uid: number; gid: number }[] = [],
): LayerEntry[] {
  const all = [{ name: "root", uid: 0, gid: 0 }, NONROOT, ...users];
  const home = (u: { name: string; uid: number }) => (u.uid === 0 ? "/root" : "/home/nonexistent");
  const entries: LayerEntry[] = [
    {
      type: "content",
      path: "/etc/passwd",
      content: all
        .map((u) => `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${home(u)}:/sbin/nologin\n`)
        .join(""),
    },
    {
      type: "content",
      path: "/etc/group",
      content: all.map((u) => `${u.name}:x:${u.gid}:\n`).join(""),
    },
    {
      type: "content",
      path: "/etc/nsswitch.conf",
      content: "hosts: files dns\npasswd: files\ngroup: files\n",
    },
    { type: "dir", path: "/tmp", mode: 0o1777 },
    { type: "dir", path: "/root", mode: 0o700 },
  ];
  const bundle = "/etc/ssl/certs/ca-certificates.crt";
  if (existsSync(bundle)) entries.push({ type: "file", path: bundle, from: bundle, mode: 0o644 });
  return entries;
}

/** Source of the testbed's static PID 1 (pause, or a signal-forwarding, reaping init). */
export const initSource = join(__dirname, "init.c");

/**
 * The static init binary, compiled with `gcc -static` on first use and cached by the source's
 * hash (the same source and compiler give the same bytes, so image digests stay stable).
 */
export function ensureInitBinary(): string {
  const source = readFileSync(initSource);
  const gcc = spawnSync("gcc", ["--version"], { encoding: "utf8" });
  if (gcc.status !== 0) throw new Error("gcc is missing; install Debian's gcc (build-essential)");
  const key = createHash("sha256")
    .update(source)
    .update(gcc.stdout.split("\n")[0] ?? "")
    .digest("hex")
    .slice(0, 16);
  const dir = join(imagesCacheDir(), "bin");
  const binary = join(dir, `init-${key}`);
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  const partial = `${binary}.${process.pid}`;
  execFileSync("gcc", ["-static", "-Os", "-s", "-Wall", "-Werror", "-o", partial, initSource], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  renameSync(partial, binary);
  return binary;
}
