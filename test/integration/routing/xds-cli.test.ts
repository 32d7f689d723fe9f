/**
 * `shardworks xds clients`, as an operator runs it: a real scheduler, a real routing controller
 * registered under its name and version, and a real `@grpc/grpc-js-xds` client.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import test from "ava";
import type { XdsClientsReport } from "../../../contract/api";
import { eventually, routingReplicaFor, startXdsClientProcess } from "../../helpers/grpc-backends";
import { PLATFORM_TOKEN, etcdFor, schedulerFor } from "../../helpers/runtime";

const run = promisify(execFile);
const bin = join(__dirname, "../../../runtime/cli/bin.cjs");

test("xds clients lists each replica's clients and what they hold, as a table or JSON", async (t) => {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd);
  const { address, controller } = await routingReplicaFor(t, etcd.client, "routing-1");
  const client = startXdsClientProcess(address, "cli-probe");
  t.teardown(() => client.close());
  t.is(await eventually(() => client.who("xds:///api"), "baseline"), "baseline");

  const env = { ...process.env, SHARDWORKS_API: scheduler.url, SHARDWORKS_TOKEN: PLATFORM_TOKEN };
  const cli = async (...args: string[]) =>
    (await run(process.execPath, [bin, ...args], { env })).stdout;
  const synced = async () => {
    const report = JSON.parse(await cli("--json", "xds", "clients")) as XdsClientsReport;
    const router = report.routers[0];
    return router !== undefined && "clients" in router
      ? router.clients.flatMap((c) => c.resources).every((r) => r.status === "SYNCED")
      : false;
  };
  t.true(await eventually(synced, true));
  const lines = (await cli("xds", "clients", "--node-id", "cli-probe")).split("\n");
  t.regex(lines[0] ?? "", /^ROUTER\s+NODE ID\s+TYPE\s+VERSION\s+RESOURCES$/);
  t.true(
    lines.some((l) => /^routing-1 \(0\.2\.0\)\s+cli-probe\s+Listener\s+\S+\s+1 SYNCED$/.test(l)),
    lines.join("\n"),
  );
  t.true(lines.some((l) => /\sCluster\s+\S+\s+1 SYNCED$/.test(l)));
  const other = (await cli("xds", "clients", "--node-id", "nobody")).split("\n");
  t.regex(other[1] ?? "", /^routing-1 \(0\.2\.0\)\s+-\s+-\s+-\s+no clients$/);

  await controller.close();
  t.is(
    (await cli("xds", "clients")).trim(),
    "no routing controller is registered (routers/ in etcd is empty): is one running?",
  );
});
