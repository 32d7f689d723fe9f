/**
 * `GET /v1/xds/clients[?nodeId=<id>]`: which xDS clients hold which configuration, across every
 * routing controller replica. Each replica registers `routers/<name>` (with its address and
 * version); this asks each one's CSDS in parallel and answers with one compact report, so a caller
 * (the rollout's `xds-acked` gate, an operator) needs only the scheduler API and the platform
 * token, however many replicas serve the gateways. The scheduler mounts it at `/v1/xds`.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { RouterStatus, XdsClientStatus, XdsClientsReport } from "../../../contract/api";
import { ForbiddenError } from "../../lib/errors";
import { parseQuery, type ApiEnv } from "../../lib/http";
import type { Store } from "../../lib/store";
import { fetchClientStatus, type ClientConfig } from "../../routing/xds";
import { principalOf } from "./auth";

const querySchema = z.strictObject({
  nodeId: z.string().min(1).max(253).optional(),
});

/** `type.googleapis.com/envoy.config.cluster.v3.Cluster` → `Cluster`. */
function typeName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
}

function compact(config: ClientConfig): XdsClientStatus {
  return {
    node: { id: config.node?.id ?? "", cluster: config.node?.cluster ?? "" },
    resources: config.generic_xds_configs.map((entry) => ({
      type: typeName(entry.type_url),
      name: entry.name,
      version: entry.version_info,
      status: entry.config_status,
      client: entry.client_status,
      ...(entry.error_state?.details ? { error: entry.error_state.details } : {}),
    })),
  };
}

/** The `/v1/xds` sub-app (platform token only: it shows every shard's fork destinations). */
export function xdsApp(store: Store): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get("/clients", async (c) => {
    const query = parseQuery(c, querySchema);
    if (principalOf(c).kind !== "platform") {
      throw new ForbiddenError("forbidden", "xDS client status needs the platform token");
    }
    const routers = await store.listRouters();
    const report: XdsClientsReport = {
      routers: await Promise.all(
        routers.map(async (router): Promise<RouterStatus> => {
          const base = {
            name: router.name,
            address: router.address,
            ...(router.version === undefined ? {} : { version: router.version }),
          };
          try {
            const configs = await fetchClientStatus(router.address, {
              ...(query.nodeId === undefined ? {} : { nodeId: query.nodeId }),
              timeoutMs: 3000,
            });
            return { ...base, clients: configs.map(compact) };
          } catch (error) {
            return { ...base, error: (error as Error).message };
          }
        }),
      ),
    };
    return c.json(report);
  });
  return app;
}
