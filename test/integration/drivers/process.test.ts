/** The process (bubblewrap) driver: the shared conformance suite plus what is specific to it. */
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { freePort } from "../../../runtime/lib/ports";
import { Driver, sandboxSpecSchema } from "../../../contract/model";
import {
  createProcessDriver,
  type ProcessDriver,
} from "../../../runtime/node-agent/drivers/process";
import { probeProcessDriver } from "../../../runtime/node-agent/drivers/process/probe";
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

async function run(command: string[], extra: Record<string, unknown> = {}, on = driver) {
  const workDir = mkdtempSync(join(root, "run-"));
  const logFile = join(workDir, "log");
  const sandbox = await on.run({
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

/** What the test saw of a sandbox's cgroups while it ran (read from the host). */
interface CgroupWatch {
  /** The sandbox's memory and pids cgroup directories (one directory with cgroup v2). */
  readonly dirs: string[];
  /** The memory cgroup's limit, high-water mark and OOM kills, as last read before it went. */
  readonly limit: number;
  readonly peak: number;
  readonly oomKills: number;
}

/**
 * Watches the cgroups of the sandbox process whose command line holds `marker` until `exit`
 * settles: where they are, and the memory cgroup's figures (cgroup v1 or v2).
 */
async function watchCgroups(marker: string, exit: Promise<unknown>): Promise<CgroupWatch> {
  let ended = false;
  void exit.finally(() => (ended = true));
  let dirs: string[] = [];
  let memory: string | undefined;
  const seen = { limit: NaN, peak: NaN, oomKills: NaN };
  while (!ended) {
    if (memory === undefined) {
      const pid = processesMentioning(marker)[0];
      const lines = pid === undefined ? "" : readOr(`/proc/${pid}/cgroup`, "");
      const v1 = (controller: string) =>
        new RegExp(`^[0-9]+:${controller}:(/shardworks/.+)$`, "m").exec(lines)?.[1];
      const v2 = /^0::(\/shardworks\/.+)$/m.exec(lines)?.[1];
      const v1Memory = v1("memory");
      const v1Pids = v1("pids");
      if (v1Memory !== undefined) {
        memory = join("/sys/fs/cgroup/memory", v1Memory);
        dirs = [memory, ...(v1Pids ? [join("/sys/fs/cgroup/pids", v1Pids)] : [])];
      } else if (v2 !== undefined) {
        memory = join("/sys/fs/cgroup", v2);
        dirs = [memory];
      }
    }
    if (memory !== undefined) {
      const v2 = existsSync(join(memory, "memory.max"));
      const read = (v1File: string, v2File: string) =>
        readOr(join(memory ?? "", v2 ? v2File : v1File), "");
      const limit = Number(read("memory.limit_in_bytes", "memory.max").trim() || NaN);
      const peak = Number(read("memory.max_usage_in_bytes", "memory.peak").trim() || NaN);
      const kills = /^oom_kill ([0-9]+)$/m.exec(read("memory.oom_control", "memory.events"))?.[1];
      if (!Number.isNaN(limit)) Object.assign(seen, { limit, peak, oomKills: Number(kills) });
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return { dirs, ...seen };
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return fallback;
  }
}

/** Waits up to 2 s for the sandbox's cgroups to be removed; returns those still there. */
async function leftCgroups(dirs: readonly string[]): Promise<string[]> {
  for (let i = 0; i < 40 && dirs.some((dir) => existsSync(dir)); i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return dirs.filter((dir) => existsSync(dir));
}

/**
 * A command starting `count` processes that each hold `mib` MiB at the same time (dd's buffer,
 * filled from /dev/zero, kept while its reader waits), then print each one's exit code; the
 * sandbox exits non-zero if any of them failed.
 */
function memoryHogs(marker: string, count: number, mib: number): string[] {
  return [
    "sh",
    "-c",
    `: ${marker}; i=0; while [ $i -lt ${count} ]; do i=$((i + 1)); ` +
      `( { dd if=/dev/zero bs=${mib}M count=1 2>/dev/null; echo $? > /tmp/rc$i; } | { sleep 2; cat > /dev/null; } ) & ` +
      `done; wait; cat /tmp/rc*; ! grep -qv '^0$' /tmp/rc*`,
  ];
}

/** The probe's note that a memory cgroup holds each sandbox, or a loud failure without one. */
async function requireMemoryCgroup(t: ExecutionContext, own: ProcessDriver): Promise<boolean> {
  const probe = await own.probe();
  t.true(probe.usable, probe.usable ? "" : probe.reason);
  if (!probe.usable) return false;
  if (!probe.capabilities.notes.some((n) => /whole sandbox \(memory cgroup/.test(n))) {
    t.fail(
      "LOUD: no writable memory cgroup on this host: the sandbox memory limit is NOT verified",
    );
    return false;
  }
  return true;
}

test.serial(
  "process: the memory limit holds for the whole sandbox, however many processes (memory cgroup, warm and cold)",
  async (t) => {
    const own = createProcessDriver({
      imageStore: { cacheDir: join(root, "cache") },
      warmMemoryMiB: 64,
    });
    t.teardown(() => own.close());
    if (!(await requireMemoryCgroup(t, own))) return;
    const limit = 64 * 1024 * 1024;
    // Four processes of 38 MiB (60% of 64 MiB) each: every one is within its own RLIMIT_AS, the
    // four together are not within the sandbox's limit.
    await own.warm(image, 1);
    const resources = { cpuMillis: 100, memoryMiB: 64 };
    const cases = [
      { name: "warm, 4 × 38 MiB", driver: own, start: "warm", count: 4, fits: false },
      { name: "cold, 4 × 38 MiB", driver, start: "cold", count: 4, fits: false },
      { name: "cold, 1 × 38 MiB", driver, start: "cold", count: 1, fits: true },
    ] as const;
    for (const c of cases) {
      const marker = `hogs-${c.start}-${c.count}-${Math.random().toString(36).slice(2)}`;
      const workDir = mkdtempSync(join(root, "hogs-"));
      const logFile = join(workDir, "log");
      const sandbox = await c.driver.run({
        id: "hogs",
        spec: sandboxSpecSchema.parse({
          image,
          command: memoryHogs(marker, c.count, 38),
          resources,
        }),
        workDir,
        logFile,
      });
      t.is(sandbox.start, c.start, c.name);
      const watched = await watchCgroups(marker, sandbox.exit);
      const exit = await sandbox.exit;
      const log = readFileSync(logFile, "utf8");
      t.is(watched.limit, limit, `${c.name}: the sandbox's memory cgroup has its 64 MiB limit`);
      t.true(watched.peak <= limit, `${c.name}: it never held more (peak ${watched.peak} B)`);
      if (c.fits) {
        t.deepEqual(exit, { kind: "exited", code: 0 }, `${c.name} fits: ${log}`);
        t.is(watched.oomKills, 0, c.name);
      } else {
        t.true(exit.kind === "exited" && exit.code !== 0, `${c.name} does not fit: ${log}`);
        t.regex(log, /^137$/m, `${c.name}: a hog was OOM-killed (SIGKILL)`);
        t.true(watched.oomKills >= 1, `${c.name}: by the sandbox's own OOM killer`);
      }
      t.deepEqual(await leftCgroups(watched.dirs), [], `${c.name}: its cgroups are removed`);
      t.true(watched.dirs.length > 0, c.name);
    }
  },
);

test.serial(
  "process: tmpfs files count against the memory limit together (/dev/shm, /tmp and /work)",
  async (t) => {
    if (!(await requireMemoryCgroup(t, driver))) return;
    const marker = `tmpfs-${Math.random().toString(36).slice(2)}`;
    // 3 × 30 MiB: each fits its 32 MiB tmpfs, all three do not fit the 64 MiB limit.
    const { sandbox, logFile } = await run(
      [
        "sh",
        "-c",
        `: ${marker}; sleep 1; for d in /dev/shm /tmp /work; do dd if=/dev/zero of=$d/fill bs=1M count=30 2>&1 || exit 1; done; du -k /dev/shm/fill /tmp/fill /work/fill; echo ALL-WRITTEN`,
      ],
      { resources: { cpuMillis: 100, memoryMiB: 64 } },
    );
    const watched = await watchCgroups(marker, sandbox.exit);
    const exit = await sandbox.exit;
    const log = readFileSync(logFile, "utf8");
    t.true(exit.kind === "exited" && exit.code !== 0, `the writes failed or were killed: ${log}`);
    t.notRegex(log, /ALL-WRITTEN/);
    t.is(watched.limit, 64 * 1024 * 1024);
    t.true(
      watched.peak <= watched.limit,
      `the sandbox's files and processes never held more than its limit of host memory (peak ${watched.peak} B)`,
    );
    t.deepEqual(await leftCgroups(watched.dirs), [], "its cgroups are removed");
  },
);

test.serial("process: the memory cgroup is removed when a sandbox is stopped", async (t) => {
  if (!(await requireMemoryCgroup(t, driver))) return;
  const marker = `stopped-${Math.random().toString(36).slice(2)}`;
  const { sandbox } = await run(["sh", "-c", `: ${marker}; sleep 600; echo stopped`]);
  const watching = watchCgroups(marker, sandbox.exit);
  for (let i = 0; i < 100 && processesMentioning(marker).length === 0; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  await sandbox.stop();
  const watched = await watching;
  t.is(watched.limit, 128 * 1024 * 1024, "the default 128 MiB limit");
  t.true(watched.dirs.length > 0);
  t.deepEqual(await leftCgroups(watched.dirs), [], "no cgroup of the sandbox is left");
});

test.serial(
  "process: a memory cgroup that cannot be created fails closed (probe not usable, runs refused)",
  async (t) => {
    // A directory that is no cgroup hierarchy: it has no memory controller files.
    const notCgroup = mkdtempSync(join(root, "not-a-cgroup-"));
    const own = createProcessDriver({
      imageStore: { cacheDir: join(root, "cache") },
      memoryCgroupRoot: notCgroup,
    });
    t.teardown(() => own.close());
    const probe = await own.probe();
    t.false(probe.usable);
    t.regex(
      probe.usable ? "" : probe.reason,
      /cannot create a memory cgroup under .*not-a-cgroup.*memory\.limit_in_bytes.*set memoryCgroupRoot/,
    );
    await t.throwsAsync(run(["true"], {}, own), { message: /cannot create a memory cgroup/ });
    t.deepEqual(readdirSync(join(notCgroup, "shardworks")), [], "nothing is left behind");
    // Without any memory hierarchy the driver runs only when told to (SHARDWORKS_PROCESS_UNLIMITED=1,
    // see process-cgroups.test.ts), and then does not claim a sandbox memory limit.
    const without = await probeProcessDriver({
      bwrap: "bwrap",
      busybox: "/bin/busybox",
      seccomp: false,
      python: "/usr/bin/python3",
      hostPorts: { min: 30_000, max: 30_001 },
      maxPids: undefined,
      memoryCgroup: false,
      unlimited: true,
    });
    const notes = without.usable ? without.capabilities.notes.join("\n") : without.reason;
    t.regex(notes, /memory NOT limited per sandbox/);
    t.notRegex(notes, /whole sandbox/);
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
      message: /spec\.env\.BAD-NAME: must be a shell variable name/,
    });
  },
);

test.serial("process: close stops warm sandboxes and running ones", async (t) => {
  const cacheDir = join(root, "cache-close");
  const own = createProcessDriver({ imageStore: { cacheDir } });
  // Each step is bounded and named: a hang fails here saying where (seen once under CI load).
  await within(60_000, "warm(image, 2)", own.warm(image, 2));
  const workDir = mkdtempSync(join(root, "close-"));
  const sandbox = await within(
    60_000,
    "run",
    own.run({
      id: "c",
      spec: sandboxSpecSchema.parse({ image, command: ["sleep", "600"] }),
      workDir,
      logFile: join(workDir, "log"),
    }),
  );
  t.is(sandbox.start, "warm");
  await within(60_000, "close()", own.close());
  const exit = await within(60_000, "the killed sandbox's exit", sandbox.exit);
  t.deepEqual(exit, { kind: "exited", code: 137 }, "the running sandbox was killed");
  t.deepEqual(processesMentioning(cacheDir), [], "no bwrap of this driver is left running");
});

/** `promise`, or a rejection naming `what` once `ms` have passed without it settling. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

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
  "process: tmpfs writes stay within the memory limit (each of /tmp, /work and /dev/shm gets half)",
  async (t) => {
    const { sandbox, logFile } = await run(
      [
        "sh",
        "-c",
        "df -k /tmp /work /dev/shm | tail -3; dd if=/dev/zero of=/tmp/big bs=1M count=400 2>&1; du -k /tmp/big; rm /tmp/big; " +
          "dd if=/dev/zero of=/dev/shm/big bs=1M count=400 2>&1; du -k /dev/shm/big; rm /dev/shm/big; touch /dev/big 2>&1",
      ],
      { resources: { cpuMillis: 100, memoryMiB: 64 } },
    );
    await sandbox.exit;
    const log = readFileSync(logFile, "utf8");
    t.regex(log, /tmpfs\s+32768\s.*\/tmp/, "/tmp is 32 MiB under a 64 MiB limit");
    t.regex(log, /tmpfs\s+32768\s.*\/work/, "/work too");
    t.regex(log, /tmpfs\s+32768\s.*\/dev\/shm/, "/dev/shm too (bwrap's own is unsized)");
    t.regex(log, /error writing '\/tmp\/big': No space left on device/);
    t.regex(log, /error writing '\/dev\/shm\/big': No space left on device/);
    for (const file of ["/tmp/big", "/dev/shm/big"]) {
      const written = Number(new RegExp(`^([0-9]+)\\s+${file}$`, "m").exec(log)?.[1] ?? "Infinity");
      t.true(written <= 32 * 1024, `at most 32 MiB landed in ${file} (${written} KiB)`);
    }
    t.regex(log, /touch: \/dev\/big: Read-only file system/, "the rest of /dev is read-only");
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
