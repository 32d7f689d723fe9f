import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import test, { type ExecutionContext } from "ava";
import {
  allSandboxes,
  api,
  assignmentPutsById,
  etcdFor,
  eventually,
  PLATFORM_TOKEN,
  registerNode,
} from "../../helpers/runtime";

const MAIN = join(__dirname, "../../../runtime/scheduler/main.ts");

/** A scheduler replica as its own process (`tsx runtime/scheduler/main.ts`). */
async function schedulerProcess(
  t: ExecutionContext,
  etcd: string,
): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    ["--import=tsx", MAIN, "--etcd", etcd, "--port", "0", "--election-ttl", "2"],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: {
        ...process.env,
        SHARDWORKS_PLATFORM_TOKEN: PLATFORM_TOKEN,
        SHARDWORKS_LOG_LEVEL: "warn",
      },
    },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes('"ready":true')) resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once("exit", (code) => reject(new Error(`scheduler exited ${code}`)));
  });
  return { url, child };
}

async function leads(url: string): Promise<boolean> {
  const metrics = await (await fetch(`${url}/metrics`)).text();
  return /^shardworks_placer_leader 1$/m.test(metrics);
}

test("kill -9 the leading scheduler process: the other replica takes over placing, nothing is placed twice", async (t) => {
  const etcd = await etcdFor(t);
  const replicas = [
    await schedulerProcess(t, etcd.endpoint),
    await schedulerProcess(t, etcd.endpoint),
  ];
  for (const name of ["f1", "f2"])
    await registerNode(t, etcd.client, name, { cpuMillis: 8000, memoryMiB: 8192 });
  const submit = (url: string, id: string) =>
    api(url, "/v1/sandboxes", {
      method: "POST",
      body: JSON.stringify({
        id,
        image: "oci:/tmp/none:latest",
        command: ["true"],
        resources: { cpuMillis: 100, memoryMiB: 64 },
      }),
    });
  const leader = await eventually("a leader", async () => {
    const flags = await Promise.all(replicas.map((r) => leads(r.url)));
    return flags.filter(Boolean).length === 1 ? replicas[flags.indexOf(true)] : undefined;
  });
  const survivor = replicas.find((r) => r !== leader)!;
  t.true(
    (
      await Promise.all(Array.from({ length: 20 }, (_, i) => submit(survivor.url, `before-${i}`)))
    ).every((r) => r.status === 201),
  );
  leader.child.kill("SIGKILL");
  const killedAt = Date.now();
  t.true(
    (
      await Promise.all(Array.from({ length: 20 }, (_, i) => submit(survivor.url, `after-${i}`)))
    ).every((r) => r.status === 201),
  );
  await eventually("all 40 placed", async () =>
    (await allSandboxes(etcd.client)).filter((s) => s.status.phase === "scheduled").length === 40
      ? true
      : undefined,
  );
  t.log(
    `all placed ${((Date.now() - killedAt) / 1000).toFixed(1)} s after kill -9 of the leader (election TTL 2 s)`,
  );
  t.true(await leads(survivor.url));
  const puts = await assignmentPutsById(etcd.client);
  t.is(puts.size, 40);
  t.deepEqual(
    [...puts.entries()].filter(([, nodes]) => nodes.length !== 1),
    [],
  );
});
