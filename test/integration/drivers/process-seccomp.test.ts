/**
 * The process driver's seccomp filter judges ioctl's request the way the kernel does: only its low
 * 32 bits (the kernel's `cmd` is an `unsigned int`). A filter comparing all 64 bits would let
 * `ioctl(fd, 0x100005412, …)` through, and the kernel would run it as TIOCSTI (0x5412), faking
 * terminal input into whoever holds the terminal. A real sandbox runs a static C program that
 * calls the raw syscall with the high bits set.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { sandboxSpecSchema } from "../../../contract/model";
import { createProcessDriver } from "../../../runtime/node-agent/drivers/process";
import { buildBusyboxImage, rawTar } from "../../helpers/images";

/** Calls ioctl(0, request, &c) for each request and prints the errno (0 = it ran). */
const PROGRAM = String.raw`
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
  const unsigned long requests[] = {0x5412UL, 0x100005412UL, 0xffffffff00005412UL, 0x5413UL};
  char c = 'x';
  for (unsigned i = 0; i < sizeof requests / sizeof requests[0]; i++) {
    long r = syscall(SYS_ioctl, 0, requests[i], &c);
    printf("ioctl 0x%lx errno=%d\n", requests[i], r == 0 ? 0 : errno);
  }
  return 0;
}
`;

const root = mkdtempSync(join(tmpdir(), "sw-process-seccomp-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

test("seccomp: ioctl TIOCSTI is refused with EPERM whatever the request's high 32 bits hold", async (t) => {
  writeFileSync(join(root, "tiocsti.c"), PROGRAM);
  execFileSync("gcc", ["-static", "-O2", "-o", join(root, "tiocsti"), join(root, "tiocsti.c")], {
    stdio: "pipe",
    timeout: 60_000,
  });
  const image = buildBusyboxImage(join(root, "layout"), {
    rawLayers: [
      rawTar([{ path: "bin/tiocsti", mode: 0o755, content: readFileSync(join(root, "tiocsti")) }]),
    ],
  });
  const driver = createProcessDriver({ imageStore: { cacheDir: join(root, "cache") } });
  t.teardown(() => driver.close());
  const workDir = mkdtempSync(join(root, "run-"));
  const logFile = join(workDir, "log");
  const sandbox = await driver.run({
    id: "seccomp",
    spec: sandboxSpecSchema.parse({ image, command: ["/bin/tiocsti"] }),
    workDir,
    logFile,
  });
  t.deepEqual(await sandbox.exit, { kind: "exited", code: 0 });
  const log = readFileSync(logFile, "utf8");
  // EPERM (1) is the filter's answer; without it the kernel reads 0x5412 and answers for fd 0.
  t.regex(log, /^ioctl 0x5412 errno=1$/m, log);
  t.regex(log, /^ioctl 0x100005412 errno=1$/m, "high bits set: still TIOCSTI, still refused");
  t.regex(log, /^ioctl 0xffffffff00005412 errno=1$/m);
  // Another ioctl (TIOCGWINSZ) reaches the kernel: the filter matches TIOCSTI only.
  t.regex(log, /^ioctl 0x5413 errno=(?!1$)\d+$/m);
});
