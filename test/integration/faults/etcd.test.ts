/**
 * kill -9 of etcd during a burst of 50 sandboxes (down 8 s, restarted on its data dir), then a
 * restart of an agent: nothing acknowledged is lost, nothing is placed or run twice, every
 * sandbox exits 0, capacity returns to zero (issue 13).
 */
import test from "ava";
import { schedulerFor } from "../../helpers/runtime";
import { burst, checkInvariants, faultBed } from "./harness";

test("kill -9 etcd mid-burst, restart it on its data dir, then restart an agent", async (t) => {
  const bed = await faultBed(t, "sw-fault-etcd-", ["node-a", "node-b"]);
  const scheduler = await schedulerFor(t, bed.etcd.current());
  let outage: Promise<void> | undefined;
  const result = await burst(() => [scheduler.url], bed.image, {
    count: 50,
    prefix: "e",
    sleepScale: 3, // some are running when etcd dies and exit while it is away
    onAcknowledged: (n) => {
      if (n !== 20 || outage) return;
      outage = (async () => {
        await bed.etcd.kill();
        await new Promise((r) => setTimeout(r, 8000));
        await bed.etcd.restart();
      })();
    },
  });
  await outage;
  t.is(result.acknowledged.size, 50);
  t.log(`answers other than 201/409 during the burst: ${JSON.stringify([...result.others])}`);
  t.true(
    [...result.others.keys()].every((s) => s === "503"),
    "while etcd is away the API answers 503 (never 500)",
  );
  await checkInvariants(t, bed, scheduler.url, result.acknowledged);
  // An agent restarted on its data dir runs none of its finished sandboxes again.
  await bed.agents.get("node-a")!.stop();
  await bed.startAgent("node-a");
  await new Promise((r) => setTimeout(r, 3000));
  await checkInvariants(t, bed, scheduler.url, result.acknowledged);
});
