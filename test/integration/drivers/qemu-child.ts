/**
 * A stand-in node agent for the "QEMU dies with its agent" test: runs one long sandbox with the
 * qemu driver and waits to be killed. argv: rootfs dir, digest, cache dir, work dir.
 */
import { join } from "node:path";
import { sandboxSpecSchema } from "../../../contract/model";
import { QemuDriver } from "../../../runtime/node-agent/drivers/qemu";

async function main(): Promise<void> {
  const [rootfs, digest, cacheDir, workDir] = process.argv.slice(2);
  if (!rootfs || !digest || !cacheDir || !workDir)
    throw new Error("usage: rootfs digest cacheDir workDir");
  const driver = new QemuDriver({
    images: { resolve: () => Promise.resolve({ digest, rootfs }) },
    cacheDir,
  });
  await driver.run({
    id: "orphan",
    workDir,
    logFile: join(workDir, "log"),
    spec: sandboxSpecSchema.parse({ image: "oci:/test/busybox", command: ["sleep", "600"] }),
  });
  // The driver logs the QEMU pid ("qemu sandbox started"); then this process waits to be killed.
  setInterval(() => undefined, 60_000);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
