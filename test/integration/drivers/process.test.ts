/** The process (bubblewrap) driver: the shared conformance suite plus what is specific to it. */
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
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
  "process: ports need network: true and are then reachable on a host port the driver picks",
  async (t) => {
    const port = await freePort();
    await t.throwsAsync(run(["true"], { ports: [port] }), {
      message: /spec.ports needs spec.network: true/,
    });
    const { sandbox } = await run(["httpd", "-f", "-p", `${port}`, "-h", "/etc"], {
      ports: [port],
      network: true,
    });
    t.teardown(() => sandbox.stop());
    t.is(
      sandbox.start,
      "cold",
      "sandboxes with network are not served from the (network-less) warm pool",
    );
    t.regex(sandbox.endpoints[String(port)] ?? "", /^127\.0\.0\.1:[0-9]+$/);
    t.regex(
      await httpGet(sandbox.endpoints[String(port)] ?? "", "/image-marker"),
      /busybox test image/,
    );
  },
);

test.serial(
  "process: a sandbox cannot choose its host port: not a privileged one, not one the node uses",
  async (t) => {
    // A node service on loopback (like etcd or the agent API): the sandbox asks for its port.
    const nodeService = createServer((_, res) => res.end("node service"));
    nodeService.listen(0, "127.0.0.1");
    await once(nodeService, "listening");
    t.teardown(() => nodeService.close());
    const nodePort = (nodeService.address() as AddressInfo).port;
    const own = createProcessDriver({
      imageStore: { cacheDir: join(root, "cache") },
      hostPorts: { min: 31_000, max: 31_099 },
    });
    t.teardown(() => own.close());
    const workDir = mkdtempSync(join(root, "ports-"));
    const sandbox = await own.run({
      id: "ports",
      spec: sandboxSpecSchema.parse({
        image,
        // Port 80 cannot be listened on inside (uid 1000), but before the fix asking for it took
        // the host's port 80 (slirp4netns binds as root).
        command: ["httpd", "-f", "-p", String(nodePort), "-h", "/etc"],
        ports: [80, nodePort],
        network: true,
      }),
      workDir,
      logFile: join(workDir, "log"),
    });
    t.teardown(() => sandbox.stop());
    const hostPorts = [80, nodePort].map((guest) => {
      const endpoint = sandbox.endpoints[String(guest)] ?? "";
      t.regex(endpoint, /^127\.0\.0\.1:[0-9]+$/, `guest port ${guest} has an endpoint`);
      return Number(endpoint.slice(endpoint.lastIndexOf(":") + 1));
    });
    for (const host of hostPorts) {
      t.true(host >= 31_000 && host <= 31_099, `host port ${host} is in the node's range`);
    }
    t.not(hostPorts[0], hostPorts[1]);
    // The guest's server answers through its forwarded host port …
    t.regex(await httpGet(`127.0.0.1:${hostPorts[1]}`, "/image-marker"), /busybox test image/);
    // … and the node's own service still answers on its port, not the sandbox.
    t.is(await httpGet(`127.0.0.1:${nodePort}`, "/"), "node service");
    await t.throwsAsync(
      Promise.resolve().then(() => createProcessDriver({ hostPorts: { min: 80, max: 2000 } })),
      { message: /within 1024-65535/ },
    );
  },
);

/** GET http://<address><path>, retried for up to 5 s while the sandbox's server starts. */
async function httpGet(address: string, path: string): Promise<string> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const body = await fetch(`http://${address}${path}`).then(
      (r) => r.text(),
      () => "",
    );
    if (body) return body;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return "";
}

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

test.serial(
  "process: a networked sandbox has its own network and cannot reach the host's loopback (etcd, agent API)",
  async (t) => {
    // A real service on the host's loopback, standing in for etcd and the agent API.
    const server = createServer((_, response) => response.end("host secret"));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    t.teardown(() => server.close());
    const { port } = server.address() as AddressInfo;
    t.is(
      await (await fetch(`http://127.0.0.1:${port}/`)).text(),
      "host secret",
      "reachable from the host",
    );
    const { sandbox, logFile } = await run(
      [
        "sh",
        "-c",
        `ip -o link | grep -c tap0; ` +
          `wget -T 3 -qO- http://127.0.0.1:${port}/ && echo REACHED-LOOPBACK; ` +
          `wget -T 3 -qO- http://10.0.2.2:${port}/ && echo REACHED-HOST-VIA-GATEWAY; ` +
          `id -u; echo done`,
      ],
      { network: true },
    );
    t.deepEqual(await sandbox.exit, { kind: "exited", code: 0 });
    const log = readFileSync(logFile, "utf8");
    t.regex(log, /^1$/m, "the sandbox has its own tap0 (user-mode network)");
    t.notRegex(log, /REACHED|host secret/, log);
    t.regex(log, /^1000$/m, "the command runs as an unprivileged uid");
    t.regex(log, /done/);
  },
);

test.serial("process: a fork bomb is contained by the sandbox's process cap", async (t) => {
  const own = createProcessDriver({ imageStore: { cacheDir: join(root, "cache") }, maxPids: 64 });
  t.teardown(() => own.close());
  const probe = await own.probe();
  t.true(probe.usable);
  if (!probe.usable) return;
  if (!probe.capabilities.notes.some((n) => /at most 64 processes/.test(n))) {
    t.fail("LOUD: no writable pids cgroup on this host: the process cap is NOT verified");
    return;
  }
  const workDir = mkdtempSync(join(root, "bomb-"));
  const logFile = join(workDir, "log");
  const sandbox = await own.run({
    id: "bomb",
    spec: sandboxSpecSchema.parse({
      image,
      // Forks until refused, then reports how many it got; the sandbox must not take the host down.
      command: [
        "sh",
        "-c",
        "( i=0; while [ $i -lt 500 ]; do sleep 30 & i=$((i+1)); done ) 2>/dev/null; set -- /proc/[0-9]*; echo procs=$#",
      ],
    }),
    workDir,
    logFile,
  });
  t.teardown(() => sandbox.stop());
  const exit = await sandbox.exit;
  const match = /procs=(\d+)/.exec(readFileSync(logFile, "utf8"));
  t.truthy(match, readFileSync(logFile, "utf8"));
  const procs = Number(match?.[1]);
  t.true(procs <= 64, `the fork bomb was capped at 64 processes (it had ${procs})`);
  t.true(procs >= 32, `the bomb did fork up to the cap (${procs} processes), so the cap was hit`);
  t.is(exit.kind, "exited");
  t.notThrows(() => execFileSync("/bin/true"), "the host can still fork");
});

test.serial(
  "process: tmpfs writes stay within the memory limit (each of /tmp and /work gets half)",
  async (t) => {
    const { sandbox, logFile } = await run(
      [
        "sh",
        "-c",
        "df -k /tmp /work | tail -2; dd if=/dev/zero of=/tmp/big bs=1M count=400 2>&1; du -k /tmp/big",
      ],
      { resources: { cpuMillis: 100, memoryMiB: 64 } },
    );
    await sandbox.exit;
    const log = readFileSync(logFile, "utf8");
    t.regex(log, /tmpfs\s+32768\s.*\/tmp/, "/tmp is 32 MiB under a 64 MiB limit");
    t.regex(log, /tmpfs\s+32768\s.*\/work/, "/work too");
    t.regex(log, /No space left on device/);
    const written = Number(/^([0-9]+)\s+\/tmp\/big/m.exec(log)?.[1] ?? "Infinity");
    t.true(written <= 32 * 1024, `at most 32 MiB landed in /tmp (${written} KiB)`);
  },
);

test.serial(
  "process: a seccomp filter is loaded, nested user namespaces are refused, host memory and load are hidden",
  async (t) => {
    const { sandbox, logFile } = await run(
      [
        "sh",
        "-c",
        [
          "grep -E '^Seccomp(_filters)?:' /proc/self/status",
          "unshare -U true 2>&1; echo userns=$?",
          "unshare -r true 2>&1; echo rootmap=$?",
          "head -1 /proc/meminfo",
          "cat /proc/loadavg",
        ].join("; "),
      ],
      { resources: { cpuMillis: 100, memoryMiB: 96 } },
    );
    await sandbox.exit;
    const log = readFileSync(logFile, "utf8");
    t.regex(log, /^Seccomp:\s+2$/m, "seccomp in filter mode");
    t.regex(log, /^Seccomp_filters:\s+[1-9]/m);
    t.regex(log, /userns=[1-9]/, "no new user namespace");
    t.regex(log, /rootmap=[1-9]/);
    t.regex(log, /^MemTotal:\s+98304 kB$/m, "MemTotal is the sandbox's 96 MiB, not the host's");
    t.regex(log, /^0\.00 0\.00 0\.00 /m, "no host load figures");
  },
);

test.serial(
  "process: without python3-seccomp the driver is not usable (fails closed)",
  async (t) => {
    const own = createProcessDriver({ python: "/nonexistent/python3" });
    t.teardown(() => own.close());
    const probe = await own.probe();
    t.false(probe.usable);
    t.regex(probe.usable ? "" : probe.reason, /install Debian's python3-seccomp/);
  },
);
