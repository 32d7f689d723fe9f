import test from "ava";
import { parseAdvertise, routingConfigSchema } from "../../../runtime/routing/main";

test("advertise addresses: host, host:port, IPv6 bare or bracketed; the port defaults", (t) => {
  t.is(parseAdvertise("10.0.3.7", 18000), "10.0.3.7:18000");
  t.is(parseAdvertise("10.0.3.7:19000", 18000), "10.0.3.7:19000");
  t.is(parseAdvertise("routing-0.shardworks.svc", 18000), "routing-0.shardworks.svc:18000");
  t.is(parseAdvertise("fd00::5", 18000), "[fd00::5]:18000", "a bare IPv6 pod IP is bracketed");
  t.is(parseAdvertise("[fd00::5]:19000", 18000), "[fd00::5]:19000");
  t.is(parseAdvertise("[fd00::5]", 18000), "[fd00::5]:18000");
  for (const bad of ["", "a b", "[nope]:1", "host:port", ":18000", "-x"]) {
    t.is(parseAdvertise(bad, 18000), undefined, bad);
  }
});

test("the routing config refuses a bad advertise address and a bad name, naming the field", (t) => {
  const base = { etcdEndpoints: ["http://127.0.0.1:2379"], baseline: [] };
  const advertise = routingConfigSchema.safeParse({ ...base, advertise: "a b" });
  t.false(advertise.success);
  t.deepEqual(advertise.error?.issues[0]?.path, ["advertise"]);
  t.regex(advertise.error?.issues[0]?.message ?? "", /host, host:port or \[IPv6\]:port/);
  const name = routingConfigSchema.safeParse({ ...base, name: "Bad_Name" });
  t.false(name.success);
  t.deepEqual(name.error?.issues[0]?.path, ["name"]);
  t.true(
    routingConfigSchema.safeParse({
      ...base,
      name: "shardworks-routing-7d9f",
      advertise: "fd00::5",
    }).success,
  );
});
