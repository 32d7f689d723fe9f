/** A deposed placer's writes (unbind, reason updates) are refused by etcd, like its binds. */
import test from "ava";
import {
  ConflictError,
  SandboxPhase,
  Store,
  sandboxSpecSchema,
  startEtcd,
  type SandboxRecord,
} from "../../../runtime/lib";

test("unbindSandbox and updateSandbox with a leader key hold only while that key exists", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new Store(etcd.client);
  const now = new Date().toISOString();
  const record: SandboxRecord = {
    id: "fenced",
    spec: sandboxSpecSchema.parse({ image: "oci:/x:1", command: ["true"] }),
    status: { phase: SandboxPhase.Pending, endpoints: {}, updatedAt: now },
    createdAt: now,
  };
  const leaderKey = "shardworks-test/election/leader-1";
  await etcd.client.put(leaderKey).value("placer-a");
  const created = await store.createSandbox(record);
  const bound = await store.bindSandbox(created, "node-a", leaderKey);

  // The placer is deposed (its election key is gone): its writes must not land.
  await etcd.client.delete().key(leaderKey);
  await t.throwsAsync(store.unbindSandbox(bound, "node lost", leaderKey), {
    instanceOf: ConflictError,
  });
  await t.throwsAsync(
    store.updateSandbox(
      { ...bound.value, status: { ...bound.value.status, reason: "stale" } },
      bound.modRevision,
      leaderKey,
    ),
    { instanceOf: ConflictError },
  );
  const after = await store.getSandbox("fenced");
  t.is(after?.value.status.phase, SandboxPhase.Scheduled, "still bound to node-a");
  t.is(after?.value.status.reason, undefined);
  t.is((await store.listAssignments("node-a")).items.length, 1, "the assignment stays");

  // A current leader's unbind goes through.
  await etcd.client.put(leaderKey).value("placer-b");
  await store.unbindSandbox(after!, "node lost", leaderKey);
  t.is((await store.getSandbox("fenced"))?.value.status.phase, SandboxPhase.Pending);
  t.is((await store.listAssignments("node-a")).items.length, 0);
});
