/**
 * Pulls an image back from a registry and runs it the way a container runtime would, without
 * one: skopeo copies it into a temp OCI layout, umoci unpacks the rootfs, bubblewrap runs the
 * image's entrypoint as PID 1 of a new PID namespace, with the image's user and env, the root
 * read-only. Used by the image tests; the real kubelet path is covered by the cluster tests.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";

/** An unpacked image (umoci bundle): its rootfs, with the runtime spec beside it. */
export interface Unpacked {
  readonly rootfs: string;
  /** Removes the unpacked files. */
  readonly remove: () => void;
}

/** Pulls `ref` (`host/name@sha256:…`, plain HTTP) and unpacks it into a temp directory. */
export function pullAndUnpack(ref: string): Unpacked {
  const dir = mkdtempSync(join(tmpdir(), "sw-oci-run-"));
  try {
    const layout = join(dir, "layout");
    execFileSync("skopeo", [
      "copy",
      "--quiet",
      "--src-tls-verify=false",
      `docker://${ref}`,
      `oci:${layout}:pulled`,
    ]);
    const bundle = join(dir, "bundle");
    execFileSync("umoci", ["unpack", "--image", `${layout}:pulled`, bundle], { stdio: "ignore" });
    const rootfs = join(bundle, "rootfs");
    // Mount points, as runc would create them.
    for (const d of ["proc", "dev"]) mkdirSync(join(rootfs, d), { recursive: true });
    return { rootfs, remove: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The OCI runtime-spec config umoci writes beside the rootfs (`process.user/env/args/cwd`). */
const runtimeSpecSchema = z.object({
  process: z.object({
    user: z.object({ uid: z.number(), gid: z.number() }),
    args: z.array(z.string()),
    env: z.array(z.string()),
    cwd: z.string(),
  }),
});

/** Reads the runtime spec of an unpacked bundle (what runc would run). */
export function runtimeSpecOf(unpacked: Unpacked): z.output<typeof runtimeSpecSchema>["process"] {
  return runtimeSpecSchema.parse(
    JSON.parse(readFileSync(join(unpacked.rootfs, "..", "config.json"), "utf8")) as unknown,
  ).process;
}

/**
 * Runs the unpacked image's process (or `args` instead) under bwrap as PID 1 of a new PID and
 * user namespace, with the image's uid/gid, env (plus `env`) and working directory, root
 * read-only, on the host's network (tests bind loopback ports).
 */
export function runUnpacked(
  unpacked: Unpacked,
  options: { env?: Record<string, string>; args?: readonly string[] } = {},
): ChildProcess {
  const spec = runtimeSpecOf(unpacked);
  const env = [...spec.env, ...Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`)];
  const bwrapArgs = [
    "--unshare-pid",
    "--unshare-user",
    "--uid",
    String(spec.user.uid),
    "--gid",
    String(spec.user.gid),
    "--as-pid-1",
    "--die-with-parent",
    "--ro-bind",
    unpacked.rootfs,
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--chdir",
    spec.cwd,
    "--clearenv",
    ...env.flatMap((e) => {
      const i = e.indexOf("=");
      return ["--setenv", e.slice(0, i), e.slice(i + 1)];
    }),
    ...(options.args ?? spec.args),
  ];
  return spawn("bwrap", bwrapArgs, { stdio: ["ignore", "pipe", "pipe"] });
}

/** The host pid of the process that is PID 1 in `bwrap`'s new PID namespace (its child). */
export async function pidOneOf(bwrap: ChildProcess): Promise<number> {
  for (let i = 0; i < 200; i++) {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const status = readFileSync(`/proc/${entry}/status`, "utf8");
        if (
          new RegExp(`^PPid:\\s+${String(bwrap.pid)}$`, "m").test(status) &&
          /^NSpid:\s+\d+\s+1$/m.test(status)
        ) {
          return Number(entry);
        }
      } catch {
        // exited while we looked
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("no PID 1 appeared under bwrap");
}

/** Resolves with the exit code (or 128+signal) of `child`, once its output is drained. */
export function exitOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    // "close", not "exit": "exit" can come before the child's stdout is drained, and a caller
    // collecting the output would then read it short (seen on a loaded machine).
    const drained = [child.stdout, child.stderr].every((s) => s === null || s.destroyed);
    if (child.exitCode !== null && drained) return resolve(child.exitCode);
    child.once("close", (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : 15)));
  });
}
