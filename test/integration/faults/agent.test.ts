/**
 * kill -9 of a node agent during a burst of 50 sandboxes (lease TTL 3 s), then its restart on the
 * same data dir. Sandboxes whose run began on it end `failed` (node lost) and are never run again;
 * ones that never started there are placed on the other node; nothing acknowledged is lost,
 * nothing runs twice, capacity returns to zero (issue 13).
 */
import test from "ava";
import { schedulerFor } from "../../helpers/runtime";
import { burst, checkInvariants, faultBed } from "./harness";

test("kill -9 an agent mid-burst, then restart it on its data dir", async (t) => {
  const bed = await faultBed(t, "sw-fault-agent-", ["node-a", "node-b"], 3);
  const scheduler = await schedulerFor(t, bed.etcd.current(), { strategy: "spread" });
  const victim = bed.agents.get("node-a")!;
  let killed = false;
  const result = await burst(() => [scheduler.url], bed.image, {
    count: 50,
    prefix: "a",
    onAcknowledged: (n) => {
      if (n !== 25 || killed) return;
      killed = true;
      victim.process.kill("SIGKILL");
    },
  });
  t.is(result.acknowledged.size, 50);
  const records = await checkInvariants(t, bed, scheduler.url, result.acknowledged, {
    nodeLost: true,
  });
  const failed = records.filter((r) => r.status.phase === "failed");
  t.log(
    `${records.length - failed.length} exited, ${failed.length} failed with node-a (their run had begun there)`,
  );
  t.true(
    records.some((r) => r.status.node === "node-a"),
    "node-a ran some of the burst",
  );
  // Back on its data dir: it runs none of them again, and nothing changes.
  await bed.startAgent("node-a");
  await new Promise((r) => setTimeout(r, 3000));
  const again = await checkInvariants(t, bed, scheduler.url, result.acknowledged, {
    nodeLost: true,
  });
  t.deepEqual(
    again.map((r) => [r.id, r.status.phase]).sort(),
    records.map((r) => [r.id, r.status.phase]).sort(),
  );
});
