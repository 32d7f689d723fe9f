import test from "ava";
import { startEtcd } from "../../runtime/lib";

test("startEtcd runs a real etcd that keeps what is written and is gone after stop", async (t) => {
  const etcd = await startEtcd();
  await etcd.client.put("/shardworks/probe").value("42");
  t.is(await etcd.client.get("/shardworks/probe").string(), "42");
  const pid = etcd.process.pid;
  await etcd.stop();
  t.truthy(pid);
  t.throws(() => process.kill(pid!, 0));
});
