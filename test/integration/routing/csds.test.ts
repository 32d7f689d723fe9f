/**
 * CSDS on the routing controller, asked while REAL `@grpc/grpc-js-xds` clients hold ADS streams:
 * a client that took the configuration is SYNCED/ACKED at the controller's current versions, a
 * change makes it SYNCED again at the new versions, and node matchers pick clients. (A NACK's
 * ERROR report is in xds-server.test.ts: @grpc/grpc-js-xds accepted everything we could serve it.)
 */
import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { freePort } from "../../../runtime/lib/ports";
import { keys } from "../../../runtime/lib/keys";
import { Store } from "../../../runtime/lib/store";
import { RoutingController } from "../../../runtime/routing/controller";
import { ShardStore } from "../../../runtime/routing/shard-store";
import {
  clientStatusClientConstructor,
  fetchClientStatus,
  TypeUrl,
  unpack,
  type ClientConfig,
} from "../../../runtime/routing/xds";
import { eventually, startBackend, startXdsClientProcess } from "../../helpers/grpc-backends";

/** `type → version` of every SYNCED entry, or the first entry that is not SYNCED. */
function syncedVersions(config: ClientConfig): Record<string, string> | string {
  const versions: Record<string, string> = {};
  for (const entry of config.generic_xds_configs) {
    if (entry.config_status !== "SYNCED") {
      return `${entry.type_url} ${entry.name}: ${entry.config_status}/${entry.client_status}`;
    }
    versions[entry.type_url] = entry.version_info;
  }
  return versions;
}

test.serial(
  "CSDS reports each real xDS client's ACKs and new versions, and matches nodes",
  async (t) => {
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    const baseline = await startBackend("baseline");
    const fork = await startBackend("fork");
    t.teardown(() => Promise.all([baseline.close(), fork.close()]).then(() => undefined));
    const xdsPort = await freePort();
    const address = `127.0.0.1:${xdsPort}`;
    const controller = new RoutingController({
      etcd: etcd.client,
      baseline: [{ name: "api", destination: baseline.address }],
      xdsPort,
    });
    t.teardown(() => controller.close());
    await controller.start();

    t.deepEqual(await fetchClientStatus(address), [], "no client connected: nothing to report");

    const probe = startXdsClientProcess(address, "csds-probe");
    t.teardown(() => probe.close());
    t.is(await eventually(() => probe.who("xds:///api"), "baseline"), "baseline");

    const current = () => {
      const snapshot = controller.snapshot("grpc")!;
      return Object.fromEntries(
        [TypeUrl.Listener, TypeUrl.Route, TypeUrl.Cluster].map((type) => [
          type,
          snapshot.version(type),
        ]),
      );
    };
    const probeVersions = async () => {
      const [config] = await fetchClientStatus(address, { nodeId: "csds-probe" });
      if (config === undefined) return "no client";
      const synced = syncedVersions(config);
      if (typeof synced === "string") return synced;
      return JSON.stringify(
        Object.fromEntries([...Object.entries(current())].map(([k]) => [k, synced[k]])),
      );
    };
    t.is(
      await eventually(probeVersions, JSON.stringify(current())),
      JSON.stringify(current()),
      "the client is SYNCED at the controller's current listener, route and cluster versions",
    );
    const [config] = await fetchClientStatus(address, {
      nodeId: "csds-probe",
      includeContents: true,
    });
    t.is(config!.node?.id, "csds-probe");
    const listener = config!.generic_xds_configs.find((c) => c.type_url === TypeUrl.Listener);
    t.is(listener?.name, "api");
    t.is(listener?.client_status, "ACKED");
    t.truthy(listener?.last_updated, "the time the listener was sent");
    t.is(
      unpack(listener!.xds_config!).name,
      "api",
      "the resource itself, decoded with Envoy's protos",
    );
    const withoutContents = await fetchClientStatus(address, { nodeId: "csds-probe" });
    t.falsy(withoutContents[0]!.generic_xds_configs[0]!.xds_config, "contents only when asked for");

    // A change: new route version; the client ACKs it and is SYNCED again at the new versions.
    const routeBefore = current()[TypeUrl.Route];
    await new ShardStore(etcd.client).create("alice", {
      routingKey: "alice-key",
      owner: "alice@example.com",
      forks: { api: fork.address },
      ttlSeconds: 3600,
    });
    t.is(
      await eventually(
        () => probe.who("xds:///api", { "x-shardworks-routing-key": "alice-key" }),
        "fork",
      ),
      "fork",
    );
    t.not(current()[TypeUrl.Route], routeBefore);
    t.is(await eventually(probeVersions, JSON.stringify(current())), JSON.stringify(current()));

    const other = startXdsClientProcess(address, "csds-other");
    t.teardown(() => other.close());
    t.is(await eventually(() => other.who("xds:///api"), "baseline"), "baseline");

    // Matchers: exact picks one client, none picks all, a prefix picks by prefix.
    t.is((await fetchClientStatus(address)).length, 2);
    t.is((await fetchClientStatus(address, { nodeId: "csds-probe" })).length, 1);
    t.is((await fetchClientStatus(address, { nodeId: "nobody" })).length, 0);
    const Client = clientStatusClientConstructor();
    const raw = new Client(address, grpc.credentials.createInsecure()) as unknown as {
      FetchClientStatus(
        r: unknown,
        cb: (e: grpc.ServiceError | null, r?: { config: ClientConfig[] }) => void,
      ): void;
      close(): void;
    };
    t.teardown(() => raw.close());
    const ask = (request: unknown) =>
      new Promise<{ config: ClientConfig[] }>((resolve, reject) =>
        raw.FetchClientStatus(request, (e, r) => (e ? reject(e) : resolve(r!))),
      );
    const byPrefix = await ask({
      node_matchers: [{ node_id: { prefix: "CSDS-P", ignore_case: true } }],
    });
    t.deepEqual(
      byPrefix.config.map((c) => c.node?.id),
      ["csds-probe"],
    );
    const refused = await t.throwsAsync(
      ask({ node_matchers: [{ node_id: { safe_regex: { regex: ".*" } } }] }),
    );
    t.is((refused as grpc.ServiceError).code, grpc.status.UNIMPLEMENTED);
    t.regex(refused.message, /use exact, prefix, suffix or contains/);
  },
);

test.serial(
  "a replica whose lease is lost registers again; closing removes it at once",
  async (t) => {
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    const controller = new RoutingController({
      etcd: etcd.client,
      baseline: [],
      xdsPort: await freePort(),
      advertise: { name: "routing-lease", version: "0.2.0", leaseTtlSeconds: 2 },
    });
    t.teardown(() => controller.close());
    await controller.start();
    const leaseOf = async () => {
      const { kvs } = await etcd.client.get(keys.router("routing-lease")).exec();
      return kvs[0]?.lease;
    };
    const first = await leaseOf();
    t.truthy(first, "registered");
    // Revoked behind its back (what etcd does to a lease it could not keep alive).
    await etcd.client.leaseClient.leaseRevoke({ ID: first! });
    const again = await eventually(async () => {
      const lease = await leaseOf();
      return lease !== undefined && lease !== first;
    }, true);
    t.true(again, "registered again under a new lease");
    await controller.close();
    t.is(await leaseOf(), undefined, "closing revokes the lease: the record is gone at once");
  },
);

test.serial(
  "a router record with a field this version does not know is still listed",
  async (t) => {
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    await etcd.client.put(keys.router("routing-newer")).value(
      JSON.stringify({
        name: "routing-newer",
        address: "127.0.0.1:1",
        version: "9.9.9",
        startedAt: new Date().toISOString(),
        zone: "a field from a newer controller",
      }),
    );
    const routers = await new Store(etcd.client).listRouters();
    t.deepEqual(
      routers.map((r) => [r.name, r.version]),
      [["routing-newer", "9.9.9"]],
    );
  },
);
