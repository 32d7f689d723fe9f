/**
 * A tiny OCI image for demos and tests, built locally from Debian's `busybox-static` with `umoci`
 * (nothing is downloaded). Returns an `oci:` reference the drivers accept.
 */
import { execFile } from "node:child_process";
import { mkdir, rm, symlink, copyFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Applets linked in the image's /bin (busybox dispatches on argv[0]). */
const APPLETS = [
  "sh",
  "echo",
  "cat",
  "sleep",
  "ls",
  "seq",
  "env",
  "true",
  "false",
  "date",
  "wc",
  "head",
];

/** Build `<dir>/layout` with tag `latest` from /bin/busybox; returns `oci:<dir>/layout:latest`. */
export async function buildBusyboxImage(dir: string, busybox = "/bin/busybox"): Promise<string> {
  const root = join(dir, "rootfs");
  const layout = join(dir, "layout");
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(root, "bin"), { recursive: true });
  await mkdir(join(root, "tmp"), { recursive: true });
  await copyFile(busybox, join(root, "bin", "busybox")).catch((error: unknown) => {
    throw new Error(`cannot read ${busybox}: install Debian's busybox-static`, { cause: error });
  });
  for (const applet of APPLETS) await symlink("busybox", join(root, "bin", applet));
  try {
    await run("umoci", ["init", "--layout", layout]);
    await run("umoci", ["new", "--image", `${layout}:latest`]);
    await run("umoci", ["insert", "--rootless", "--image", `${layout}:latest`, root, "/"]);
    await run("umoci", ["config", "--image", `${layout}:latest`, "--config.env", "PATH=/bin"]);
  } catch (error) {
    throw new Error(
      `building the busybox image with umoci failed (apt-get install umoci): ${(error as Error).message}`,
      { cause: error },
    );
  }
  await rm(root, { recursive: true, force: true });
  return `oci:${layout}:latest`;
}
