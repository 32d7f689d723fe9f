/** A running sandbox's part of translation: a cluster and a virtual host per exposed port. */
import type { SandboxRecord } from "../../../contract/model";
import { pack, TypeUrl } from "../xds/protos";
import { makeResourceFromParts, type XdsResource } from "../xds/resource";
import { apiListener, clusterResources } from "./envoy-resources";
import { sandboxClusterName } from "./names";
import type { IngressPart } from "./service-part";
import { hashOf } from "./wire";

/** What translation builds of one running sandbox record. */
export interface SandboxPart {
  readonly record: SandboxRecord;
  readonly clusters: XdsResource[];
  readonly endpoints: XdsResource[];
  readonly virtualHosts: Record<string, unknown>[];
  /** Its virtual hosts in the gateway's `sandbox` scope. */
  readonly gatewayPart: IngressPart;
  readonly resources: XdsResource[];
}

/**
 * A sandbox's part: host `<port>.<id>.sandbox.<domain>` per exposed port, the lowest port also
 * `<id>.sandbox.<domain>`.
 */
export function sandboxPart(record: SandboxRecord, domain: string): SandboxPart {
  const host = `${record.id}.sandbox.${domain}`;
  const ports = Object.keys(record.status.endpoints).sort((a, b) => Number(a) - Number(b));
  const clusters: XdsResource[] = [];
  const endpoints: XdsResource[] = [];
  const virtualHosts: Record<string, unknown>[] = [];
  for (const [index, port] of ports.entries()) {
    const name = sandboxClusterName(record.id, port);
    const built = clusterResources(name, record.status.endpoints[port] ?? "");
    clusters.push(built.cluster);
    if (built.endpoints) endpoints.push(built.endpoints);
    const domains = [`${port}.${host}`, ...(index === 0 ? [host] : [])];
    virtualHosts.push({
      name: `sandbox/${record.id}/${port}`,
      domains,
      routes: [
        { name: `sandbox/${record.id}/${port}`, match: { prefix: "" }, route: { cluster: name } },
      ],
    });
  }
  const routeName = `sandbox/${record.id}`;
  const ingressPart = pack(TypeUrl.Route, { virtual_hosts: virtualHosts }).value;
  const resources = [
    ...clusters,
    ...endpoints,
    makeResourceFromParts(
      TypeUrl.Route,
      routeName,
      { name: routeName, virtual_hosts: virtualHosts },
      [pack(TypeUrl.Route, { name: routeName }).value, ingressPart],
    ),
    apiListener(host, routeName),
  ];
  return {
    record,
    clusters,
    endpoints,
    virtualHosts,
    gatewayPart: { virtualHosts, bytes: ingressPart, hash: hashOf(ingressPart) },
    resources,
  };
}
