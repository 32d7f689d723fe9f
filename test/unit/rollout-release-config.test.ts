/**
 * How `AutomationStackUpdater` reads a stack's release from its `shardworks:runtime` config value
 * (the JSON text `getAllConfig` gives): what a rollback restores, so a guess is never made.
 */
import test from "ava";
import { releaseOfConfig } from "../../stacks/rollout";

const IMAGE = `ghcr.io/shardworks/runtime@sha256:${"c".repeat(64)}`;

test("version and image of the config; the schema's default version when none is set", (t) => {
  t.deepEqual(releaseOfConfig(undefined), { version: "0.1.0" });
  t.deepEqual(releaseOfConfig(JSON.stringify({ schedulerReplicas: 3 })), { version: "0.1.0" });
  t.deepEqual(releaseOfConfig(JSON.stringify({ version: "0.2.0", etcdStorage: "ephemeral" })), {
    version: "0.2.0",
  });
  t.deepEqual(releaseOfConfig(JSON.stringify({ version: "0.2.0", image: IMAGE })), {
    version: "0.2.0",
    image: IMAGE,
  });
});

test("a version or image the schema refuses is an error naming the key", (t) => {
  t.throws(() => releaseOfConfig(JSON.stringify({ version: "0.2.0", image: "runtime:0.2.0" })), {
    message:
      /^shardworks:runtime\.image: must be pinned by digest, .*npm run images -- build runtime.*; fix it in the stack's config/,
  });
  t.throws(() => releaseOfConfig(JSON.stringify({ version: "latest" })), {
    message: /^shardworks:runtime\.version: must be a version like "0\.1\.0"/,
  });
});
