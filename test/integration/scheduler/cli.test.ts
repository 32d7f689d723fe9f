import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import test, { type ExecutionContext } from "ava";
import { spawnNodeAgent } from "../../../runtime/node-agent/spawn";
import { PLATFORM_TOKEN, schedulerWithImage } from "../../helpers/runtime";

const run = promisify(execFile);
const bin = join(__dirname, "../../../runtime/cli/bin.cjs");

/** A scheduler with a test image, one process-driver node, and the env the CLI reads. */
async function cliTestbed(t: ExecutionContext, prefix: string, node: string) {
  const { etcd, dir, image, scheduler } = await schedulerWithImage(t, prefix);
  const agent = await spawnNodeAgent({
    name: node,
    etcdEndpoints: [etcd.endpoint],
    driver: "process",
    dataDir: join(dir, "node"),
    env: { TMPDIR: dir }, // whatever the driver keeps in temp goes with the test dir
  });
  t.teardown(() => agent.stop(2000));
  const env = { ...process.env, SHARDWORKS_API: scheduler.url, SHARDWORKS_TOKEN: PLATFORM_TOKEN };
  return { image, env };
}

test("the shardworks CLI runs, lists, shows logs of and removes sandboxes, as tables or JSON", async (t) => {
  const { image, env } = await cliTestbed(t, "sw-cli-", "cli-node");
  const cli = async (...args: string[]) => run(process.execPath, [bin, ...args], { env });

  // Without --no-wait, `run` prints the output and exits with the sandbox's exit code.
  const ran = (await cli(
    "sandbox",
    "run",
    "--id",
    "hello",
    image,
    "--",
    "sh",
    "-c",
    "echo hello from cli; exit 4",
  ).catch((e: { code: number; stdout: string }) => e)) as { code?: number; stdout: string };
  t.is(ran.code, 4, "the CLI exits with the sandbox's exit code");
  t.regex(ran.stdout, /phase:\s+exited/);
  t.regex(ran.stdout, /exit code: 4/);
  t.regex(ran.stdout, /\nhello from cli\n$/, "the output follows the summary");
  t.is((await cli("sandbox", "logs", "hello")).stdout, "hello from cli\n");
  const ls = (await cli("sandbox", "ls")).stdout.split("\n");
  t.regex(ls[0] ?? "", /^ID\s+PHASE\s+NODE\s+IMAGE/);
  t.regex(ls[1] ?? "", /^hello\s+exited\s+cli-node\s/);
  const json = JSON.parse((await cli("--json", "sandbox", "get", "hello")).stdout) as {
    status: { exitCode: number };
  };
  t.is(json.status.exitCode, 4);
  const nodes = JSON.parse((await cli("--json", "node", "ls")).stdout) as {
    name: string;
    driver: string;
  }[];
  t.deepEqual(
    nodes.map((n) => [n.name, n.driver]),
    [["cli-node", "process"]],
  );
  t.regex((await cli("node", "ls")).stdout, /cli-node\s+process\s+namespaces only/);
  t.regex((await cli("sandbox", "rm", "hello")).stdout, /deleted hello/);

  // Errors are one readable line and a non-zero exit, never a stack trace.
  const missing = await cli("sandbox", "get", "hello").catch(
    (e: { code: number; stderr: string }) => e,
  );
  t.is((missing as { code: number }).code, 1);
  t.is(
    (missing as { stderr: string }).stderr,
    "error: sandbox hello does not exist (list them with `shardworks sandbox ls`)\n",
  );
  const noToken = await run(process.execPath, [bin, "sandbox", "ls"], {
    env: { ...env, SHARDWORKS_TOKEN: "" },
  }).catch((e: { stderr: string }) => e);
  t.regex(noToken.stderr, /^error: no token: pass --token or set SHARDWORKS_TOKEN/);
});

test("the CLI names a bad flag and its fix, fails a run that times out, and removes every id it can", async (t) => {
  const { image, env } = await cliTestbed(t, "sw-cli-edge-", "cli-edge-node");
  type Failed = { code: number; stdout: string; stderr: string };
  const cli = async (...args: string[]) =>
    run(process.execPath, [bin, ...args], { env }).then(
      (r) => ({ code: 0, ...r }),
      (e: Failed) => e,
    );

  const cpu = await cli("sandbox", "run", "--cpu", "lots", image, "--", "true");
  t.is(cpu.code, 1);
  t.regex(cpu.stderr, /--cpu <millis>.*"lots" is not a number of millicores.*e\.g\. --cpu 500/);
  const port = await cli("sandbox", "run", "--network", "--port", "99999", image, "--", "true");
  t.regex(port.stderr, /--port <port>.*"99999" is not a port \(1-65535\)/);
  const wait = await cli("sandbox", "run", "--wait", "forever", image, "--", "true");
  t.regex(wait.stderr, /--wait.*forever.*running, exited/);

  // No node has qemu here: the wait ends, and the CLI says so and fails.
  const stuck = await cli(
    "sandbox",
    "run",
    "--id",
    "stuck",
    "--driver",
    "qemu",
    "--timeout",
    "2",
    image,
    "--",
    "true",
  );
  t.is(stuck.code, 1);
  t.regex(stuck.stderr, /^waiting up to 2 s for the sandbox to be exited…\n/);
  t.regex(
    stuck.stderr,
    /timed out after 2 s waiting for stuck to be exited; it is pending \(no node fits.*\)\. .*shardworks sandbox rm stuck/,
  );

  const rm = await cli("sandbox", "rm", "nope", "stuck");
  t.is(rm.code, 1, "a missing id fails the command");
  t.regex(rm.stdout, /^deleted stuck$/m, "the ids after a missing one are still removed");
  t.regex(rm.stderr, /error: sandbox nope does not exist/);
});

test("a log stream cut off mid-way is one line that says so, and exit 1", async (t) => {
  // A connection that drops after the first chunk, as when the scheduler dies mid-stream.
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("first line\n");
    setTimeout(() => res.socket?.destroy(), 100);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const env = { ...process.env, SHARDWORKS_API: `http://127.0.0.1:${port}`, SHARDWORKS_TOKEN: "x" };
  const cut = (await run(process.execPath, [bin, "sandbox", "logs", "-f", "job"], { env }).catch(
    (e: unknown) => e,
  )) as { code?: number; stdout: string; stderr: string };
  t.is(cut.code, 1);
  t.is(cut.stdout, "first line\n", "what arrived is printed");
  t.regex(cut.stderr, /^error: the log stream of job was cut off \(.+\): .*run the command again/);
  t.notRegex(cut.stderr, /\n\s+at /, "no stack trace");
});
