/** The process (bubblewrap) driver: the shared conformance suite plus what is specific to it. */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { freePort } from "../../../runtime/lib/ports";
import { Driver, sandboxSpecSchema } from "../../../runtime/lib/model";
import {
  createProcessDriver,
  type ProcessDriver,
} from "../../../runtime/node-agent/drivers/process";
import { buildBusyboxImage } from "../../helpers/images";
import { driverConformance } from "./conformance";

driverConformance(Driver.Process, ({ imageCacheDir }) =>
  createProcessDriver({ imageStore: { cacheDir: imageCacheDir } }),
);

const root = mkdtempSync(join(tmpdir(), "sw-process-driver-"));
const image = buildBusyboxImage(join(root, "layout"));
let driver: ProcessDriver;
test.before(() => {
  driver = createProcessDriver({ imageStore: { cacheDir: join(root, "cache") } });
});
test.after.always(async () => {
  await driver.close();
  rmSync(root, { recursive: true, force: true });
});

async function run(command: string[], extra: Record<string, unknown> = {}) {
  const workDir = mkdtempSync(join(root, "run-"));
  const logFile = join(workDir, "log");
  const sandbox = await driver.run({
    id: "p",
    spec: sandboxSpecSchema.parse({ image, command, ...extra }),
    workDir,
    logFile,
  });
  return { sandbox, logFile };
}

test.serial(
  "process: the memory limit is enforced (address space = resources.memoryMiB)",
  async (t) => {
    const small = await run(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], {
      resources: { cpuMillis: 100, memoryMiB: 16 },
    });
    const exit = await small.sandbox.exit;
    t.true(exit.kind === "exited" && exit.code !== 0, "a 64 MiB buffer does not fit in 16 MiB");
    const roomy = await run(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], {
      resources: { cpuMillis: 100, memoryMiB: 256 },
    });
    t.deepEqual(await roomy.sandbox.exit, { kind: "exited", code: 0 }, "it fits in 256 MiB");
  },
);

test.serial(
  "process: ports need network: true and are then reachable on the host loopback",
  async (t) => {
    const port = await freePort();
    await t.throwsAsync(run(["true"], { ports: [port] }), {
      message: /spec.ports needs spec.network: true/,
    });
    const { sandbox } = await run(["httpd", "-f", "-p", `127.0.0.1:${port}`, "-h", "/etc"], {
      ports: [port],
      network: true,
    });
    t.teardown(() => sandbox.stop());
    t.is(
      sandbox.start,
      "cold",
      "sandboxes with network are not served from the (network-less) warm pool",
    );
    t.deepEqual(sandbox.endpoints, { [String(port)]: `127.0.0.1:${port}` });
    let body = "";
    for (let attempt = 0; attempt < 50 && !body; attempt += 1) {
      body = await fetch(`http://${sandbox.endpoints[String(port)]}/image-marker`).then(
        (r) => r.text(),
        () => "",
      );
      if (!body) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.regex(body, /busybox test image/);
  },
);

test.serial(
  "process: a command that does not exist exits 127 with a message in the log",
  async (t) => {
    const { sandbox, logFile } = await run(["no-such-command"]);
    t.deepEqual(await sandbox.exit, { kind: "exited", code: 127 });
    t.regex(readFileSync(logFile, "utf8"), /no-such-command: not found/);
  },
);

test.serial(
  "process: an invalid environment variable name is refused before starting",
  async (t) => {
    await t.throwsAsync(run(["true"], { env: { "BAD-NAME": "x" } }), {
      message: /spec.env: "BAD-NAME" is not a valid/,
    });
  },
);

test.serial("process: close stops warm sandboxes and running ones", async (t) => {
  const cacheDir = join(root, "cache-close");
  const own = createProcessDriver({ imageStore: { cacheDir } });
  await own.warm(image, 2);
  const workDir = mkdtempSync(join(root, "close-"));
  const sandbox = await own.run({
    id: "c",
    spec: sandboxSpecSchema.parse({ image, command: ["sleep", "600"] }),
    workDir,
    logFile: join(workDir, "log"),
  });
  t.is(sandbox.start, "warm");
  await own.close();
  const exit = await sandbox.exit;
  t.deepEqual(exit, { kind: "exited", code: 137 }, "the running sandbox was killed");
  t.deepEqual(processesMentioning(cacheDir), [], "no bwrap of this driver is left running");
});

/** pids whose command line mentions `text` (bwrap's command line holds the rootfs path). */
function processesMentioning(text: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^[0-9]+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}
