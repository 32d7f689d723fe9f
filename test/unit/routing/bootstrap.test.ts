import test from "ava";
import type { IConversionOptions } from "protobufjs";
import { ADS_RETRY_MAX_INTERVAL_MS, envoyBootstrap } from "../../../contract/envoy-bootstrap";
import { fromProtoJson, messageType } from "../../../runtime/routing/xds";

const BOOTSTRAP = "envoy.config.bootstrap.v3.Bootstrap";

/** The gateway's bootstrap (ADS at `adsHost`) as Envoy reads it: through its Bootstrap proto. */
function decodedBootstrap(adsHost: string, options?: IConversionOptions): unknown {
  const json = envoyBootstrap({
    nodeId: "gateway",
    cluster: "edge",
    adsHost,
    adsPort: 18000,
    adminPort: 9901,
  });
  const message = fromProtoJson(BOOTSTRAP, json);
  const type = messageType(`type.googleapis.com/${BOOTSTRAP}`);
  return type.toObject(type.decode(type.encode(message).finish()), options);
}

test("the EnvoyGateway bootstrap decodes with Envoy's Bootstrap proto and points ADS at the controller", (t) => {
  const decoded = decodedBootstrap("shardworks-routing.shardworks-system.svc.cluster.local", {
    enums: String,
    longs: String,
  }) as {
    node: { id: string };
    admin: { address: { socket_address: { address: string } } };
    dynamic_resources: {
      ads_config: {
        api_type: string;
        transport_api_version: string;
        grpc_services: { envoy_grpc: { cluster_name: string } }[];
      };
      cds_config: { ads: object };
      lds_config: { ads: object };
    };
    static_resources: {
      clusters: {
        name: string;
        connect_timeout: { seconds: string };
        load_assignment: {
          endpoints: {
            lb_endpoints: {
              endpoint: { address: { socket_address: { address: string; port_value: number } } };
            }[];
          }[];
        };
        typed_extension_protocol_options: Record<string, { type_url: string }>;
      }[];
    };
  };
  t.is(decoded.node.id, "gateway");
  t.is(decoded.admin.address.socket_address.address, "127.0.0.1", "admin on loopback only");
  const ads = decoded.dynamic_resources.ads_config;
  t.is(ads.api_type, "DELTA_GRPC", "incremental ADS: a change sends only what changed (ADR 0016)");
  t.is(ads.transport_api_version, "V3");
  t.truthy(decoded.dynamic_resources.cds_config.ads);
  t.truthy(decoded.dynamic_resources.lds_config.ads);
  const xds = decoded.static_resources.clusters.find(
    (c) => c.name === ads.grpc_services[0]!.envoy_grpc.cluster_name,
  )!;
  t.is(xds.connect_timeout.seconds, "1");
  const address =
    xds.load_assignment.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address;
  t.deepEqual(address, {
    address: "shardworks-routing.shardworks-system.svc.cluster.local",
    port_value: 18000,
  });
  t.is(
    Object.values(xds.typed_extension_protocol_options)[0]!.type_url,
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
  );
});

test("the strict proto-JSON decoder refuses what Envoy would refuse", (t) => {
  t.throws(() => fromProtoJson(BOOTSTRAP, { node: { idd: "x" } }), {
    message: /node\.idd: no such field/,
  });
  t.throws(
    () =>
      fromProtoJson(BOOTSTRAP, {
        static_resources: { clusters: [{ name: "x", connect_timeout: "5" }] },
      }),
    { message: /connect_timeout: a Duration must be a string like "5s"/ },
  );
  t.throws(
    () => fromProtoJson(BOOTSTRAP, { dynamic_resources: { ads_config: { api_type: "GRPCX" } } }),
    { message: /"GRPCX" is not a value/ },
  );
});

test("the ADS stream retries with a backoff capped at 0.5 s, and the admin address is configurable", (t) => {
  const b = envoyBootstrap({
    nodeId: "n",
    cluster: "c",
    adsHost: "xds",
    adsPort: 18000,
    adminPort: 9901,
    adminHost: "10.0.0.7",
  }) as {
    admin: { address: { socket_address: { address: string } } };
    dynamic_resources: {
      ads_config: { grpc_services: { envoy_grpc: { retry_policy: unknown } }[] };
    };
  };
  t.is(b.admin.address.socket_address.address, "10.0.0.7");
  t.deepEqual(b.dynamic_resources.ads_config.grpc_services[0]!.envoy_grpc.retry_policy, {
    retry_back_off: { base_interval: "0.1s", max_interval: `${ADS_RETRY_MAX_INTERVAL_MS / 1000}s` },
  });
  // What Envoy reads: the bootstrap decodes with its proto.
  t.notThrows(() => fromProtoJson(BOOTSTRAP, b));
});

test("bootstrap options are validated and the error names the field", (t) => {
  const base = { nodeId: "n", cluster: "c", adsHost: "xds", adsPort: 18000, adminPort: 9901 };
  const error = t.throws(() => envoyBootstrap({ ...base, adminHost: "localhost" }));
  t.regex(error.message, /adminHost[\s\S]*must be an IP address/);
  t.regex(t.throws(() => envoyBootstrap({ ...base, adsPort: 70000 })).message, /adsPort/);
  const protocol = t.throws(() =>
    envoyBootstrap({ ...base, adsProtocol: "incremental" as unknown as "delta" }),
  );
  t.regex(protocol.message, /adsProtocol[\s\S]*must be \\"delta\\"/);
  const ads = (b: Record<string, unknown>) =>
    (b.dynamic_resources as { ads_config: { api_type: string } }).ads_config.api_type;
  t.is(ads(envoyBootstrap({ ...base, adsProtocol: "sotw" })), "GRPC");
  t.is(ads(envoyBootstrap(base)), "DELTA_GRPC");
});
