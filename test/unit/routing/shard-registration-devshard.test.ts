/**
 * DevShard with the registration seam filled by `registerShardWith`: the shard gets a
 * ShardRegistration child (a dynamic resource whose provider Pulumi really serializes) carrying
 * the shard's routing key and fork destinations, with the platform token.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

interface Recorded {
  type: string;
  name: string;
  parent: string;
  inputs: Record<string, unknown>;
}

test("DevShard registers itself through ShardRegistration", async (t) => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", join(__dirname, "../../helpers/devshard-registration-probe.ts")],
    { timeout: 120_000 },
  );
  const registration = JSON.parse(stdout) as Recorded | null;
  t.truthy(registration, "a registration resource is created");
  t.is(registration!.type, "pulumi-nodejs:dynamic/shardworks:ShardRegistration");
  t.is(registration!.parent, "shard-alice");
  t.is(registration!.inputs.name, "alice");
  t.is(registration!.inputs.routingKey, "shard-alice");
  t.is(registration!.inputs.apiUrl, "http://scheduler.example:8080");
  t.is(registration!.inputs.token, "platform-secret-0123456789");
  t.deepEqual(registration!.inputs.forks, {
    checkout: "checkout.shard-alice.svc.cluster.local:8080",
  });
  t.is(registration!.inputs.ttlSeconds, 3600);
  t.regex(String(registration!.inputs.__provider), /callApi|fetch/, "the provider was serialized");
});
