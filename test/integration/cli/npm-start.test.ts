/**
 * `npm start` end to end, as a user runs it: spawn it, wait for the routing demo's lines, press
 * Ctrl-C (SIGINT to its process group, as a terminal does) and check that every process it started
 * (etcd, node agents, QEMU/bubblewrap sandboxes, the routing controller, Envoy) is gone and its temp dir
 * removed.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import test from "ava";

const ROOT = join(__dirname, "../../..");

/** Parent pid of every live process (from /proc). */
function parentsByPid(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // `pid (comm) state ppid …`; comm may contain spaces, so split after the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(entry), ppid);
    } catch {
      // The process exited while we looked.
    }
  }
  return parents;
}

/** Every live descendant of `root`, with its command name. */
function descendantsOf(root: number): Map<number, string> {
  const parents = parentsByPid();
  const found = new Map<number, string>();
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!found.has(pid) && (ppid === root || found.has(ppid))) {
        found.set(pid, commandOf(pid));
        grew = true;
      }
    }
  }
  return found;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

test("npm start: sandbox and routing demo, then Ctrl-C leaves no process and no temp dir", async (t) => {
  const child = spawn("npm", ["start"], {
    cwd: ROOT,
    detached: true, // its own process group, like a shell job: Ctrl-C goes to the whole group
    stdio: ["ignore", "pipe", "pipe"],
    env: Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("SHARDWORKS_")),
    ),
  });
  const pid = child.pid!;
  let seen = new Map<number, string>();
  t.teardown(() => {
    // Whatever happened, nothing this test started survives it.
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
    for (const p of seen.keys()) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  // "close", not "exit": npm may exit before its child (tsx) has written its last lines; "close"
  // comes once every process holding the pipes has closed them, i.e. all output is here.
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));

  const deadline = Date.now() + 150_000;
  while (!output.includes("Ctrl-C stops everything.")) {
    if (Date.now() > deadline || child.exitCode !== null) {
      t.fail(`npm start did not reach the end of its demo:\n${output}`);
      return;
    }
    seen = new Map([...seen, ...descendantsOf(pid)]);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  seen = new Map([...seen, ...descendantsOf(pid)]);

  t.regex(output, /demo sandbox demo: exited on node-[ab], exit code 0/);
  t.regex(output, /hello from a sandbox/);
  t.regex(output, /my pid: \d{1,2} \(own pid namespace\)/, "the sandbox has its own pid namespace");
  const notes = output.match(/note: .*/g) ?? [];
  t.is(new Set(notes).size, notes.length, "each note once, not once per node agent");
  t.regex(output, /routing: without a routing key +→ baseline/);
  t.regex(output, /routing: x-shardworks-routing-key: demo-key → fork/);
  t.regex(output, /routing: baggage shardworks-routing-key=demo-key → fork/);
  t.regex(
    output,
    /curl -s -H "authorization: Bearer \$SHARDWORKS_TOKEN" http:\/\/127\.0\.0\.1:\d+\/v1\/shards\/demo/,
  );
  // Through the real Envoy gateway: HTTP and gRPC, with and without the key.
  t.regex(output, /gateway: HTTP web without a routing key → web baseline/);
  t.regex(output, /gateway: HTTP web x-shardworks-routing-key: demo-key → web fork/);
  t.regex(output, /gateway: HTTP web baggage → web fork/);
  t.regex(output, /gateway: gRPC demo without a routing key → baseline/);
  t.regex(output, /gateway: gRPC demo with the header → fork/);
  // The printed curl commands answer what their comments say, run as a user would run them.
  const curls = [...output.matchAll(/^ {2}(curl -s -H 'host: web'.*?) +# → (.+)$/gm)];
  t.is(curls.length, 3, "three curl commands for the gateway");
  for (const [, command, expected] of curls) {
    const answer = spawnSync("sh", ["-c", command!], { encoding: "utf8", timeout: 10_000 });
    t.is(answer.stdout.trim(), expected!.trim(), command);
  }
  // The xDS probe commands work from any directory, not only the repository's.
  const probes = [...output.matchAll(/^ {2}(GRPC_XDS_BOOTSTRAP_CONFIG=.*)$/gm)].map((m) => m[1]!);
  t.is(probes.length, 3, "three xDS probe commands");
  const probe = spawnSync("sh", ["-c", probes[1]!], {
    cwd: tmpdir(),
    encoding: "utf8",
    timeout: 60_000,
  });
  t.is(probe.status, 0, probe.stderr);
  t.regex(probe.stdout, /fork/, "the probe with the key reaches the fork");
  // Log lines go to the log file it names, not into what the user reads.
  t.notRegex(output, /^\{"level":/m, "no raw JSON log lines in npm start's output");
  const logFile = /^logs {8}(\S+)/m.exec(output)?.[1];
  t.truthy(logFile && existsSync(logFile), `the log file ${logFile} exists`);
  const workDir = /oci:(\/\S+?\/shardworks-local-[^/\s]+)\//.exec(output)?.[1];
  t.truthy(workDir, "the demo image lives in npm start's temp dir");
  const commands = [...seen.values()].join("\n");
  t.regex(commands, /\betcd\b/, "etcd was a child");
  t.regex(commands, /envoy-[\d.]+\/lib\/envoy/, "Envoy was a child");
  t.regex(commands, /node-agent\/main\.ts/, "node agents were children");
  t.regex(commands, /qemu-system|bwrap/, "sandboxes (QEMU or bubblewrap) were descendants");

  // The shard was left in place for the user: ask the API for it while everything still runs.
  const api = /export SHARDWORKS_API=(\S+)/.exec(output)![1]!;
  const token = /export SHARDWORKS_TOKEN=(\S+)/.exec(output)![1]!;
  const shard = await fetch(`${api}/v1/shards/demo`, {
    headers: { authorization: `Bearer ${token}` },
  });
  t.is(shard.status, 200, "the demo shard stays registered");

  process.kill(-pid, "SIGINT");
  const code = await Promise.race([
    exited,
    new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 60_000)),
  ]);
  t.not(code, "timeout", `npm start did not exit after Ctrl-C:\n${output}`);
  t.regex(output, /stopped; nothing left running\./);
  // Give the kernel a moment to reap grandchildren whose parents just exited.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const survivors = [...seen].filter(([p]) => alive(p)).map(([p, c]) => `${p} ${c}`);
  t.deepEqual(survivors, [], "processes npm start left behind");
  t.false(existsSync(workDir!), `temp dir ${workDir} removed`);
  const strays = readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .map((p) => `${p} ${commandOf(Number(p))}`)
    .filter((line) => workDir !== undefined && line.includes(workDir));
  t.deepEqual(strays, [], "no process still uses npm start's temp dir");
});

test("npm start refuses an unknown SHARDWORKS_DRIVER before it starts anything", (t) => {
  const result = spawnSync(process.execPath, ["--import", "tsx", "runtime/cli/start.ts"], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, SHARDWORKS_DRIVER: "docker", SHARDWORKS_LOG_FILE: "" },
  });
  t.is(result.status, 2);
  t.regex(
    result.stderr,
    /SHARDWORKS_DRIVER=docker is not a driver; use one of auto, firecracker, qemu, process/,
  );
  t.notRegex(result.stdout, /etcd|scheduler/, "nothing was started");
});
