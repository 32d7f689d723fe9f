import test from "ava";
import type { IConversionOptions } from "protobufjs";
import { envoyBootstrap, RE2_MAX_PROGRAM_SIZE } from "../../../runtime/routing/bootstrap";
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
  t.is(ads.api_type, "GRPC");
  t.is(ads.transport_api_version, "V3");
  t.truthy(decoded.dynamic_resources.cds_config.ads);
  t.truthy(decoded.dynamic_resources.lds_config.ads);
  const xds = decoded.static_resources.clusters.find(
    (c) => c.name === ads.grpc_services[0]!.envoy_grpc.cluster_name,
  )!;
  t.is(xds.connect_timeout.seconds, "5");
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

test("the bootstrap raises Envoy's RE2 program size limit in a static runtime layer", (t) => {
  const decoded = decodedBootstrap("routing") as {
    layered_runtime: {
      layers: {
        name: string;
        static_layer: { fields: Record<string, { numberValue: number }> };
      }[];
    };
  };
  const layer = decoded.layered_runtime.layers[0]!;
  t.is(layer.name, "shardworks-static");
  t.is(
    layer.static_layer.fields["re2.max_program_size.error_level"]!.numberValue,
    RE2_MAX_PROGRAM_SIZE,
  );
  t.true(RE2_MAX_PROGRAM_SIZE > 100);
});
