import test from "ava";
import { sandboxViewSchema, shardReplySchema } from "../../contract/api";

const at = "2026-12-02T12:00:00.000Z";

test("a newer scheduler's sandbox (a field in spec and status, a phase this client does not know) still reads", (t) => {
  const answer = {
    id: "sb-1",
    spec: { image: "registry.example.com/app:1", command: ["true"], quota: "new" },
    status: { phase: "hibernating", updatedAt: at, endpoints: {}, hibernatedAt: at },
    createdAt: at,
    owner: "new-top-level-field",
  };
  const parsed = sandboxViewSchema.safeParse(answer);
  t.true(parsed.success, JSON.stringify(parsed.error?.issues));
  t.is(parsed.data?.status.phase, "hibernating");
  t.is(parsed.data?.spec.image, "registry.example.com/app:1");
  // What a client reads is still checked.
  t.false(sandboxViewSchema.safeParse({ ...answer, id: 7 }).success);
});

test("a shard PUT's answer with a protocol this client does not know keeps its token", (t) => {
  const parsed = shardReplySchema.safeParse({
    shard: {
      name: "a",
      routingKey: "a-key",
      owner: "a@example.com",
      forks: [{ service: "api", destination: "10.0.0.1:80", protocol: "h3" }],
      ttlSeconds: 60,
      expiresAt: at,
      createdAt: at,
    },
    token: "secret",
  });
  t.true(parsed.success, JSON.stringify(parsed.error?.issues));
  t.is(parsed.data?.token, "secret");
});
