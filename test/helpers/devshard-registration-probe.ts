/**
 * Run in its own process (main thread): Pulumi's closure serialization of a dynamic provider
 * needs `node:trace_events`, which worker threads (ava's default) do not have. Builds a DevShard
 * whose `register` seam is `registerShardWith`, under the recording mock, and prints the recorded
 * registration resource as JSON.
 */
import { DevShard } from "../../components";
import { registerShardWith } from "../../components/shard-registration";
import { installMocks, recorded, settled } from "../unit/helpers/pulumi";
import { aliceShard } from "../unit/helpers/shards";

async function main(): Promise<void> {
  await installMocks();
  const shard = new DevShard(
    "shard-alice",
    aliceShard({
      now: new Date("2026-11-22T10:00:00.000Z"),
      register: registerShardWith({
        apiUrl: "http://scheduler.example:8080",
        token: "platform-secret-0123456789",
      }),
    }),
  );
  await settled(shard.forkDestinations, shard.namespace);
  for (let i = 0; i < 50 && !recorded.some((r) => r.name === "alice-registration"); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const registration = recorded.find((r) => r.name === "alice-registration");
  process.stdout.write(`${JSON.stringify(registration ?? null)}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`);
    process.exit(1);
  },
);
