import test from "ava";
import { DevShard } from "../../components";
import { installMocks, recorded, settled } from "./helpers/pulumi";

test.before(() => installMocks());

test("explore", async (t) => {
  const shard = new DevShard("shard-alice", {
    shardName: "alice",
    owner: "alice",
    forks: { checkout: { image: "x:1", env: { A: "1" } } },
    baseline: { checkout: { image: "b:1", port: 8080, namespace: "default" } },
    gatewayNamespace: "shardworks-gateway",
    ttlSeconds: 3600,
  });
  await settled(shard.forkDestinations);
  console.log(
    JSON.stringify(
      recorded.map((r) => [r.type, r.name, r.parent]),
      null,
      0,
    ),
  );
  console.log(JSON.stringify(recorded.find((r) => r.type.endsWith("Deployment"))?.inputs, null, 1));
  t.pass();
});
