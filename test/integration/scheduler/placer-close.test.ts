/**
 * A scheduler that closes while it is a follower in the placer election leaves no watch behind
 * on etcd (etcd3's resign() would: a watch that then reconnects forever and keeps the process up).
 * Counted on the real etcd's own metric of open watchers.
 */
import test from "ava";
import { eventually } from "../../helpers/grpc-backends";
import { etcdFor, schedulerFor } from "../../helpers/runtime";

/** etcd's count of open watchers (`etcd_debugging_mvcc_watcher_total` on its /metrics). */
async function watchers(endpoint: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("etcd_debugging_mvcc_watcher_total "));
  if (line === undefined) throw new Error("etcd exposes no etcd_debugging_mvcc_watcher_total");
  return Number(line.split(" ")[1]);
}

test("a follower placer that closes cancels its election watch", async (t) => {
  const etcd = await etcdFor(t);
  const leader = await schedulerFor(t, etcd, { name: "leader" });
  await eventually(() => Promise.resolve(leader.placer?.leading === true), true);
  const withLeaderOnly = await watchers(etcd.endpoint);
  const follower = await schedulerFor(t, etcd, { name: "follower" });
  // The follower watches the leader's election key (and whatever else a scheduler watches).
  const withFollower = await eventually(
    async () => (await watchers(etcd.endpoint)) > withLeaderOnly,
    true,
  );
  t.true(withFollower, "the follower opened its watches");
  await follower.close();
  t.is(
    await eventually(() => watchers(etcd.endpoint), withLeaderOnly),
    withLeaderOnly,
    "every watch of the closed follower is gone, the election's included",
  );
});
