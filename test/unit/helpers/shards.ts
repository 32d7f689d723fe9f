/** The DevShard inputs the component tests share: a one-service baseline and alice's shard. */
import type { BaselineService, DevShardArgs } from "../../../components";

/** A baseline of one service, checkout (port 8080, namespace `default`). */
export function checkoutBaseline(): Record<string, BaselineService> {
  return {
    checkout: { image: "ghcr.io/acme/checkout:main", port: 8080, namespace: "default" },
  };
}

/** Args of alice's shard: checkout forked to her image, one hour; `overrides` replace fields. */
export function aliceShard(overrides: Partial<DevShardArgs> = {}): DevShardArgs {
  return {
    shardName: "alice",
    owner: "alice@example.com",
    forks: { checkout: { image: "ghcr.io/acme/checkout:alice" } },
    baseline: checkoutBaseline(),
    gatewayNamespace: "shardworks-gateway",
    ttlSeconds: 3600,
    ...overrides,
  };
}
